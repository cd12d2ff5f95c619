"""The output side every grasp network shares: four GG-CNN maps at the input's size.

Every architecture is a *body* (image → feature map) wrapped in `GraspNet`, which checks
the input, resizes the body's features to the input's spatial size when they differ (odd
sizes such as 224 through GG-CNN's stride-3 layers), applies dropout and the four 1×1
linear heads (one fused 4-channel convolution). The heads are unbounded like GG-CNN's:
targets are quality in [0, 1], cos 2θ and sin 2θ in [-1, 1] and opening/150, and the loss
is the sum of four MSEs, which a linear output fits without the vanishing gradients of a
saturated sigmoid.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from regrasp.platform.errors import InvalidInput


class GraspMaps(NamedTuple):
    """The four per-pixel outputs, each `(B, 1, H, W)` float at the input's size.

    - `quality`: grasp quality (target 1 on the centre third of a grasp, 0 elsewhere);
    - `cos2theta`, `sin2theta`: the grasp angle θ (degrees in the y-down image frame,
      equal mod 180°) encoded as cos 2θ and sin 2θ, so θ = atan2(sin, cos) / 2;
    - `width`: the gripper opening in pixels of the 300² input divided by 150.

    A NamedTuple, so it unpacks as `q, c, s, w = net(x)`, `DataParallel` gathers it like a
    plain tuple, and `torch.cat(maps, dim=1)` gives `(B, 4, H, W)`.
    """

    quality: Tensor
    cos2theta: Tensor
    sin2theta: Tensor
    width: Tensor


class GraspHead(nn.Module):
    """Dropout then one 1×1 linear convolution to the four maps: `(B, F, H, W)` → `GraspMaps`.

    The four maps come from one fused 4-channel convolution rather than four 1-channel
    ones: the same linear map, but a single pass over the features (on CPU the four
    separate heads took about 70% of GG-CNN's forward time at 300²). Checkpoints saved
    with the four separate heads (`quality`, `cos2theta`, `sin2theta`, `width`) still
    load: their weights are stacked into the fused one. Dropout 0 is an identity, so no
    random mask is drawn unless dropout is asked for.
    """

    def __init__(self, in_channels: int, *, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.maps = nn.Conv2d(in_channels, len(GraspMaps._fields), kernel_size=1)
        self._register_load_state_dict_pre_hook(_fuse_legacy_heads)

    def forward(self, features: Tensor) -> GraspMaps:
        return GraspMaps(*self.maps(self.dropout(features)).split(1, dim=1))


def _fuse_legacy_heads(state_dict: dict, prefix: str, *_args: object) -> None:
    """Stack a checkpoint's four 1-channel head convolutions into the fused one, in place."""
    for part in ("weight", "bias"):
        keys = [f"{prefix}{name}.{part}" for name in GraspMaps._fields]
        if all(k in state_dict for k in keys):
            state_dict[f"{prefix}maps.{part}"] = torch.cat([state_dict.pop(k) for k in keys])


class GraspNet(nn.Module):
    """A body producing `body_channels` features, resized to the input, then a `GraspHead`.

    `forward(x)` takes `(B, in_channels, H, W)` float (depth normalised as
    `clip(d − mean(d), −1, 1)`, RGB as extra channels) and returns `GraspMaps` of
    `(B, 1, H, W)`. Inputs need H, W of at least 32 for the backbones with five
    downsamplings, and batch > 1 or H, W > 32 when training them (BatchNorm needs more
    than one value per channel).
    """

    def __init__(
        self, body: nn.Module, *, in_channels: int, body_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.body = body
        self.head = GraspHead(body_channels, dropout=dropout)

    def forward(self, x: Tensor) -> GraspMaps:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InvalidInput(
                f"expected input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        features = self.body(x)
        features = resize_to(features, x)
        return self.head(features)


def resize_to(features: Tensor, reference: Tensor) -> Tensor:
    """Bilinearly resize `(B, F, h, w)` to the spatial size of `reference`, if it differs."""
    size = reference.shape[-2:]
    if features.shape[-2:] == size:
        return features
    return F.interpolate(features, size=tuple(size), mode="bilinear", align_corners=False)


def conv_bn_relu(
    in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1
) -> nn.Sequential:
    """Conv (same padding, no bias) → BatchNorm → ReLU, the decoder's building block."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of `conv`'s hyper-parameters taking `in_channels` inputs (1 depth, 3 RGB, 4 RGB-D).

    The backbones are built for 3-channel RGB; with no pretrained weights to keep, the new
    convolution is freshly initialised (Kaiming normal, fan-out, as torchvision's ResNet and
    MobileNet initialise theirs).
    """
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=1,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new
