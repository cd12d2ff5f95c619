"""The training loop: checkpoints in the store, exact resume, the DDP context.

The DDP code path itself (two gloo ranks as processes) is in
`tests/integration/test_training_ddp.py`: unit tests start no processes.
"""

from __future__ import annotations

import pytest
import torch

from regrasp.learn.training.config import TrainConfig
from regrasp.learn.training.loop import (
    DistributedContext,
    grasp_loss,
    load_latest_checkpoint,
    split_datasets,
    train,
)
from regrasp.platform.store import keys
from regrasp.platform.store.objects import open_store
from tests.harness.training import synthetic_cache

SIZE = 32


def _config(**changes) -> TrainConfig:
    base = {
        "architecture": "ggcnn",
        "epochs": 2,
        "batch_size": 4,
        "lr": 1e-3,
        "input_size": SIZE,
        "num_workers": 0,
        "seed": 5,
        "decode": {"min_distance": 2},
        "keep_checkpoints": 5,
    }
    return TrainConfig.model_validate({**base, **changes})


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """(store URL, cache index, split) of 16 synthetic images cached at 32 px."""
    return synthetic_cache(
        tmp_path_factory.mktemp("loop"),
        images=16,
        objects=8,
        seed=2,
        size=SIZE,
        shard_size=6,
        val_fraction=0.25,
        test_fraction=0.25,
    )


def _run(cached, name, **kwargs):
    url, index, split = cached
    store = open_store(url)
    config = kwargs.pop("config", _config())
    train_data, val_data, _ = split_datasets(config, store, index, split)
    return train(
        config,
        train_data=train_data,
        val_data=val_data,
        store=store,
        name=name,
        device="cpu",
        split=split,
        **kwargs,
    )


def test_loss_is_the_sum_of_four_mses() -> None:
    target = torch.rand(2, 4, 8, 8)
    predicted = [torch.zeros(2, 1, 8, 8) for _ in range(4)]
    loss, terms = grasp_loss(predicted, target)
    expected = sum(float((target[:, i] ** 2).mean()) for i in range(4))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert sum(terms.values()) == pytest.approx(expected, rel=1e-6)


def test_interrupted_run_resumes_to_the_same_weights(cached) -> None:
    url, _, _ = cached
    store = open_store(url)
    full = _run(cached, "full")
    assert [h["epoch"] for h in full.history] == [1, 2]
    assert all("val_accuracy" in h and h["train_loss"] > 0 for h in full.history)
    assert store.exists(keys.checkpoint_key("full", 1))
    assert store.exists(keys.checkpoint_key("full", 2))

    # Stop during the second epoch: only epoch 1 is checkpointed.
    steps: list[tuple[int, int]] = []

    def stop_in_epoch_2() -> bool:
        return bool(steps) and steps[-1][0] == 2 and steps[-1][1] >= 1

    first = _run(
        cached,
        "resumed",
        progress=lambda epoch, step, metrics: steps.append((epoch, step)),
        should_stop=stop_in_epoch_2,
    )
    assert first.stopped and first.epochs_completed == 1
    assert not store.exists(keys.checkpoint_key("resumed", 2))
    checkpoint = load_latest_checkpoint(store, "resumed")
    assert checkpoint["epoch"] == 1 and len(checkpoint["optimizer"]["state"]) > 0

    second = _run(cached, "resumed")
    assert not second.stopped and second.epochs_completed == 2
    assert [h["epoch"] for h in second.history] == [1, 2]
    assert second.history[0] == first.history[0]
    assert second.history[1]["train_loss"] == full.history[1]["train_loss"]
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name

    # Resuming a finished run trains nothing more.
    third = _run(cached, "resumed")
    assert third.epochs_completed == 2 and len(third.history) == 2


def test_resume_false_starts_over_and_old_checkpoints_are_pruned(cached) -> None:
    url, _, _ = cached
    store = open_store(url)
    _run(cached, "pruned", config=_config(epochs=3, keep_checkpoints=1))
    listed = [info.key for info in store.list(keys.checkpoints_prefix("pruned"))]
    assert listed == [keys.checkpoint_key("pruned", 3)]
    again = _run(cached, "pruned", config=_config(epochs=1, keep_checkpoints=1), resume=False)
    assert [h["epoch"] for h in again.history] == [1]


def test_test_images_are_refused_for_training(cached) -> None:
    url, index, split = cached
    from regrasp.learn.training.data import CachedGraspDataset
    from regrasp.platform.errors import InvalidInput

    store = open_store(url)
    leaky = CachedGraspDataset(store, index, [*split.train, split.test[0]])
    with pytest.raises(InvalidInput, match="test image"):
        train(
            _config(),
            train_data=leaky,
            val_data=None,
            store=store,
            name="leak",
            device="cpu",
            split=split,
        )


def test_distributed_context_reads_torchrun_environment(monkeypatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    ctx = DistributedContext.from_env()
    assert (ctx.rank, ctx.local_rank, ctx.world_size, ctx.enabled, ctx.is_main) == (
        3,
        1,
        4,
        True,
        False,
    )


def test_warmup_raises_the_learning_rate_linearly_over_its_steps(cached) -> None:
    # 8 training images in batches of 4: 2 steps an epoch; a 3-step warm-up ends in
    # epoch 2. Each epoch's entry records the rate of its last step.
    from regrasp.learn.training.loop import epoch_lr

    config = _config(epochs=3, warmup_steps=3)
    warmed = _run(cached, "warmup", config=config)
    assert len(cached[2].train) == 8
    assert [h["lr"] for h in warmed.history] == pytest.approx(
        [epoch_lr(config, 0) * 2 / 3, epoch_lr(config, 1), epoch_lr(config, 2)]
    )
    plain = _run(cached, "no-warmup", config=_config(epochs=3))
    assert [h["lr"] for h in plain.history] == pytest.approx(
        [epoch_lr(config, e) for e in range(3)]
    )
    assert warmed.history[0]["train_loss"] != plain.history[0]["train_loss"]
