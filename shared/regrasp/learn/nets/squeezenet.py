"""SqueezeNet 1.1 (Iandola et al. 2016) encoder with the skip decoder.

torchvision's `squeezenet1_1` (`weights=None`): Fire modules (1×1 squeeze, then parallel
1×1/3×3 expand) between three 3×3 stride-2 max-pools. Its first 3×3 stride-2 conv takes
`in_channels`; the classifier (dropout, 1×1 conv, global pool) is dropped. Stages end at
strides 2 (first conv, 64 ch), 4 (Fire 1–2, 128 ch), 8 (Fire 3–4, 256 ch) and 16
(Fire 5–8, 512 ch). The unpadded first conv and ceil-mode pools give odd sizes (300 → 149
→ 74 → 37 → 18), which the decoder absorbs by resizing to each skip's size.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.models import squeezenet1_1 as tv_squeezenet1_1

from regrasp.learn.nets.decoder import SkipDecoderBody, Stages
from regrasp.learn.nets.heads import GraspNet, adapt_first_conv
from regrasp.learn.nets.registry import register


@register("squeezenet")
def squeezenet(
    *, in_channels: int, dropout: float, decoder_channels: Sequence[int] | None = None
) -> GraspNet:
    """SqueezeNet 1.1 encoder (stride 16) + skip decoder; 4 `decoder_channels`."""
    features = tv_squeezenet1_1(weights=None).features
    features[0] = adapt_first_conv(features[0], in_channels)
    stages = [features[0:2], features[2:5], features[5:8], features[8:13]]
    encoder = Stages(stages, (64, 128, 256, 512))
    body = SkipDecoderBody(encoder, decoder_channels=decoder_channels)
    return GraspNet(body, in_channels=in_channels, body_channels=body.out_channels, dropout=dropout)
