"""GG-CNN and GG-CNN2, the small fully convolutional grasp networks of Morrison et al.

- GG-CNN ("Closing the Loop for Robotic Grasping", RSS 2018): three strided convolutions
  (9×9/32 stride 3, 5×5/16 stride 2, 3×3/8 stride 2; 300 → 100 → 50 → 25) mirrored by three
  transposed convolutions back to 300, ReLU after each. With the paper's 2×2 heads it has
  62,420 parameters; ours uses 1×1 heads behind the shared dropout (62,036 at 1 channel).
- GG-CNN2 ("Learning robust, real-time, reactive robotic grasping", IJRR 2019): two blocks
  of two convolutions + 2× max-pool (11×11 then 5×5 at 16 filters, two 5×5 at 16), two
  5×5 dilated convolutions (32 filters, dilation 2 and 4) that widen the receptive field
  at 1/4 resolution without more pooling, then two bilinear 2× upsamplings each followed
  by a 3×3 convolution (16 filters).

Both run at any input size: where the strides do not divide it (224 for GG-CNN) the last
feature map is bilinearly resized to the input by `GraspNet`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from regrasp.learn.nets.heads import GraspNet
from regrasp.learn.nets.registry import register
from regrasp.platform.errors import InvalidInput

#: GG-CNN filters per layer (conv1-3, deconv1-3), kernel sizes and strides, from the paper.
GGCNN_FILTERS = (32, 16, 8, 8, 16, 32)
_GGCNN_KERNELS = (9, 5, 3, 3, 5, 9)
_GGCNN_STRIDES = (3, 2, 2, 2, 2, 3)

#: GG-CNN2 filters: first block, second block, dilated block, upsampling block.
GGCNN2_FILTERS = (16, 16, 32, 16)
GGCNN2_DILATIONS = (2, 4)


@register("ggcnn")
def ggcnn(*, in_channels: int, dropout: float, filters: Sequence[int] = GGCNN_FILTERS) -> GraspNet:
    """GG-CNN (Morrison et al. 2018); `filters`: six widths (conv1-3, deconv1-3)."""
    widths = _positive_ints(filters, count=6, option="filters")
    layers: list[nn.Module] = []
    previous = in_channels
    for i, (width, kernel, stride) in enumerate(
        zip(widths, _GGCNN_KERNELS, _GGCNN_STRIDES, strict=True)
    ):
        padding = (kernel - 1) // 2 if stride == 2 else (kernel - stride) // 2
        if i < 3:
            layers.append(nn.Conv2d(previous, width, kernel, stride=stride, padding=padding))
        else:
            # output_padding makes each stride-2 layer exactly double (25 → 50 → 100); the
            # stride-3 9×9 layer triples 100 → 300 on its own.
            layers.append(
                nn.ConvTranspose2d(
                    previous,
                    width,
                    kernel,
                    stride=stride,
                    padding=padding,
                    output_padding=1 if stride == 2 else 0,
                )
            )
        layers.append(nn.ReLU(inplace=True))
        previous = width
    return init_relu_convs(
        GraspNet(
            nn.Sequential(*layers),
            in_channels=in_channels,
            body_channels=widths[-1],
            dropout=dropout,
        )
    )


@register("ggcnn2")
def ggcnn2(
    *,
    in_channels: int,
    dropout: float,
    filters: Sequence[int] = GGCNN2_FILTERS,
    dilations: Sequence[int] = GGCNN2_DILATIONS,
) -> GraspNet:
    """GG-CNN2 (Morrison et al. 2019); `filters`: four block widths, `dilations`: two rates."""
    f1, f2, f3, f4 = _positive_ints(filters, count=4, option="filters")
    d1, d2 = _positive_ints(dilations, count=2, option="dilations")
    body = nn.Sequential(
        nn.Conv2d(in_channels, f1, 11, padding=5),
        nn.ReLU(inplace=True),
        nn.Conv2d(f1, f1, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, stride=2),
        nn.Conv2d(f1, f2, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(f2, f2, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, stride=2),
        nn.Conv2d(f2, f3, 5, dilation=d1, padding=2 * d1),
        nn.ReLU(inplace=True),
        nn.Conv2d(f3, f3, 5, dilation=d2, padding=2 * d2),
        nn.ReLU(inplace=True),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(f3, f4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(f4, f4, 3, padding=1),
        nn.ReLU(inplace=True),
    )
    return init_relu_convs(
        GraspNet(body, in_channels=in_channels, body_channels=f4, dropout=dropout)
    )


def init_relu_convs(net: GraspNet) -> GraspNet:
    """Kaiming-normal weights and zero biases for every convolution of `net`.

    PyTorch's default convolution init (uniform, gain for leaky ReLU with a = √5) shrinks
    the signal through GG-CNN's six plain ReLU layers: the maps start near zero and
    training sits on an all-background plateau for ~500 Adam steps before it learns
    anything (the demo used to stop inside it). He et al.'s init keeps the variance of
    each ReLU layer's output, and learning starts in the first epoch. Transposed
    convolutions keep their variance over their input fan (`fan_in` of the weight's
    layout there).
    """
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            mode = "fan_out" if isinstance(module, nn.Conv2d) else "fan_in"
            nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def _positive_ints(values: Sequence[int], *, count: int, option: str) -> tuple[int, ...]:
    """`values` as a tuple of `count` positive ints, or `InvalidInput` naming the option."""
    result = tuple(values)
    if len(result) != count or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in result
    ):
        raise InvalidInput(f"{option} must be {count} positive integers, got {values!r}")
    return result
