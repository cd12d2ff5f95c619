"""The grasp networks of the paper's Table I, built by name from one registry.

    from regrasp.learn import nets
    model = nets.build("mobilenet_v2", in_channels=4, dropout=0.05).to(nets.default_device())
    quality, cos2theta, sin2theta, width = model(x)   # x: (B, 4, H, W), each map (B, 1, H, W)

One module per architecture family (`ggcnn`, `mobilenet`, `squeezenet`, `shufflenet`,
`xception`, `resnet`); each registers its builders with `@register(name)` when imported
below. Only this package and `regrasp.learn.training` import torch.
"""

from __future__ import annotations

# Importing the family modules registers their builders, in Table I order.
# isort: off
from regrasp.learn.nets import ggcnn, mobilenet, squeezenet, shufflenet, xception, resnet  # noqa: F401

# isort: on
from regrasp.learn.nets.heads import GraspMaps, GraspNet
from regrasp.learn.nets.registry import build, names, register
from regrasp.learn.nets.runtime import count_parameters, default_device

#: The built-in architecture names (the paper's Table I), in registration order.
NAMES: tuple[str, ...] = names()

__all__ = [
    "NAMES",
    "GraspMaps",
    "GraspNet",
    "build",
    "count_parameters",
    "default_device",
    "names",
    "register",
]
