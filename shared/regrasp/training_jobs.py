"""Running trainer jobs: a dataset version in, a registered model (or an accuracy) out.

This is the glue between the job queue (`regrasp.jobs`), the database and object store,
and the training pipeline (`regrasp.training`). The trainer's workers and the `regrasp
train` command run jobs through it the same way:

- `validate_payload` checks a job before it is queued (dataset, version, model, config),
  so a bad request is refused at once instead of failing on a GPU later;
- `run_claimed` runs one claimed job to its end: a heartbeat thread streams its progress
  and metrics every few seconds and learns when the job was cancelled (or handed to
  another worker), and the outcome is written back (`finish`, `fail`, `release`);
- `run_job` does the work: for "train", build (or reuse) the version's training cache,
  create the `models` row once (recorded in the job's result, so a retry trains the same
  model), train with a checkpoint per epoch under that model (a retry resumes from the
  latest), evaluate on the test split and register the model; for "evaluate", score a
  registered model on a split of a dataset version;
- `Worker` is the loop a worker process runs: requeue stale jobs, claim one, run it.

The model's object-store name is its `models` row id as a string (`model_store_name`),
so `models/<id>/…` holds its checkpoints, weights and metadata.

torch is imported only inside the functions that train or evaluate, so the trainer's HTTP
service (which validates and queues, never trains) runs without it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp import jobs
from regrasp.errors import InvalidInput, NotFound, RegraspError, StorageError
from regrasp.store import keys
from regrasp.store.db.engine import session_scope
from regrasp.store.db.tables import Dataset, Job, JobKind, JobState, Model, ModelStatus

if TYPE_CHECKING:
    from regrasp.store.objects import ObjectStore

__all__ = [
    "ClaimedJob",
    "JobOutcome",
    "Worker",
    "import_jacquard",
    "model_store_name",
    "resolve_dataset",
    "run_claimed",
    "run_job",
    "validate_payload",
]

log = logging.getLogger(__name__)

Bind = Engine | sessionmaker[Session]
#: progress(fraction 0..1 of the job, metrics) — called often; must be cheap.
ProgressFn = Callable[[float, dict[str, Any]], None]

#: Share of a train job's progress given to training; the rest is cache + final evaluation.
_TRAIN_SHARE = 0.97
EVALUATE_SPLITS = ("train", "val", "test", "all")


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker knows of a job it claimed (a detached snapshot of the row)."""

    id: int
    kind: str
    payload: dict[str, Any]
    worker_id: str
    attempts: int
    result: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, job: Job) -> ClaimedJob:
        return cls(
            id=int(job.id),
            kind=JobKind(job.kind).value,
            payload=dict(job.payload or {}),
            worker_id=str(job.worker_id),
            attempts=int(job.attempts),
            result=dict(job.result or {}),
            metrics=dict(job.metrics or {}),
        )


@dataclass(frozen=True)
class JobOutcome:
    """How `run_claimed` ended: "succeeded", "failed", "cancelled" (or taken over), "released"."""

    job_id: int
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


class _Stopped(Exception):
    """The job must stop: cancelled, taken over by another worker, or worker shutdown."""


# --- validation and lookup ---------------------------------------------------------------


def model_store_name(model_row_id: int) -> str:
    """The object-store name of a model (`models/<name>/…`): its `models` row id."""
    return keys.model_store_name(model_row_id)


def resolve_dataset(session: Session, dataset: str | int) -> Dataset:
    """The dataset named `dataset`, or with that id (an int or a string of digits)."""
    row = None
    if isinstance(dataset, str):
        row = session.scalar(sa.select(Dataset).where(Dataset.name == dataset))
        if row is None and dataset.isdigit():
            row = session.get(Dataset, int(dataset))
    elif isinstance(dataset, int) and not isinstance(dataset, bool):
        row = session.get(Dataset, dataset)
    else:
        raise InvalidInput(f"dataset must be a name or an id, got {dataset!r}")
    if row is None:
        raise NotFound(f"dataset {dataset!r} not found")
    return row


def validate_payload(session: Session, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Check a job before it is queued; returns the payload to store (dataset id, version).

    train: {"dataset", "version"?, "config"?}; the config must be a valid `TrainConfig`
    naming a registered network. evaluate: {"model_id", "dataset", "version"?, "split"?,
    "image_ids"?} (image_ids: score exactly those images);
    the model must be ready. The version defaults to the dataset's latest. Raises
    InvalidInput or NotFound with a message for a person.
    """
    from regrasp.store.db import versions

    if kind not in {k.value for k in JobKind}:
        _bad_kind(kind)
    dataset = resolve_dataset(session, payload.get("dataset"))  # type: ignore[arg-type]
    version = payload.get("version")
    if version is None:
        version = versions.latest_version(session, dataset.id)
    elif not any(v.number == version for v in versions.list_versions(session, dataset.id)):
        raise NotFound(f"dataset {dataset.name!r} has no version {version}")
    out: dict[str, Any] = {"dataset_id": dataset.id, "dataset": dataset.name, "version": version}
    if kind == JobKind.train.value:
        config = _train_config(payload.get("config") or {})
        out["config"] = config.model_dump(mode="json")
    else:
        model_id = payload.get("model_id")
        model = session.get(Model, model_id) if isinstance(model_id, int) else None
        if model is None:
            raise NotFound(f"model {model_id!r} not found")
        if model.status != ModelStatus.ready:
            raise InvalidInput(f"model {model_id} is {model.status.value}, not ready")
        split = payload.get("split", "test")
        if split not in EVALUATE_SPLITS:
            raise InvalidInput(f"split must be one of {', '.join(EVALUATE_SPLITS)}, got {split!r}")
        out.update(model_id=model_id, split=split)
        image_ids = payload.get("image_ids")
        if image_ids is not None:
            if not isinstance(image_ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in image_ids
            ):
                raise InvalidInput("image_ids must be a list of image ids (integers)")
            if not image_ids:
                raise InvalidInput("image_ids is empty: name at least one image")
            out["image_ids"] = sorted(set(image_ids))
    return out


# --- running one job ---------------------------------------------------------------------


def run_claimed(
    bind: Bind,
    store: ObjectStore,
    job: ClaimedJob,
    *,
    heartbeat_interval: float = 5.0,
    device: str | None = None,
    on_progress: ProgressFn | None = None,
    shutdown: threading.Event | None = None,
) -> JobOutcome:
    """Run a job this worker claimed and write its outcome back to the queue.

    A background thread heartbeats every `heartbeat_interval` seconds with the latest
    progress; when the heartbeat is refused (the job was cancelled or taken over) the run
    stops at the next training step. Setting `shutdown` stops the run too, and the job
    goes back to the queue without spending an attempt (another worker resumes it from
    its last checkpoint). Transient storage failures are retried while attempts remain;
    other errors fail the job.
    """
    beat = _Heartbeat(bind, job, interval=heartbeat_interval)
    stop = shutdown or threading.Event()

    def progress(fraction: float, metrics: dict[str, Any]) -> None:
        beat.update(fraction, metrics)
        if on_progress is not None:
            on_progress(fraction, metrics)

    def should_stop() -> bool:
        return beat.lost.is_set() or stop.is_set()

    beat.start()
    try:
        result = run_job(
            bind, store, job, progress=progress, should_stop=should_stop, device=device
        )
    except _Stopped:
        beat.stop()
        return _stopped(bind, store, job, shutdown=stop.is_set())
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        beat.stop()
        transient = isinstance(exc, StorageError | ConnectionError | TimeoutError)
        message = str(exc) if isinstance(exc, RegraspError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, RegraspError):
            log.exception("job %s failed", job.id)
        with session_scope(bind) as session:
            ours = jobs.fail(session, job.id, job.worker_id, message, retry=transient)
            requeued = ours and jobs.get(session, job.id).state == "queued"
            if ours and not requeued:
                _mark_model(session, job, ModelStatus.failed)
        return JobOutcome(job.id, "queued" if requeued else "failed", error=message)
    beat.stop()
    with session_scope(bind) as session:
        if not jobs.finish(session, job.id, job.worker_id, _json_safe(result)):
            return JobOutcome(job.id, "cancelled", result=result)
    return JobOutcome(job.id, "succeeded", result=result)


def run_job(
    bind: Bind,
    store: ObjectStore,
    job: ClaimedJob,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Do the work of a claimed job and return its result (raises `_Stopped` when told to)."""
    if job.kind == JobKind.train.value:
        return _run_train(bind, store, job, progress, should_stop, device)
    if job.kind == JobKind.evaluate.value:
        return _run_evaluate(bind, store, job, progress, device)
    return _bad_kind(job.kind)


# --- the worker loop ---------------------------------------------------------------------


class Worker:
    """A worker's loop: requeue stale jobs, claim the oldest queued one, run it, repeat.

    One worker per GPU (pin it with CUDA_VISIBLE_DEVICES); any number of workers on any
    machines share the queue through the database. `heartbeat_timeout` must be several
    `heartbeat_interval`s: a job whose heartbeat is older is considered lost and goes back
    to the queue, where another worker resumes it from its latest checkpoint.
    """

    def __init__(
        self,
        bind: Bind,
        store: ObjectStore,
        *,
        worker_id: str,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 60.0,
        poll_interval: float = 2.0,
        kinds: Iterable[str] | None = None,
        device: str | None = None,
    ) -> None:
        if not 0 < heartbeat_interval < heartbeat_timeout:
            raise InvalidInput(
                f"heartbeat interval ({heartbeat_interval} s) must be positive and shorter "
                f"than the heartbeat timeout ({heartbeat_timeout} s)"
            )
        if poll_interval <= 0:
            raise InvalidInput(f"poll interval must be positive, got {poll_interval}")
        self.bind = bind
        self.store = store
        self.worker_id = worker_id
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.poll_interval = poll_interval
        self.kinds = list(kinds) if kinds is not None else None
        self.device = device
        self.shutdown = threading.Event()

    def run(self, *, max_jobs: int | None = None) -> int:
        """Process jobs until `shutdown` is set (or `max_jobs` ran); returns how many ran."""
        done = 0
        while not self.shutdown.is_set() and (max_jobs is None or done < max_jobs):
            try:
                outcome = self.run_once()
            except StorageError as exc:  # database unreachable: wait and try again
                log.warning("worker %s: %s", self.worker_id, exc)
                outcome = None
            if outcome is None:
                self.shutdown.wait(self.poll_interval)
            else:
                done += 1
        return done

    def run_once(self) -> JobOutcome | None:
        """Requeue stale jobs, then claim and run one job; None when the queue is empty."""
        with session_scope(self.bind) as session:
            for job_id in jobs.requeue_stale(session, heartbeat_timeout=self.heartbeat_timeout):
                log.warning("job %s lost its worker; requeued or failed", job_id)
                lost = jobs.get(session, job_id)
                if lost.state == JobState.failed:  # out of attempts: its model never will be
                    _mark_model(session, ClaimedJob.from_row(lost), ModelStatus.failed)
        with session_scope(self.bind) as session:
            row = jobs.claim(session, self.worker_id, kinds=self.kinds)
            claimed = ClaimedJob.from_row(row) if row is not None else None
        if claimed is None:
            return None
        log.info("worker %s runs job %s (attempt %s)", self.worker_id, claimed.id, claimed.attempts)
        outcome = run_claimed(
            self.bind,
            self.store,
            claimed,
            heartbeat_interval=self.heartbeat_interval,
            device=self.device,
            shutdown=self.shutdown,
        )
        log.info("job %s: %s", outcome.job_id, outcome.status)
        return outcome


# --- dataset import (Jacquard folder → version 0) ----------------------------------------


def import_jacquard(
    session: Session,
    store: ObjectStore,
    root: str | Path,
    *,
    name: str,
    description: str = "",
) -> int:
    """Import a Jacquard-layout folder (or zip) as version 0 of a new dataset; returns its id.

    The importer of `regrasp.ingest` (check and store every file, write version 0), run
    in the caller's session so tests and benches can import and set up in one transaction.
    """
    from regrasp.ingest import open_dataset, stage_import, write_version0

    with (
        open_dataset("jacquard", path=root) as dataset,
        stage_import(store, dataset, name=name) as staged,
    ):
        return write_version0(session, staged, description=description)


def _run_train(
    bind: Bind,
    store: ObjectStore,
    job: ClaimedJob,
    progress: ProgressFn | None,
    should_stop: Callable[[], bool] | None,
    device: str | None,
) -> dict[str, Any]:
    from regrasp.training import loop
    from regrasp.training.cache import build_cache, db_images
    from regrasp.training.evaluate import evaluate
    from regrasp.training.registry import register_model
    from regrasp.training.splits import exclude_from_training, make_split

    report = progress or (lambda _f, _m: None)
    stop = should_stop or (lambda: False)
    with session_scope(bind) as session:
        checked = validate_payload(session, "train", job.payload)
        config = _train_config(checked["config"])
        dataset_id, version = checked["dataset_id"], checked["version"]
        dataset_key = keys.dataset_store_name(checked["dataset"], dataset_id)
        model_row = _model_row(session, job, config, dataset_id, version)
        model_key = model_store_name(model_row)
        sources = db_images(session, store, dataset_id=dataset_id, version=version)

    if stop():
        raise _Stopped
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
    state: dict[str, Any] = {"resumed_from_epoch": None}

    def on_step(epoch: int, step: int, metrics: dict[str, float]) -> None:
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
                "history": list(history),
            },
        )

    trained = loop.train(
        config,
        train_data=train_data,
        val_data=val_data if len(val_data) else None,
        store=store,
        model_id=model_key,
        device=device,
        progress=on_step,
        should_stop=stop,
        resume=True,
        split=split,
    )
    if trained.stopped or stop():
        raise _Stopped
    report(_TRAIN_SHARE, {"phase": "evaluate"})
    metrics: dict[str, Any] = {"epochs": trained.epochs_completed}
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
            model_key,
            model=trained.model,
            metadata=meta,
            session=session,
            db_model_id=model_row,
            dataset_id=dataset_id,
        )
    resumed = state["resumed_from_epoch"]
    return {
        "model_id": model_row,
        "model_key": model_key,
        "dataset_id": dataset_id,
        "dataset_version": version,
        "metrics": metrics,
        "history": [dict(h) for h in trained.history],
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
        {"model_id": int(row.id), "model_key": model_store_name(row.id)},
    )
    if not recorded_ok:
        raise _Stopped  # the transaction rolls back: no orphan row
    return int(row.id)


# --- private: evaluate -------------------------------------------------------------------


def _run_evaluate(
    bind: Bind,
    store: ObjectStore,
    job: ClaimedJob,
    progress: ProgressFn | None,
    device: str | None,
) -> dict[str, Any]:
    from regrasp.training.cache import build_cache, db_images
    from regrasp.training.config import DecodeConfig, SplitConfig
    from regrasp.training.data import CachedGraspDataset
    from regrasp.training.evaluate import evaluate
    from regrasp.training.registry import load_registered
    from regrasp.training.splits import make_split

    report = progress or (lambda _f, _m: None)
    with session_scope(bind) as session:
        checked = validate_payload(session, "evaluate", job.payload)
        dataset_id, version = checked["dataset_id"], checked["version"]
        sources = db_images(session, store, dataset_id=dataset_id, version=version)
    model, meta = load_registered(store, model_store_name(checked["model_id"]), device=device)
    report(0.05, {"phase": "cache", "images": len(sources)})
    index = build_cache(
        store,
        sources,
        dataset=keys.dataset_store_name(checked["dataset"], dataset_id),
        version=version,
        channels=meta["channels"],
        size=int(meta["input_size"]),
    )
    ids = list(index.image_ids)
    if checked.get("image_ids") is not None:
        wanted = {str(i) for i in checked["image_ids"]}
        absent = sorted(wanted - set(ids), key=int)
        if absent:
            raise InvalidInput(
                f"images {absent[:5]} are not in version {version} of the dataset "
                f"({len(absent)} of {len(wanted)} named)"
            )
        chosen = [i for i in ids if i in wanted]
    elif checked["split"] == "all":
        chosen = ids
    else:
        recipe = SplitConfig(**dict(meta.get("config", {}).get("split", {})))
        objects = {s.image_id: s.object_id for s in sources}
        split = make_split(
            ids,
            [objects[i] for i in ids],
            kind=recipe.kind,
            seed=recipe.seed,
            val_fraction=recipe.val_fraction,
            test_fraction=recipe.test_fraction,
        )
        chosen = list(getattr(split, checked["split"]))
    if not chosen:
        raise InvalidInput(f"the {checked['split']} split of version {version} has no image")
    data = CachedGraspDataset(
        store, index, chosen, augment=None, width_scale=float(meta["width_scale"])
    )
    report(0.5, {"phase": "evaluate", "images": len(data)})
    scored = evaluate(
        model, data, decode_config=DecodeConfig(**meta.get("decode", {})), device=device
    )
    return {
        "model_id": checked["model_id"],
        "dataset_id": dataset_id,
        "dataset_version": version,
        "split": "images" if checked.get("image_ids") is not None else checked["split"],
        "images": len(data),
        "successes": int(scored.success.sum()),
        "accuracy": scored.accuracy,
    }


# --- private: plumbing -------------------------------------------------------------------


class _Heartbeat:
    """A daemon thread writing the latest progress of a job every `interval` seconds."""

    def __init__(self, bind: Bind, job: ClaimedJob, *, interval: float) -> None:
        self.bind = bind
        self.job = job
        self.interval = interval
        self.lost = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._latest: tuple[float | None, dict[str, Any] | None] = (None, None)
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-job-{job.id}", daemon=True
        )

    def update(self, fraction: float, metrics: dict[str, Any]) -> None:
        with self._lock:
            self._latest = (min(1.0, max(0.0, float(fraction))), metrics)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        with self._lock:
            fraction, metrics = self._latest
        try:
            with session_scope(self.bind) as session:
                alive = jobs.heartbeat(
                    session,
                    self.job.id,
                    self.job.worker_id,
                    progress=fraction,
                    metrics=_json_safe(metrics) if metrics is not None else None,
                )
        except (StorageError, NotFound) as exc:  # a missed beat; the next one may succeed
            log.warning("heartbeat of job %s failed: %s", self.job.id, exc)
            return
        if not alive:
            self.lost.set()


def _stopped(bind: Bind, store: ObjectStore, job: ClaimedJob, *, shutdown: bool) -> JobOutcome:
    with session_scope(bind) as session:
        if shutdown and jobs.release(session, job.id, job.worker_id):
            return JobOutcome(job.id, "released")
        row = jobs.get(session, job.id)
        if row.state == "cancelled":
            _mark_model(session, job, ModelStatus.failed)
    return JobOutcome(job.id, "cancelled")


def _mark_model(session: Session, job: ClaimedJob, status: ModelStatus) -> None:
    model_id = (jobs.get(session, job.id).result or {}).get("model_id")
    row = session.get(Model, model_id) if model_id is not None else None
    if row is not None and job.kind == JobKind.train.value and row.status != ModelStatus.ready:
        row.status = status


def _train_config(values: Mapping[str, Any]) -> Any:
    """A validated `TrainConfig` naming a registered network; InvalidInput otherwise."""
    from pydantic import ValidationError

    from regrasp.training.config import TrainConfig

    if not isinstance(values, Mapping):
        raise InvalidInput(f"config must be a mapping of TrainConfig fields, got {values!r}")
    try:
        config = TrainConfig(**dict(values))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidInput(f"invalid training config: {problems}") from None
    known = _network_names()
    if known is not None and config.architecture not in known:
        raise InvalidInput(
            f"unknown architecture {config.architecture!r}; known: {', '.join(known)}"
        )
    return config


def _network_names() -> tuple[str, ...] | None:
    """Registered network names, without importing torch when it is absent (the service)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    from regrasp import nets

    return nets.NAMES


def _json_safe(value: Any) -> Any:
    """Metrics as JSON: NaN/inf become None, numpy scalars plain numbers."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _bad_kind(kind: object) -> Any:
    raise InvalidInput(f"unknown job kind {kind!r}; known: {', '.join(k.value for k in JobKind)}")
