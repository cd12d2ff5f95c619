"""What every part of a trainer job shares: the claimed job, its outcome, the stop signal."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.platform.store.db.tables import Job, JobKind

__all__ = ["Bind", "ClaimedJob", "JobOutcome", "ProgressFn", "Stopped", "json_safe"]

Bind = Engine | sessionmaker[Session]
#: progress(fraction 0..1 of the job, metrics) — called often; must be cheap.
ProgressFn = Callable[[float, dict[str, Any]], None]


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


class Stopped(Exception):
    """The job must stop: cancelled, taken over by another worker, or worker shutdown."""


def json_safe(value: Any) -> Any:
    """Metrics as JSON: NaN/inf become None, numpy scalars plain numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
