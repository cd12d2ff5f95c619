"""Encoder–decoder body for the classification backbones: U-Net-style skips back to full size.

Classification backbones (MobileNetV2, SqueezeNet, ShuffleNetV2, Xception, ResNet) end in
a feature map at 1/16 or 1/32 of the input, while GG-CNN maps are per pixel. The encoder is
cut into *stages*, one per output stride (2, 4, 8, 16, 32); the decoder walks back up:
each stage's features are projected by a 1×1 conv, the coarser decoder map is bilinearly
resized to that stage's size (sizes, not factors, so any input size works) and both are
fused by a 3×3 conv. The stride-2 map is finally resized to the input size and refined by
one more 3×3 conv, so the heads see per-pixel features rather than interpolated ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from regrasp.learn.nets.heads import conv_bn_relu, resize_to
from regrasp.platform.errors import InvalidInput

#: Decoder widths per stage, shallow (stride 2) → deep (stride 32); cut to the encoder depth.
DEFAULT_DECODER_CHANNELS = (16, 32, 64, 96, 128)


class Stages(nn.Module):
    """An encoder run stage by stage, returning every stage's output, shallow → deep."""

    def __init__(self, stages: Sequence[nn.Module], channels: Sequence[int]) -> None:
        super().__init__()
        if len(stages) != len(channels):
            raise InvalidInput("one channel count per encoder stage is required")
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class SkipDecoderBody(nn.Module):
    """`Stages` encoder + top-down skip decoder: `(B, C, H, W)` → `(B, out_channels, H, W)`."""

    def __init__(self, encoder: Stages, *, decoder_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        widths = resolve_decoder_channels(decoder_channels, levels=len(encoder.channels))
        self.encoder = encoder
        self.laterals = nn.ModuleList(
            conv_bn_relu(c, w, kernel_size=1) for c, w in zip(encoder.channels, widths, strict=True)
        )
        # fuse[i] merges the resized decoder map of level i+1 with the lateral of level i.
        self.fuse = nn.ModuleList(
            conv_bn_relu(widths[i + 1] + widths[i], widths[i]) for i in range(len(widths) - 1)
        )
        self.refine = conv_bn_relu(widths[0], widths[0])
        self.out_channels = widths[0]

    def forward(self, x: Tensor) -> Tensor:
        features = self.encoder(x)
        y = self.laterals[-1](features[-1])
        for i in range(len(features) - 2, -1, -1):
            lateral = self.laterals[i](features[i])
            y = self.fuse[i](torch.cat((resize_to(y, lateral), lateral), dim=1))
        return self.refine(resize_to(y, x))


def resolve_decoder_channels(
    decoder_channels: Sequence[int] | None, *, levels: int
) -> tuple[int, ...]:
    """The decoder widths, one per encoder stage; the defaults cut to `levels` when None."""
    if decoder_channels is None:
        return DEFAULT_DECODER_CHANNELS[:levels]
    widths = tuple(decoder_channels)
    if len(widths) != levels or not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
    ):
        raise InvalidInput(
            f"decoder_channels must be {levels} positive integers (stride 2 first), "
            f"got {decoder_channels!r}"
        )
    return widths
