"""Contract tests over every registered grasp network (torchvision's test_models.py pattern).

Each network must build for depth, RGB and RGB-D inputs, return four maps at the input's
size for square and non-square sizes, carry the configured dropout, and learn: a few Adam
steps on a fixed batch lower the paper's loss (the sum of four MSEs).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

from regrasp.learn import nets
from regrasp.platform.errors import Conflict, InvalidInput

TABLE_ONE = {
    "ggcnn",
    "ggcnn2",
    "mobilenet_v2",
    "mobilenet_v2_pruned",
    "squeezenet",
    "shufflenet",
    "xception",
    "resnet50",
    "resnet101",
    "resnet152",
}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def grasp_loss(maps: nets.GraspMaps, targets: torch.Tensor) -> torch.Tensor:
    """The paper's loss: the sum of the four maps' mean squared errors; targets (B, 4, H, W)."""
    losses = [nn.functional.mse_loss(m, targets[:, i : i + 1]) for i, m in enumerate(maps)]
    return torch.stack(losses).sum()


def synthetic_targets(batch: int, size: int) -> torch.Tensor:
    """Smooth GG-CNN-like targets (B, 4, size, size): a quality blob, 30° and width 0.4 on it."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = torch.exp(-((xs - size / 2) ** 2 + (ys - size / 3) ** 2) / (2 * (size / 8) ** 2))
    angle = math.radians(30)
    maps = torch.stack([blob, blob * math.cos(2 * angle), blob * math.sin(2 * angle), blob * 0.4])
    return maps.unsqueeze(0).repeat(batch, 1, 1, 1)


#: The biggest networks take most of this file's time on a CPU: `slow`, so `make test-fast`
#: leaves them out (`make test` runs them).
_SLOW = {"resnet101", "resnet152", "xception"}
_NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in nets.NAMES]


def test_names_are_the_ten_networks_of_table_one() -> None:
    assert set(nets.NAMES) == TABLE_ONE
    assert len(nets.NAMES) == len(TABLE_ONE)
    assert nets.NAMES == nets.names()


@pytest.mark.parametrize("name", _NAMES)
@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_builds_and_returns_four_maps_of_the_input_size(name: str, in_channels: int) -> None:
    model = nets.build(name, in_channels).eval()
    x = torch.randn(2, in_channels, 96, 96)
    with torch.no_grad():
        maps = model(x)
    assert isinstance(maps, nets.GraspMaps)
    assert len(maps) == 4
    for m in maps:
        assert m.shape == (2, 1, 96, 96)
        assert m.dtype == torch.float32
        assert torch.isfinite(m).all()
    # The two images differ, so the maps must too: the network reads its input.
    assert not torch.allclose(maps.quality[0], maps.quality[1])
    with pytest.raises(InvalidInput, match=f"\\(B, {in_channels}, H, W\\)"):
        model(torch.zeros(1, in_channels + 1, 96, 96))


@pytest.mark.parametrize("name", _NAMES)
def test_full_size_and_non_square_inputs_with_configured_dropout(name: str) -> None:
    model = nets.build(name, 1, dropout=0.2).eval()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts, "no dropout layer before the heads"
    assert all(d.p == pytest.approx(0.2) for d in dropouts)
    with torch.no_grad():
        for height, width in [(300, 300), (224, 320)]:
            maps = model(torch.randn(1, 1, height, width))
            assert [tuple(m.shape) for m in maps] == [(1, 1, height, width)] * 4


@pytest.mark.parametrize("name", _NAMES)
def test_adam_steps_on_a_fixed_batch_lower_the_paper_loss(name: str) -> None:
    model = nets.build(name, 4, dropout=0.0).train()
    x = torch.randn(2, 4, 64, 64)
    targets = synthetic_targets(2, 64)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-4)
    with torch.no_grad():
        before = grasp_loss(model(x), targets).item()
    for _ in range(3):
        optimiser.zero_grad()
        loss = grasp_loss(model(x), targets)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        after = grasp_loss(model(x), targets).item()
    assert math.isfinite(after)
    assert after < before


def test_default_dropout_is_the_papers_and_acts_only_in_training() -> None:
    assert all(
        m.p == pytest.approx(0.05)
        for m in nets.build("ggcnn", 1).modules()
        if isinstance(m, nn.Dropout)
    )
    model = nets.build("ggcnn", 1, dropout=0.5)
    x = torch.randn(1, 1, 96, 96)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x).quality, model(x).quality)
        model.eval()
        assert torch.equal(model(x).quality, model(x).quality)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        nets.build("alexnet", 1)
    for name in nets.NAMES:
        assert name in str(caught.value)


def test_duplicate_registration_is_refused_and_keeps_the_first() -> None:
    def impostor(*, in_channels: int, dropout: float) -> nn.Module:
        return nn.Identity()

    with pytest.raises(Conflict, match="ggcnn"):
        nets.register("ggcnn")(impostor)
    assert nets.names() == nets.NAMES
    assert isinstance(nets.build("ggcnn", 1), nets.GraspNet)


def test_builders_must_take_the_common_options_keyword_only() -> None:
    def positional(in_channels: int, dropout: float) -> nn.Module:
        return nn.Identity()

    with pytest.raises(InvalidInput, match="keyword-only"):
        nets.register("not_keyword_only")(positional)
    assert "not_keyword_only" not in nets.names()


@pytest.mark.parametrize(
    ("in_channels", "options"),
    [
        (0, {}),
        (True, {}),
        (1, {"dropout": 1.0}),
        (1, {"dropout": -0.1}),
        (1, {"depth": 3}),
        (1, {"decoder_channels": (16, 32)}),
    ],
)
def test_invalid_build_arguments_are_refused(in_channels: int, options: dict) -> None:
    with pytest.raises(InvalidInput):
        nets.build("mobilenet_v2", in_channels, **options)


def test_ggcnn_matches_the_paper_parameter_count() -> None:
    # Morrison et al. 2018: 62,420 parameters, of which four 2×2 heads on 32 channels;
    # ours has the same body and 1×1 heads.
    paper_heads = 4 * (32 * 2 * 2 + 1)
    assert nets.count_parameters(nets.build("ggcnn", 1).body) == 62_420 - paper_heads


def test_xception_encoder_matches_the_paper_parameter_count() -> None:
    # Chollet 2017: 22,855,952 trainable parameters with the 2048 → 1000 classifier.
    model = nets.build("xception", 3)
    classifier = 2048 * 1000 + 1000
    assert nets.count_parameters(model.body.encoder) == 22_855_952 - classifier


def test_mobilenet_v2_pruned_keeps_the_first_13_of_17_blocks() -> None:
    def blocks(model: nn.Module) -> list[InvertedResidual]:
        return [m for m in model.modules() if isinstance(m, InvertedResidual)]

    full, pruned = (
        blocks(nets.build("mobilenet_v2", 1)),
        blocks(nets.build("mobilenet_v2_pruned", 1)),
    )
    assert (len(full), len(pruned)) == (17, 13)
    assert [b.out_channels for b in pruned] == [b.out_channels for b in full[:13]]


def test_count_parameters_counts_trainable_only_on_request() -> None:
    model = nets.build("ggcnn2", 1)
    total = nets.count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    for p in model.head.parameters():
        p.requires_grad_(False)
    head = sum(p.numel() for p in model.head.parameters())
    assert nets.count_parameters(model, trainable_only=True) == total - head


def test_default_device_is_cuda_exactly_when_available() -> None:
    device = nets.default_device()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device.index is None
