"""MobileNetV2 (the paper's backbone for the HIL rounds) and its pruned variant.

The torchvision MobileNetV2 (`weights=None`) is the encoder, its first convolution adapted
to `in_channels`; the classifier and the final 1×1 conv to 1280 channels (there only to feed
the classifier) are dropped. Stages for the skip decoder end at strides 2, 4, 8, 16, 32:
after blocks 1 (16 ch), 3 (24 ch), 6 (32 ch), 13 (96 ch) and 17 (320 ch), counting the 17
inverted-residual blocks from 1 in torchvision's order.

The pruned variant keeps the first 13 inverted-residual blocks (stages 16×1, 24×2, 32×3,
64×4, 96×3 in channels × repeats) and removes the four stride-32 blocks (the three 160-
channel blocks and the 320-channel block): 13 of 17 blocks, the deepest features at
stride 16, and 30 % of the encoder's parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

from regrasp.learn.nets.decoder import SkipDecoderBody, Stages
from regrasp.learn.nets.heads import GraspNet, adapt_first_conv
from regrasp.learn.nets.registry import register

#: torchvision's MobileNetV2 setting, rows of (expansion t, channels c, repeats n, stride s).
FULL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: The pruned setting: the first five rows, i.e. blocks 1–13; blocks 14–17 are removed.
PRUNED_SETTING = FULL_SETTING[:5]

# Feature indices (0 = stem conv, 1..17 = blocks) closing each stage, for either setting.
_STAGE_ENDS = (2, 4, 7, 14, 18)
_STAGE_CHANNELS = (16, 24, 32, 96, 320)


@register("mobilenet_v2")
def mobilenet_v2(
    *, in_channels: int, dropout: float, decoder_channels: Sequence[int] | None = None
) -> GraspNet:
    """MobileNetV2 encoder (17 blocks, stride 32) + skip decoder; 5 `decoder_channels`."""
    return _build(FULL_SETTING, in_channels, dropout, decoder_channels)


@register("mobilenet_v2_pruned")
def mobilenet_v2_pruned(
    *, in_channels: int, dropout: float, decoder_channels: Sequence[int] | None = None
) -> GraspNet:
    """MobileNetV2 blocks 1–13 (blocks 14–17 removed, stride 16) + skip decoder; 4 widths."""
    return _build(PRUNED_SETTING, in_channels, dropout, decoder_channels)


def _build(
    setting: Sequence[tuple[int, int, int, int]],
    in_channels: int,
    dropout: float,
    decoder_channels: Sequence[int] | None,
) -> GraspNet:
    backbone = tv_mobilenet_v2(
        weights=None, inverted_residual_setting=[list(row) for row in setting]
    )
    features = backbone.features
    stem = features[0]
    stem[0] = adapt_first_conv(stem[0], in_channels)
    blocks = sum(row[2] for row in setting)
    ends = [end for end in _STAGE_ENDS if end <= blocks + 1]
    starts = [0, *ends[:-1]]
    # features[blocks + 1] is the 1×1 conv to 1280 channels: never part of a stage.
    stages = [features[start:end] for start, end in zip(starts, ends, strict=True)]
    encoder = Stages(stages, _STAGE_CHANNELS[: len(stages)])
    body = SkipDecoderBody(encoder, decoder_channels=decoder_channels)
    return GraspNet(body, in_channels=in_channels, body_channels=body.out_channels, dropout=dropout)
