"""The training loop: the paper's loss and optimiser, checkpoints in the store, resume, DDP.

`train` fits a registered network (`regrasp.learn.nets.build`) to GG-CNN targets with the loss of
GG-CNN and "Jacquard V2": the sum of the mean squared errors of the four maps (quality,
cos 2θ, sin 2θ, width), optimised by Adam. On CUDA it uses mixed precision
(`torch.autocast` float16 + `GradScaler`) unless `config.amp == "off"`; on CPU it runs in
float32 (bfloat16 autocast with `amp == "on"`).

Every epoch ends with a checkpoint in the object store under `keys.checkpoint_key(model,
epoch)`: model, optimizer and scaler state, the epoch, the torch RNG states and the history
so far, saved by `torch.save` to bytes and read back with `weights_only=True`. A run
restarted with `resume=True` continues after the latest checkpoint; because the data
order and augmentation are seeded by (seed, epoch) and the RNG states are restored, the
resumed run computes exactly what an uninterrupted one would on CPU.

Launched by `torchrun` (WORLD_SIZE > 1), the model is wrapped in DistributedDataParallel
(NCCL on CUDA, each process on `cuda:LOCAL_RANK`; gloo on CPU), each rank reads its share
of every epoch (`ShardSampler`), and only rank 0 evaluates and writes checkpoints.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from regrasp.learn import nets
from regrasp.learn.training.config import TrainConfig
from regrasp.learn.training.data import CachedGraspDataset, GraspDataset, make_loader
from regrasp.learn.training.evaluate import evaluate
from regrasp.learn.training.splits import Split, exclude_from_training
from regrasp.platform.errors import InvalidInput, RegraspError
from regrasp.platform.store import keys

if TYPE_CHECKING:
    from regrasp.learn.training.cache import CacheIndex
    from regrasp.platform.store.objects import ObjectStore

ProgressFn = Callable[[int, int, dict[str, float]], None]
StopFn = Callable[[], bool]


@dataclass
class TrainResult:
    """What `train` returns: the (unwrapped) model, its history and how the run ended.

    history: one dict per completed epoch (epoch, train_loss, val_accuracy, seconds, ...).
    `stopped` is True when `should_stop` ended the run early; `epochs_completed` counts
    epochs done including those of earlier, resumed runs; `restarts` lists the attempts
    that collapsed before this one (attempt, seed, epoch, reason).
    """

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_completed: int = 0
    stopped: bool = False
    restarts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a `torchrun` launch (world of 1 when not distributed)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistributedContext:
        """From torchrun's RANK / LOCAL_RANK / WORLD_SIZE (absent: one process)."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )


def grasp_loss(
    predicted: Sequence[torch.Tensor], target: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's loss: sum of the MSEs of the four maps; and each term as a float.

    predicted: four (B, 1, S, S) maps (quality, cos 2θ, sin 2θ, width); target (B, 4, S, S).
    """
    names = ("quality", "cos2", "sin2", "width")
    terms = [F.mse_loss(p.float(), target[:, i : i + 1]) for i, p in enumerate(predicted)]
    return sum(terms), {n: float(t.detach()) for n, t in zip(names, terms, strict=True)}


def train(
    config: TrainConfig,
    *,
    train_data: GraspDataset,
    val_data: GraspDataset | None,
    store: ObjectStore,
    name: str,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    resume: bool = True,
    split: Split | None = None,
    distributed: DistributedContext | None = None,
) -> TrainResult:
    """Train `config.architecture` on `train_data`, validating on `val_data` each epoch.

    progress(epoch, step, metrics) is called after every step (metrics: running "loss")
    and at the end of every epoch (the epoch's history entry). should_stop() is polled
    after every step; when it returns True the run ends without checkpointing the partial
    epoch (resume redoes it). With a `split`, training images are checked against its
    test part first. Returns a `TrainResult`.

    A run that collapses (see `collapse_reason`) starts over from fresh weights with the
    next attempt's seed (`attempt_seed`), up to `config.max_restarts` times, and then
    raises `TrainingCollapsed`: a dead network scores 0 however long it trains, so
    finishing its epochs would only register a useless model. Before each restart
    `progress(epoch, 0, {"restart": ...})` reports the collapse.
    """
    ctx = distributed or DistributedContext.from_env()
    if len(train_data) == 0:
        raise InvalidInput("no training images")
    if split is not None and isinstance(train_data, CachedGraspDataset):
        split.check_not_test(train_data.image_ids)
    device = _device(device, ctx)
    if ctx.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    checkpoint = load_latest_checkpoint(store, name) if resume else None
    attempt = int(checkpoint.get("attempt", 0)) if checkpoint is not None else 0
    restarts = list(checkpoint.get("restarts", [])) if checkpoint is not None else []
    while True:
        try:
            result = _fit(
                config,
                attempt,
                restarts,
                checkpoint,
                train_data=train_data,
                val_data=val_data,
                store=store,
                name=name,
                device=device,
                progress=progress,
                should_stop=should_stop,
                ctx=ctx,
            )
        except _Collapsed as collapsed:
            restart = {
                "attempt": attempt,
                "seed": attempt_seed(config.seed, attempt),
                "epoch": collapsed.epoch,
                "reason": collapsed.reason,
            }
            if attempt >= config.max_restarts:
                tried = f"all {attempt + 1} attempts" if attempt else "its only attempt"
                raise TrainingCollapsed(
                    f"training collapsed in {tried} (the last after epoch "
                    f"{collapsed.epoch}, seed {restart['seed']}: {collapsed.reason}); "
                    "try a lower learning rate or a warm-up (warmup_steps)"
                ) from None
            restarts.append(restart)
            if progress is not None:
                progress(collapsed.epoch, 0, {"restart": float(attempt + 1)})
            if ctx.is_main:
                _delete_checkpoints(store, name)
            if ctx.enabled:
                dist.barrier()
            attempt, checkpoint = attempt + 1, None
            continue
        result.restarts = restarts
        return result


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of a run's `attempt`-th start (0: `seed` itself, so a run that never
    collapses is exactly the run it always was)."""
    return seed + 104_729 * attempt


def collapse_reason(loss: float, quality: torch.Tensor) -> str | None:
    """Why a training epoch left a dead model, or None when it did not.

    loss: the epoch's mean training loss; quality: the quality maps of its last batch.
    Two failures end at 0 % accuracy whatever the later epochs do: a non-finite loss
    (the weights are NaN from then on) and a constant quality map (every unit of a layer
    outputs 0 for every input, so no gradient reaches the layers below and the heads
    only learn their bias: no image has a peak to decode). Seen once in 11 trainings of
    the efficacy bench's 25-epoch GG-CNN recipe.
    """
    if not math.isfinite(loss):
        return "the training loss is not finite"
    values = quality.detach().float()
    if not bool(torch.isfinite(values).all()):
        return "the predicted quality is not finite"
    if float(values.amax() - values.amin()) <= 1e-6 * max(1.0, float(values.abs().amax())):
        return "the predicted quality is the same at every pixel of every image"
    return None


class TrainingCollapsed(RegraspError):
    """Every attempt of a training run collapsed (`collapse_reason`); nothing was registered."""


class _Collapsed(Exception):
    """An attempt of `train` ended in a dead model after `epoch` epochs."""

    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(reason)
        self.epoch, self.reason = epoch, reason


def _fit(
    config: TrainConfig,
    attempt: int,
    restarts: list[dict[str, Any]],
    checkpoint: dict[str, Any] | None,
    *,
    train_data: GraspDataset,
    val_data: GraspDataset | None,
    store: ObjectStore,
    name: str,
    device: torch.device,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
    ctx: DistributedContext,
) -> TrainResult:
    """One attempt of `train`, from `checkpoint` when given; raises `_Collapsed`."""
    seed = attempt_seed(config.seed, attempt)
    torch.manual_seed(seed)
    module = nets.build(config.architecture, config.in_channels, dropout=config.dropout).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    use_amp = config.amp == "on" or (config.amp == "auto" and device.type == "cuda")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and device.type == "cuda")

    history: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None:
        module.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        _set_rng_state(checkpoint["rng"], device)
        history = list(checkpoint["history"])
        start = int(checkpoint["epoch"])

    model: nn.Module = module
    if ctx.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    loader = make_loader(
        train_data,
        batch_size=config.batch_size,
        shuffle=True,
        seed=seed,
        num_workers=config.num_workers,
        group=config.shards_in_memory,
        rank=ctx.rank,
        world_size=ctx.world_size,
        pin_memory=device.type == "cuda",
    )

    result = TrainResult(model=module, history=history, epochs_completed=start)
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        loader.sampler.set_epoch(epoch)
        train_data.set_epoch(epoch)
        model.train()
        total, seen = 0.0, 0
        for step, (x, target, _) in enumerate(loader, start=1):
            for group in optimizer.param_groups:
                group["lr"] = step_lr(config, epoch, epoch * len(loader) + step - 1)
            x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
            target = target.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                predicted = model(x)
            loss, _ = grasp_loss(predicted, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(x)
            seen += len(x)
            if progress is not None:
                progress(epoch + 1, step, {"loss": total / seen})
            if _any_rank(_called(should_stop), ctx, device):
                result.stopped = True
                break
        if result.stopped:
            break
        entry = {
            "epoch": epoch + 1,
            "train_loss": _mean_over_ranks(total, seen, ctx, device),
            "lr": float(optimizer.param_groups[0]["lr"]),
        }
        reason = collapse_reason(entry["train_loss"], predicted[0])
        if _any_rank(reason is not None, ctx, device):
            raise _Collapsed(epoch + 1, reason or "another rank's model collapsed")
        if ctx.is_main and val_data is not None and len(val_data):
            entry["val_accuracy"] = evaluate(
                module, val_data, decode_config=config.decode, device=device
            ).accuracy
        entry["seconds"] = time.perf_counter() - began
        history.append(entry)
        result.epochs_completed = epoch + 1
        if ctx.is_main:
            save_checkpoint(
                store,
                name,
                epoch=epoch + 1,
                model=module,
                optimizer=optimizer,
                scaler=scaler,
                history=history,
                config=config,
                keep=config.keep_checkpoints,
                attempt=attempt,
                restarts=restarts,
            )
        if ctx.enabled:
            dist.barrier()
        if progress is not None:
            progress(epoch + 1, len(loader), dict(entry))
    return result


def step_lr(config: TrainConfig, epoch: int, done: int) -> float:
    """The learning rate of the optimiser step that follows `done` steps, in 0-based
    `epoch`: the epoch's rate (`epoch_lr`), of which the first `config.warmup_steps`
    steps take a linearly rising share (step n of N: n / N). A function of its arguments
    alone, so a resumed run needs no scheduler state to continue exactly."""
    rate = epoch_lr(config, epoch)
    if done < config.warmup_steps:
        rate = rate * (done + 1) / config.warmup_steps
    return rate


def epoch_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch`: a function of the epoch alone, so a resumed
    run needs no scheduler state to continue exactly."""
    if config.lr_schedule == "constant" or config.epochs <= 1:
        return config.lr
    floor = config.lr / 20.0
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))


def save_checkpoint(
    store: ObjectStore,
    name: str,
    *,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    history: list[dict[str, float]],
    config: TrainConfig,
    keep: int = 2,
    attempt: int = 0,
    restarts: Sequence[dict[str, Any]] = (),
) -> str:
    """Write the checkpoint after `epoch` completed epochs; delete all but the last `keep`.

    Returns its key. Content (tensors, numbers, strings, lists and dicts only, so it loads
    with `weights_only=True`): model, optimizer, scaler, epoch, rng, history, config, and
    which attempt of the run it belongs to with the restarts before it (`train`).
    """
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": int(epoch),
        "rng": _rng_state(),
        "history": [dict(h) for h in history],
        "config": config.model_dump(mode="json"),
        "attempt": int(attempt),
        "restarts": [dict(r) for r in restarts],
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    key = keys.checkpoint_key(name, epoch)
    store.put_bytes(key, buffer.getvalue())
    for old_epoch, old_key in _checkpoints(store, name)[:-keep]:
        if old_epoch < epoch:
            store.delete(old_key)
    return key


def load_latest_checkpoint(store: ObjectStore, name: str) -> dict[str, Any] | None:
    """The latest checkpoint of model `name` (weights_only load on CPU), or None."""
    found = _checkpoints(store, name)
    if not found:
        return None
    data = store.get_bytes(found[-1][1])
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def metadata_for(
    config: TrainConfig,
    *,
    dataset: str | None,
    dataset_version: int | None,
    split: Split | None,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """The metadata `registry.register_model` stores for a model trained with `config`."""
    return {
        "architecture": config.architecture,
        "in_channels": config.in_channels,
        "channels": config.channels,
        "input_size": config.input_size,
        "width_scale": config.width_scale,
        "decode": config.decode.model_dump(mode="json"),
        "dropout": config.dropout,
        "dataset": dataset,
        "dataset_version": dataset_version,
        "split": split.to_dict() if split is not None else {},
        "metrics": metrics,
        "config": config.model_dump(mode="json"),
    }


def split_datasets(
    config: TrainConfig, store: ObjectStore, index: CacheIndex, split: Split
) -> tuple[CachedGraspDataset, CachedGraspDataset, CachedGraspDataset]:
    """(train, val, test) datasets of a cache: train augmented, the others not.

    `config.exclude_image_ids` never train; `config.max_images` then caps the training
    images (the first ones of a seeded shuffle). The test part never reaches the training
    set (checked).
    """
    train_ids = list(exclude_from_training(split, config.exclude_image_ids).train)
    if config.max_images is not None and len(train_ids) > config.max_images:
        picks = torch.randperm(len(train_ids), generator=_generator(config.seed))
        train_ids = sorted(train_ids[i] for i in picks[: config.max_images].tolist())
    split.check_not_test(train_ids)
    common = {
        "width_scale": config.width_scale,
        "seed": config.seed,
        "shards_in_memory": config.shards_in_memory,
    }
    train = CachedGraspDataset(store, index, train_ids, augment=config.augment, **common)
    val = CachedGraspDataset(store, index, list(split.val), augment=None, **common)
    test = CachedGraspDataset(store, index, list(split.test), augment=None, **common)
    return train, val, test


def _checkpoints(store: ObjectStore, name: str) -> list[tuple[int, str]]:
    found = []
    for info in store.list(keys.checkpoints_prefix(name)):
        try:
            _, epoch = keys.parse_checkpoint_key(info.key)
        except InvalidInput:
            continue
        found.append((epoch, info.key))
    return sorted(found)


def _device(device: torch.device | str | None, ctx: DistributedContext) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available() and ctx.enabled:
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return nets.default_device()


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _called(should_stop: StopFn | None) -> bool:
    return bool(should_stop()) if should_stop is not None else False


def _any_rank(flag: bool, ctx: DistributedContext, device: torch.device) -> bool:
    """`flag` on this process, or on any rank of a distributed run (all ranks agree)."""
    if not ctx.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def _delete_checkpoints(store: ObjectStore, name: str) -> None:
    for _, key in _checkpoints(store, name):
        store.delete(key)


def _mean_over_ranks(
    total: float, seen: int, ctx: DistributedContext, device: torch.device
) -> float:
    if ctx.enabled:
        sums = torch.tensor([total, float(seen)], device=device, dtype=torch.float64)
        dist.all_reduce(sums)
        total, seen = float(sums[0]), int(sums[1])
    return total / seen if seen else math.nan


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
