"""Running claimed jobs: the heartbeat, the outcome written back, and the worker loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from regrasp.learn import queue as jobs
from regrasp.learn.worker.common import (
    Bind,
    ClaimedJob,
    JobOutcome,
    ProgressFn,
    Stopped,
    json_safe,
)
from regrasp.learn.worker.evaluate import run_evaluate
from regrasp.learn.worker.payloads import bad_kind
from regrasp.learn.worker.train import run_train
from regrasp.platform.errors import InvalidInput, NotFound, RegraspError, StorageError
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import JobKind, JobState, Model, ModelStatus

if TYPE_CHECKING:
    from regrasp.platform.store.objects import ObjectStore

__all__ = ["Worker", "run_claimed", "run_job"]

log = logging.getLogger("regrasp.learn.worker")


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
    except Stopped:
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
        if not jobs.finish(session, job.id, job.worker_id, json_safe(result)):
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
    """Do the work of a claimed job and return its result (raises `Stopped` when told to)."""
    if job.kind == JobKind.train.value:
        return run_train(bind, store, job, progress, should_stop, device)
    if job.kind == JobKind.evaluate.value:
        return run_evaluate(bind, store, job, progress, device)
    return bad_kind(job.kind)


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
                    metrics=json_safe(metrics) if metrics is not None else None,
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
