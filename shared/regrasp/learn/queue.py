"""The trainer's job queue in the `jobs` table: submit, claim, heartbeat, finish, requeue.

Any number of workers on any machines share one database and never take the same job:

- PostgreSQL: `claim` selects the oldest queued row `FOR UPDATE SKIP LOCKED`, so two
  workers claiming at once each get a different job (neither blocks on the other's row);
- SQLite: `claim` is one guarded `UPDATE … WHERE id = (oldest queued) AND state = 'queued'
  RETURNING id`; SQLite serialises writers, and the guard makes a second claimer of the
  same row update nothing. Call it as the first statement of its transaction (as
  `session_scope` gives), so the write lock is taken before anything is read.

A claimed job is `running` with the worker's id and a heartbeat time; every later write by
the worker (`heartbeat`, `finish`, `fail`, `record_result`) is guarded by `state='running'
AND worker_id=<me>` and tells the caller whether it still owns the job. A cancelled job,
or one handed to another worker after its heartbeat went stale, answers False: the worker
stops. `requeue_stale` returns a job whose worker stopped heartbeating to the queue, or
fails it with "worker lost after N attempts" once `max_attempts` claims have been used.

Times are timezone-aware UTC taken from the caller's clock (`now` parameters exist for
tests); workers on several machines need synchronised clocks (NTP), and the heartbeat
timeout should be many heartbeat intervals. Every function works in the caller's session
and leaves the commit to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.platform.clock import as_utc, now_or
from regrasp.platform.errors import Conflict, InvalidInput, NotFound
from regrasp.platform.store.db.tables import Job, JobKind, JobState

__all__ = [
    "FINISHED_STATES",
    "cancel",
    "claim",
    "eta_seconds",
    "fail",
    "finish",
    "get",
    "heartbeat",
    "list_jobs",
    "count_jobs",
    "record_result",
    "release",
    "requeue_stale",
    "submit",
]

FINISHED_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})

#: Key of `Job.metrics` where `claim` records the progress the job had when claimed, so
#: that the ETA of a resumed job counts only the work done since (see `eta_seconds`).
PROGRESS_AT_CLAIM = "progress_at_claim"

#: Longest error message stored (a traceback tail is useful, a megabyte is not).
MAX_ERROR_CHARS = 4000


def submit(
    session: Session,
    kind: JobKind | str,
    payload: Mapping[str, Any],
    *,
    max_attempts: int = 3,
) -> Job:
    """Queue a job of `kind` ("train" or "evaluate") with its JSON `payload`; returns the row."""
    kind = _kind(kind)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidInput(f"max_attempts must be a positive integer, got {max_attempts!r}")
    if not isinstance(payload, Mapping):
        raise InvalidInput(f"job payload must be a mapping, got {type(payload).__name__}")
    job = Job(
        kind=kind,
        state=JobState.queued,
        payload=dict(payload),
        max_attempts=max_attempts,
        created_at=now_or(None),
    )
    session.add(job)
    session.flush()
    return job


def claim(
    session: Session,
    worker_id: str,
    *,
    kinds: Iterable[JobKind | str] | None = None,
    job_id: int | None = None,
    now: datetime | None = None,
) -> Job | None:
    """Take the oldest queued job (of `kinds`, or exactly `job_id`) for `worker_id`, or None.

    The job becomes `running` with `attempts` incremented and `worker_id`, `started_at`
    and `heartbeat_at` set; two concurrent claimers never get the same job.
    """
    worker_id = _worker(worker_id)
    now = now_or(now)
    wanted = sa.and_(Job.state == JobState.queued)
    if kinds is not None:
        kind_list = [_kind(k) for k in kinds]
        if not kind_list:
            raise InvalidInput("kinds must name at least one job kind")
        wanted = sa.and_(wanted, Job.kind.in_(kind_list))
    if job_id is not None:
        wanted = sa.and_(wanted, Job.id == job_id)
    oldest = sa.select(Job.id).where(wanted).order_by(Job.created_at, Job.id).limit(1)

    if session.get_bind().dialect.name == "postgresql":
        picked = session.scalar(oldest.with_for_update(skip_locked=True))
        if picked is None:
            return None
        target = Job.id == picked
    else:
        target = sa.and_(Job.id == oldest.scalar_subquery(), Job.state == JobState.queued)
    claimed = session.execute(
        sa.update(Job)
        .where(target)
        .values(
            state=JobState.running,
            worker_id=worker_id,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if claimed is None:
        return None
    job = session.get(Job, claimed, populate_existing=True)
    assert job is not None  # just updated in this transaction
    job.metrics = {**(job.metrics or {}), PROGRESS_AT_CLAIM: float(job.progress)}
    session.flush()
    return job


def heartbeat(
    session: Session,
    job_id: int,
    worker_id: str,
    *,
    progress: float | None = None,
    metrics: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Record that `worker_id` is alive on `job_id`, with its progress (0..1) and metrics.

    `metrics` keys replace the stored ones (others are kept). Returns False when the job
    is no longer this worker's to run (cancelled, finished, or taken over after a stale
    heartbeat): the worker should stop.
    """
    job = _owned(session, job_id, worker_id)
    if job is None:
        return False
    values: dict[str, Any] = {"heartbeat_at": now_or(now)}
    if progress is not None:
        values["progress"] = _fraction(progress)
    if metrics is not None:
        values["metrics"] = {**(job.metrics or {}), **dict(metrics)}
    return _guarded_update(session, job_id, worker_id, values)


def record_result(session: Session, job_id: int, worker_id: str, result: Mapping[str, Any]) -> bool:
    """Merge `result` into the running job's result (e.g. the model id made at first claim).

    What is recorded survives a retry: the next worker reads it from `job.result`.
    Returns False when the job is no longer this worker's.
    """
    job = _owned(session, job_id, worker_id)
    if job is None:
        return False
    merged = {**(job.result or {}), **dict(result)}
    return _guarded_update(session, job_id, worker_id, {"result": merged})


def finish(
    session: Session,
    job_id: int,
    worker_id: str,
    result: Mapping[str, Any],
    *,
    now: datetime | None = None,
) -> bool:
    """Mark the job succeeded with `result` (merged into what was recorded); False if not ours."""
    job = _owned(session, job_id, worker_id)
    if job is None:
        return False
    now = now_or(now)
    return _guarded_update(
        session,
        job_id,
        worker_id,
        {
            "state": JobState.succeeded,
            "progress": 1.0,
            "result": {**(job.result or {}), **dict(result)},
            "error": None,
            "finished_at": now,
            "heartbeat_at": now,
        },
    )


def fail(
    session: Session,
    job_id: int,
    worker_id: str,
    error: str,
    *,
    retry: bool = False,
    now: datetime | None = None,
) -> bool:
    """Record that the job failed with `error`; False if it is not this worker's any more.

    With `retry=True` (a transient failure: storage unreachable) the job goes back to the
    queue while attempts remain, keeping its error for the record; otherwise it fails.
    """
    job = _owned(session, job_id, worker_id)
    if job is None:
        return False
    now = now_or(now)
    message = str(error)[-MAX_ERROR_CHARS:] or "failed"
    if retry and job.attempts < job.max_attempts:
        values: dict[str, Any] = {**_requeued(), "error": message}
    else:
        values = {"state": JobState.failed, "error": message, "finished_at": now}
    return _guarded_update(session, job_id, worker_id, values)


def release(session: Session, job_id: int, worker_id: str) -> bool:
    """Give a running job back to the queue without spending an attempt (worker shutdown)."""
    job = _owned(session, job_id, worker_id)
    if job is None:
        return False
    values = {**_requeued(), "attempts": max(0, job.attempts - 1)}
    return _guarded_update(session, job_id, worker_id, values)


def cancel(session: Session, job_id: int, *, now: datetime | None = None) -> Job:
    """Cancel a queued or running job (its worker stops at its next heartbeat).

    Cancelling a cancelled job is a no-op; a succeeded or failed one is a Conflict.
    """
    job = get(session, job_id)
    if job.state == JobState.cancelled:
        return job
    if job.state in FINISHED_STATES:
        raise Conflict(f"job {job_id} already {job.state.value}; it cannot be cancelled")
    done = session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.state.in_([JobState.queued, JobState.running]))
        .values(state=JobState.cancelled, finished_at=now_or(now))
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(job)
    if not done and job.state != JobState.cancelled:
        raise Conflict(f"job {job_id} already {job.state.value}; it cannot be cancelled")
    return job


def requeue_stale(
    session: Session,
    *,
    heartbeat_timeout: timedelta | float,
    now: datetime | None = None,
) -> list[int]:
    """Recover running jobs whose heartbeat is older than `heartbeat_timeout` (s or timedelta).

    Each goes back to the queue when it has attempts left, else fails with "worker lost
    after N attempts". Returns the ids handled. Safe to run from every worker at once:
    each update is guarded by the heartbeat it read, so a job is handled once.
    """
    timeout = (
        heartbeat_timeout
        if isinstance(heartbeat_timeout, timedelta)
        else timedelta(seconds=float(heartbeat_timeout))
    )
    if timeout <= timedelta(0):
        raise InvalidInput(f"heartbeat_timeout must be positive, got {heartbeat_timeout!r}")
    now = now_or(now)
    cutoff = now - timeout
    stale = sa.select(
        Job.id, Job.worker_id, Job.heartbeat_at, Job.attempts, Job.max_attempts
    ).where(
        Job.state == JobState.running,
        sa.or_(Job.heartbeat_at < cutoff, Job.heartbeat_at.is_(None)),
    )
    if session.get_bind().dialect.name == "postgresql":
        stale = stale.with_for_update(skip_locked=True)
    handled = []
    for job_id, worker, beat, attempts, max_attempts in session.execute(stale).all():
        if attempts < max_attempts:
            values: dict[str, Any] = _requeued()
        else:
            values = {
                "state": JobState.failed,
                "error": f"worker lost after {attempts} attempts (last worker: {worker})",
                "finished_at": now,
            }
        same_beat = Job.heartbeat_at.is_(None) if beat is None else Job.heartbeat_at == beat
        done = session.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.state == JobState.running, same_beat)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done:
            handled.append(int(job_id))
    return handled


def get(session: Session, job_id: int) -> Job:
    """The job `job_id`, freshly read; NotFound if it does not exist."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(
    session: Session,
    *,
    state: JobState | str | None = None,
    kind: JobKind | str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Job]:
    """Jobs, newest first, optionally of one state and kind; paged by `limit`/`offset`."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be in [1, 1000] and offset >= 0")
    stmt = _filtered(sa.select(Job), state, kind)
    return list(session.scalars(stmt.order_by(Job.id.desc()).limit(limit).offset(offset)))


def count_jobs(
    session: Session, *, state: JobState | str | None = None, kind: JobKind | str | None = None
) -> int:
    """How many jobs `list_jobs` pages over with the same filters."""
    return int(session.scalar(_filtered(sa.select(sa.func.count(Job.id)), state, kind)) or 0)


def eta_seconds(job: Job, *, now: datetime | None = None) -> float | None:
    """Seconds until a running job finishes, from its progress rate since it was claimed.

    rate = (progress − progress at claim) / elapsed since `started_at`; None until the job
    has made progress in this attempt, 0 for finished jobs.
    """
    if job.state in FINISHED_STATES:
        return 0.0
    if job.state != JobState.running or job.started_at is None:
        return None
    start = float((job.metrics or {}).get(PROGRESS_AT_CLAIM, 0.0))
    done = float(job.progress) - start
    elapsed = (now_or(now) - as_utc(job.started_at)).total_seconds()
    if done <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed * (1.0 - float(job.progress)) / done)


# --- private -----------------------------------------------------------------------------


def _owned(session: Session, job_id: int, worker_id: str) -> Job | None:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.state != JobState.running or job.worker_id != worker_id:
        return None
    return job


def _guarded_update(session: Session, job_id: int, worker_id: str, values: dict[str, Any]) -> bool:
    done = session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.running)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    job = session.get(Job, job_id)
    if job is not None:
        session.refresh(job)
    return bool(done)


def _requeued() -> dict[str, Any]:
    return {"state": JobState.queued, "worker_id": None, "heartbeat_at": None}


def _filtered(stmt: sa.Select, state: JobState | str | None, kind: JobKind | str | None):  # type: ignore[type-arg]
    if state is not None:
        try:
            stmt = stmt.where(Job.state == JobState(state))
        except ValueError:
            raise InvalidInput(
                f"unknown job state {state!r}; known: {', '.join(s.value for s in JobState)}"
            ) from None
    if kind is not None:
        stmt = stmt.where(Job.kind == _kind(kind))
    return stmt


def _kind(kind: JobKind | str) -> JobKind:
    try:
        return JobKind(kind)
    except ValueError:
        raise InvalidInput(
            f"unknown job kind {kind!r}; known: {', '.join(k.value for k in JobKind)}"
        ) from None


def _worker(worker_id: str) -> str:
    if not isinstance(worker_id, str) or not 1 <= len(worker_id) <= 255:
        raise InvalidInput("worker_id must be a string of 1-255 characters")
    return worker_id


def _fraction(value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(f"progress must be in [0, 1], got {value}")
    return value
