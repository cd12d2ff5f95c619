"""ShuffleNetV2 1.0× (Ma et al. 2018) encoder with the skip decoder.

torchvision's `shufflenet_v2_x1_0` (`weights=None`): channel split, shuffle and
depthwise convolutions in three stages. Its first 3×3 stride-2 conv takes `in_channels`;
the final 1×1 conv to 1024 channels and the classifier are dropped (they only feed the
global pool). Stages end at strides 2 (first conv, 24 ch), 4 (max-pool, 24 ch), 8 (stage 2,
116 ch), 16 (stage 3, 232 ch) and 32 (stage 4, 464 ch).
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.models import shufflenet_v2_x1_0 as tv_shufflenet_v2_x1_0

from regrasp.learn.nets.decoder import SkipDecoderBody, Stages
from regrasp.learn.nets.heads import GraspNet, adapt_first_conv
from regrasp.learn.nets.registry import register


@register("shufflenet")
def shufflenet(
    *, in_channels: int, dropout: float, decoder_channels: Sequence[int] | None = None
) -> GraspNet:
    """ShuffleNetV2 1.0× encoder (stride 32) + skip decoder; 5 `decoder_channels`."""
    backbone = tv_shufflenet_v2_x1_0(weights=None)
    backbone.conv1[0] = adapt_first_conv(backbone.conv1[0], in_channels)
    stages = [backbone.conv1, backbone.maxpool, backbone.stage2, backbone.stage3, backbone.stage4]
    encoder = Stages(stages, (24, 24, 116, 232, 464))
    body = SkipDecoderBody(encoder, decoder_channels=decoder_channels)
    return GraspNet(body, in_channels=in_channels, body_channels=body.out_channels, dropout=dropout)
