"""The "train" job: a dataset version in, a registered model out (resumable per epoch).

torch is imported inside the function, so the trainer's HTTP service never loads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from regrasp.learn import queue as jobs
from regrasp.learn.worker.common import Bind, ClaimedJob, ProgressFn, Stopped
from regrasp.learn.worker.payloads import (
    model_store_name,
    parse_train_config,
    validate_payload,
)
from regrasp.platform.errors import InvalidInput
from regrasp.platform.store import keys
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Model, ModelStatus

if TYPE_CHECKING:
    from regrasp.platform.store.objects import ObjectStore

__all__ = ["run_train"]

#: Share of a train job's progress given to training; the rest is cache + final evaluation.
_TRAIN_SHARE = 0.97


def run_train(
    bind: Bind,
    store: ObjectStore,
    job: ClaimedJob,
    progress: ProgressFn | None,
    should_stop: Callable[[], bool] | None,
    device: str | None,
) -> dict[str, Any]:
    from regrasp.learn.training import loop
    from regrasp.learn.training.cache import build_cache, db_images
    from regrasp.learn.training.evaluate import evaluate
    from regrasp.learn.training.registry import register_model
    from regrasp.learn.training.splits import exclude_from_training, make_split

    report = progress or (lambda _f, _m: None)
    stop = should_stop or (lambda: False)
    with session_scope(bind) as session:
        checked = validate_payload(session, "train", job.payload)
        config = parse_train_config(checked["config"])
        dataset_id, version = checked["dataset_id"], checked["version"]
        dataset_key = keys.dataset_store_name(checked["dataset"], dataset_id)
        model_row = _model_row(session, job, config, dataset_id, version)
        model_name = model_store_name(model_row)
        sources = db_images(session, store, dataset_id=dataset_id, version=version)

    if stop():
        raise Stopped
    base = dict(job.metrics)
    report(
        base.get("progress_at_claim", 0.0), {"phase": "cache", "cached": 0, "images": len(sources)}
    )
    index = build_cache(
        store,
        sources,
        dataset=dataset_key,
        version=version,
        channels=config.channels,
        size=config.input_size,
        progress=lambda done, total: report(
            float(base.get("progress_at_claim", 0.0)),
            {"phase": "cache", "cached": done, "images": total},
        ),
    )
    objects = {s.image_id: s.object_id for s in sources}
    ids = list(index.image_ids)
    split = make_split(
        ids,
        [objects[i] for i in ids],
        kind=config.split.kind,
        seed=config.split.seed,
        val_fraction=config.split.val_fraction,
        test_fraction=config.split.test_fraction,
    )
    # Held-out images (out-of-fold, a campaign's test set) leave the recorded split too.
    split = exclude_from_training(split, config.exclude_image_ids)
    train_data, val_data, test_data = loop.split_datasets(config, store, index, split)
    if len(train_data) == 0:
        raise InvalidInput(
            f"dataset version {version} leaves no training images after the split "
            f"({len(ids)} images, {len(split.val)} val, {len(split.test)} test)"
        )
    steps = max(1, math.ceil(len(train_data) / config.batch_size))
    history: list[dict[str, Any]] = list(base.get("history", []))
    state: dict[str, Any] = {"resumed_from_epoch": None, "restarts": 0}

    def on_step(epoch: int, step: int, metrics: dict[str, float]) -> None:
        if "restart" in metrics:  # the attempt collapsed: its epochs start over
            history.clear()
            state["restarts"] = int(metrics["restart"])
            return
        if state["resumed_from_epoch"] is None:
            state["resumed_from_epoch"] = epoch - 1
            history[:] = [h for h in history if h.get("epoch", 0) < epoch]
        if "train_loss" in metrics:  # the end-of-epoch call carries the epoch's entry
            history.append(dict(metrics))
        fraction = _TRAIN_SHARE * ((epoch - 1) + min(step, steps) / steps) / config.epochs
        report(
            fraction,
            {
                "phase": "train",
                "epoch": epoch,
                "epochs": config.epochs,
                "step": step,
                "steps": steps,
                "loss": float(metrics.get("train_loss", metrics.get("loss", math.nan))),
                "val_accuracy": history[-1].get("val_accuracy") if history else None,
                "resumed_from_epoch": state["resumed_from_epoch"],
                "restarts": state["restarts"],
                "history": list(history),
            },
        )

    trained = loop.train(
        config,
        train_data=train_data,
        val_data=val_data if len(val_data) else None,
        store=store,
        name=model_name,
        device=device,
        progress=on_step,
        should_stop=stop,
        resume=True,
        split=split,
    )
    if trained.stopped or stop():
        raise Stopped
    report(_TRAIN_SHARE, {"phase": "evaluate"})
    metrics: dict[str, Any] = {
        "epochs": trained.epochs_completed,
        "restarts": len(trained.restarts),
    }
    if trained.history:
        last = trained.history[-1]
        metrics.update({k: v for k, v in last.items() if k in ("train_loss", "val_accuracy")})
    if len(test_data):
        scored = evaluate(trained.model, test_data, decode_config=config.decode, device=device)
        metrics["test_accuracy"] = scored.accuracy
        metrics["test_images"] = len(test_data)
    meta = loop.metadata_for(
        config, dataset=checked["dataset"], dataset_version=version, split=split, metrics=metrics
    )
    with session_scope(bind) as session:
        register_model(
            store,
            model_name,
            model=trained.model,
            metadata=meta,
            session=session,
            model_id=model_row,
            dataset_id=dataset_id,
        )
    resumed = state["resumed_from_epoch"]
    return {
        "model_id": model_row,
        "model_name": model_name,
        "dataset_id": dataset_id,
        "dataset_version": version,
        "metrics": metrics,
        "history": [dict(h) for h in trained.history],
        "restarts": [dict(r) for r in trained.restarts],
        "resumed_from_epoch": resumed if resumed is not None else trained.epochs_completed,
    }


def _model_row(
    session: Session, job: ClaimedJob, config: Any, dataset_id: int, version: int
) -> int:
    """The job's `models` row: the one recorded by an earlier attempt, or a new one."""
    recorded = job.result.get("model_id")
    if recorded is not None and session.get(Model, recorded) is not None:
        return int(recorded)
    row = Model(
        architecture=config.architecture,
        in_channels=config.in_channels,
        config=config.model_dump(mode="json"),
        dataset_id=dataset_id,
        dataset_version=version,
        status=ModelStatus.training,
    )
    session.add(row)
    session.flush()
    recorded_ok = jobs.record_result(
        session,
        job.id,
        job.worker_id,
        {"model_id": int(row.id), "model_name": model_store_name(row.id)},
    )
    if not recorded_ok:
        raise Stopped  # the transaction rolls back: no orphan row
    return int(row.id)
