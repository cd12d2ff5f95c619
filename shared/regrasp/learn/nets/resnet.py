"""ResNet-50/101/152 (He et al. 2016) encoders with the skip decoder.

torchvision's bottleneck ResNets (`weights=None`), the 7×7 stride-2 stem conv adapted to
`in_channels`, the global pool and classifier dropped. Stages end at strides 2 (stem, 64
ch), 4 (max-pool + layer1, 256 ch), 8 (layer2, 512), 16 (layer3, 1024) and 32 (layer4,
2048). The three depths differ only in blocks per layer: (3, 4, 6, 3), (3, 4, 23, 3) and
(3, 8, 36, 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn
from torchvision.models import ResNet
from torchvision.models import resnet50 as tv_resnet50
from torchvision.models import resnet101 as tv_resnet101
from torchvision.models import resnet152 as tv_resnet152

from regrasp.learn.nets.decoder import SkipDecoderBody, Stages
from regrasp.learn.nets.heads import GraspNet, adapt_first_conv
from regrasp.learn.nets.registry import register

_CHANNELS = (64, 256, 512, 1024, 2048)


@register("resnet50")
def resnet50(
    *, in_channels: int, dropout: float, decoder_channels: Sequence[int] | None = None
) -> GraspNet:
    """ResNet-50 encoder + skip decoder; 5 `decoder_channels`."""
    return _build(tv_resnet50, in_channels, dropout, decoder_channels)


@register("resnet101")
def resnet101(
    *, in_channels: int, dropout: float, decoder_channels: Sequence[int] | None = None
) -> GraspNet:
    """ResNet-101 encoder + skip decoder; 5 `decoder_channels`."""
    return _build(tv_resnet101, in_channels, dropout, decoder_channels)


@register("resnet152")
def resnet152(
    *, in_channels: int, dropout: float, decoder_channels: Sequence[int] | None = None
) -> GraspNet:
    """ResNet-152 encoder + skip decoder; 5 `decoder_channels`."""
    return _build(tv_resnet152, in_channels, dropout, decoder_channels)


def _build(
    constructor: Callable[..., ResNet],
    in_channels: int,
    dropout: float,
    decoder_channels: Sequence[int] | None,
) -> GraspNet:
    net = constructor(weights=None)
    net.conv1 = adapt_first_conv(net.conv1, in_channels)
    stages = [
        nn.Sequential(net.conv1, net.bn1, net.relu),
        nn.Sequential(net.maxpool, net.layer1),
        net.layer2,
        net.layer3,
        net.layer4,
    ]
    body = SkipDecoderBody(Stages(stages, _CHANNELS), decoder_channels=decoder_channels)
    return GraspNet(body, in_channels=in_channels, body_channels=body.out_channels, dropout=dropout)
