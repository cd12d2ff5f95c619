"""A training that collapses to a dead network starts over from new weights, or fails.

A dead GG-CNN (every unit of a layer off for every input) scores 0 however long it
trains; the efficacy bench met one in 11 trainings. The networks here are GG-CNNs made
dead on purpose (`tests.harness.dead_nets`), for the seeds a test picks, so the restart
is exercised end to end through `train` (checkpoints, resume, the error) without waiting
for a chance collapse.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from regrasp.learn.training.config import TrainConfig
from regrasp.learn.training.loop import (
    TrainingCollapsed,
    attempt_seed,
    collapse_reason,
    load_latest_checkpoint,
    split_datasets,
    train,
)
from regrasp.platform.store import keys
from regrasp.platform.store.objects import open_store
from tests.harness.dead_nets import dead_ggcnn, register_dead
from tests.harness.training import synthetic_cache

SIZE = 32
SEED = 5


@pytest.fixture
def nets(monkeypatch):
    """Test architectures: dead at the first seed only (from the start, or from the
    third epoch on: 12 images in batches of 4 are 3 steps an epoch), dead at every seed."""
    register_dead(monkeypatch, "dead_first", dead_ggcnn({SEED}))
    register_dead(monkeypatch, "dead_later", dead_ggcnn({SEED}, after_steps=7))
    register_dead(monkeypatch, "dead_always", dead_ggcnn(None))


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    return synthetic_cache(
        tmp_path_factory.mktemp("collapse"), images=12, objects=6, seed=3, size=SIZE
    )


def _config(architecture: str, **changes) -> TrainConfig:
    base = {
        "architecture": architecture,
        "epochs": 2,
        "batch_size": 4,
        "lr": 1e-3,
        "input_size": SIZE,
        "num_workers": 0,
        "seed": SEED,
        "decode": {"min_distance": 2},
        "keep_checkpoints": 5,
    }
    return TrainConfig.model_validate({**base, **changes})


def _run(cached, name: str, config: TrainConfig, **kwargs):
    url, index, split = cached
    store = open_store(url)
    train_data, _, _ = split_datasets(config, store, index, split)
    return train(
        config, train_data=train_data, val_data=None, store=store, name=name, device="cpu", **kwargs
    )


def _quality_range(model: torch.nn.Module) -> float:
    with torch.no_grad():
        quality = model(torch.randn(2, 1, SIZE, SIZE))[0]
    return float(quality.amax() - quality.amin())


def test_collapse_reason_names_dead_and_non_finite_models() -> None:
    alive = torch.rand(2, 1, 8, 8)
    assert collapse_reason(0.02, alive) is None
    assert "not finite" in collapse_reason(math.nan, alive)
    assert "not finite" in collapse_reason(math.inf, alive)
    assert "same at every pixel" in collapse_reason(0.02, torch.full((2, 1, 8, 8), 0.013))
    nan_map = alive.clone()
    nan_map[0, 0, 3, 3] = math.nan
    assert "quality is not finite" in collapse_reason(0.02, nan_map)


def test_attempt_zero_keeps_the_configured_seed() -> None:
    assert attempt_seed(SEED, 0) == SEED
    assert len({attempt_seed(SEED, a) for a in range(4)}) == 4


def test_a_dead_first_attempt_restarts_with_a_new_seed_and_trains(cached, nets) -> None:
    store = open_store(cached[0])
    seen: list[dict] = []
    result = _run(
        cached,
        "restarted",
        _config("dead_first"),
        progress=lambda epoch, step, metrics: seen.append(metrics),
    )
    assert result.restarts == [
        {
            "attempt": 0,
            "seed": SEED,
            "epoch": 1,
            "reason": "the predicted quality is the same at every pixel of every image",
        }
    ]
    assert {"restart": 1.0} in seen
    # The second attempt trained every epoch from scratch, and its model is alive.
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.epochs_completed == 2
    assert _quality_range(result.model) > 1e-3
    checkpoint = load_latest_checkpoint(store, "restarted")
    assert checkpoint["attempt"] == 1 and checkpoint["restarts"] == result.restarts


def test_a_run_that_never_stops_collapsing_fails_with_one_line(cached, nets) -> None:
    with pytest.raises(TrainingCollapsed) as raised:
        _run(cached, "dead", _config("dead_always", max_restarts=1))
    message = str(raised.value)
    assert "\n" not in message
    assert "all 2 attempts" in message and f"seed {attempt_seed(SEED, 1)}" in message
    # A healthy architecture with restarts off trains as before.
    assert _run(cached, "healthy", _config("ggcnn", max_restarts=0)).restarts == []


def test_a_restarted_run_resumes_its_own_attempt_exactly(cached, nets) -> None:
    full = _run(cached, "full", _config("dead_first"))
    steps: list[tuple[int, int]] = []

    def stop_in_epoch_2() -> bool:
        return bool(steps) and steps[-1][0] == 2 and steps[-1][1] >= 1

    first = _run(
        cached,
        "interrupted",
        _config("dead_first"),
        progress=lambda epoch, step, metrics: steps.append((epoch, step)),
        should_stop=stop_in_epoch_2,
    )
    assert first.stopped and first.epochs_completed == 1
    second = _run(cached, "interrupted", _config("dead_first"))
    assert second.restarts == full.restarts
    assert [h["train_loss"] for h in second.history] == [h["train_loss"] for h in full.history]
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name


def test_a_later_collapse_discards_the_dead_attempts_checkpoints(cached, nets) -> None:
    store = open_store(cached[0])
    seen: list[tuple[int, dict]] = []

    def stop_after_the_restart() -> bool:
        return any("restart" in m for _, m in seen) and "loss" in seen[-1][1]

    stopped = _run(
        cached,
        "later",
        _config("dead_later", epochs=3),
        progress=lambda epoch, step, metrics: seen.append((epoch, metrics)),
        should_stop=stop_after_the_restart,
    )
    # The first attempt finished epochs 1 and 2 alive, then died in epoch 3; the second
    # was stopped in its first step. Nothing of the dead attempt is left to resume from.
    assert stopped.stopped
    assert [m["epoch"] for _, m in seen if "train_loss" in m] == [1, 2]
    assert list(store.list(keys.checkpoints_prefix("later"))) == []

    result = _run(cached, "later", _config("dead_later", epochs=3))
    assert [(r["attempt"], r["epoch"]) for r in result.restarts] == [(0, 3)]
    listed = [info.key for info in store.list(keys.checkpoints_prefix("later"))]
    assert listed == [keys.checkpoint_key("later", e) for e in (1, 2, 3)]
    for epoch in (1, 2, 3):
        data = store.get_bytes(keys.checkpoint_key("later", epoch))
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        assert saved["attempt"] == 1, epoch
    assert _quality_range(result.model) > 1e-3
