"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", 2017).

Written from the paper (torchvision has no Xception). Every convolution after the stem is
depthwise separable (a 3×3 depthwise conv then a 1×1 pointwise conv, no non-linearity
between), with BatchNorm after each and residual connections around every block:

- entry flow: 3×3/32 stride-2 and 3×3/64 convs, then three blocks of two separable convs
  + 3×3 stride-2 max-pool (128, 256, 728 channels), each with a 1×1 stride-2 shortcut;
- middle flow: `middle_blocks` (8 in the paper) blocks of three ReLU-separable-conv-BN at
  728 channels with identity shortcuts;
- exit flow: a block of separable convs to 728 and 1024 + max-pool with a 1×1 shortcut,
  then separable convs to 1536 and 2048 with ReLU; the global pool and classifier are
  dropped for the skip decoder.

The defaults are the paper's network (20.8 M encoder parameters at 3 input channels; the
paper's 22.9 M includes the 1000-class classifier). The paper sized it for 299² inputs, so
300² needs no change; `width_multiplier` (every width scaled and rounded to a multiple of
8) and `middle_blocks` give a lighter variant, e.g. 0.5 and 4 for about a sixth of the
encoder's parameters. Unlike the paper the stem convs are padded, so 300 → 150 exactly.
Stages end at strides 2 (stem, 64 ch), 4 (128), 8 (256), 16 (middle flow, 728) and
32 (exit flow, 2048).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from regrasp.learn.nets.decoder import SkipDecoderBody, Stages
from regrasp.learn.nets.heads import GraspNet
from regrasp.learn.nets.registry import register
from regrasp.platform.errors import InvalidInput


@register("xception")
def xception(
    *,
    in_channels: int,
    dropout: float,
    width_multiplier: float = 1.0,
    middle_blocks: int = 8,
    decoder_channels: Sequence[int] | None = None,
) -> GraspNet:
    """Xception encoder + skip decoder; 5 `decoder_channels`.

    `width_multiplier` scales every encoder width (1.0: the paper's), `middle_blocks` is the
    number of middle-flow blocks (8: the paper's).
    """
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, int | float):
        raise InvalidInput(f"width_multiplier must be a positive number, got {width_multiplier!r}")
    if width_multiplier <= 0:
        raise InvalidInput(f"width_multiplier must be positive, got {width_multiplier}")
    if isinstance(middle_blocks, bool) or not isinstance(middle_blocks, int) or middle_blocks < 0:
        raise InvalidInput(f"middle_blocks must be a non-negative integer, got {middle_blocks!r}")
    encoder = _encoder(in_channels, width_multiplier=float(width_multiplier), middle=middle_blocks)
    body = SkipDecoderBody(encoder, decoder_channels=decoder_channels)
    return GraspNet(body, in_channels=in_channels, body_channels=body.out_channels, dropout=dropout)


class SeparableConv2d(nn.Sequential):
    """3×3 depthwise conv then 1×1 pointwise conv, both without bias (BatchNorm follows)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )


class XceptionBlock(nn.Module):
    """Separable convs (each ReLU → SepConv → BN) with a shortcut, optionally downsampling.

    The shortcut is the identity when shapes match, else a 1×1 conv (stride 2 when
    downsampling) + BN. The first ReLU is skipped where the block follows a ReLU already
    (the first entry-flow block). ReLUs are not in-place: the block's input is also a
    decoder skip and must stay intact.
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        *,
        downsample: bool,
        start_with_relu: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate(widths):
            if i > 0 or start_with_relu:
                layers.append(nn.ReLU())
            layers += [SeparableConv2d(previous, width), nn.BatchNorm2d(width)]
            previous = width
        if downsample:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.residual = nn.Sequential(*layers)
        if downsample or previous != in_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, previous, 1, stride=2 if downsample else 1, bias=False),
                nn.BatchNorm2d(previous),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


def _encoder(in_channels: int, *, width_multiplier: float, middle: int) -> Stages:
    """The entry, middle and exit flows cut into five stages (strides 2 … 32)."""

    def w(channels: int) -> int:
        return _scaled(channels, width_multiplier)

    c32, c64, c128, c256, c728 = w(32), w(64), w(128), w(256), w(728)
    c1024, c1536, c2048 = w(1024), w(1536), w(2048)
    stem = nn.Sequential(
        nn.Conv2d(in_channels, c32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c32),
        nn.ReLU(),
        nn.Conv2d(c32, c64, 3, padding=1, bias=False),
        nn.BatchNorm2d(c64),
        nn.ReLU(),
    )
    entry1 = XceptionBlock(c64, (c128, c128), downsample=True, start_with_relu=False)
    entry2 = XceptionBlock(c128, (c256, c256), downsample=True)
    entry3_and_middle = nn.Sequential(
        XceptionBlock(c256, (c728, c728), downsample=True),
        *(XceptionBlock(c728, (c728, c728, c728), downsample=False) for _ in range(middle)),
    )
    exit_flow = nn.Sequential(
        XceptionBlock(c728, (c728, c1024), downsample=True),
        SeparableConv2d(c1024, c1536),
        nn.BatchNorm2d(c1536),
        nn.ReLU(),
        SeparableConv2d(c1536, c2048),
        nn.BatchNorm2d(c2048),
        nn.ReLU(),
    )
    return Stages(
        [stem, entry1, entry2, entry3_and_middle, exit_flow], (c64, c128, c256, c728, c2048)
    )


def _scaled(channels: int, multiplier: float) -> int:
    """`channels × multiplier` rounded to a multiple of 8 (at least 8); exact at 1.0."""
    if multiplier == 1.0:
        return channels
    return max(8, round(channels * multiplier / 8) * 8)
