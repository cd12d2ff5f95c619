"""HTTP routes of the trainer: submit, list, read and cancel jobs; health and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

from regrasp.api.jobs import JobCreate, JobList, JobPublic
from regrasp.learn import queue as jobs
from regrasp.learn.worker import validate_payload
from regrasp.platform.errors import RegraspError
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.tables import Job
from services.trainer.deps import AdminDep, CurrentPrincipal, SessionDep

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """The database is reachable and its schema matches the code."""
    try:
        migrations.check_schema(request.app.state.engine)
    except RegraspError as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.post("/jobs", status_code=201)
def submit_job(
    job: Annotated[JobCreate, Body()], session: SessionDep, _admin: AdminDep
) -> JobPublic:
    """Queue a training or evaluation job."""
    values = job.model_dump(exclude={"kind", "max_attempts"})
    payload = validate_payload(session, job.kind, values)
    row = jobs.submit(session, job.kind, payload, max_attempts=job.max_attempts)
    return to_public(row)


@router.get("/jobs")
def list_jobs(
    session: SessionDep,
    _caller: CurrentPrincipal,
    state: str | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    """Jobs, newest first, optionally of one state and kind."""
    rows = jobs.list_jobs(session, state=state, kind=kind, limit=limit, offset=offset)
    total = jobs.count_jobs(session, state=state, kind=kind)
    return JobList(items=[to_public(row) for row in rows], total=total)


@router.get("/jobs/{job_id}")
def get_job(job_id: int, session: SessionDep, _caller: CurrentPrincipal) -> JobPublic:
    """One job: state, progress, metrics, ETA, error and result."""
    return to_public(jobs.get(session, job_id))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: int, session: SessionDep, _admin: AdminDep) -> JobPublic:
    """Cancel a queued or running job; its worker stops at its next heartbeat."""
    row = jobs.cancel(session, job_id)
    return to_public(row)


def to_public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id,
        kind=job.kind.value,
        state=job.state.value,
        payload=dict(job.payload or {}),
        progress=float(job.progress),
        metrics=dict(job.metrics or {}),
        worker_id=job.worker_id,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        error=job.error,
        result=job.result,
        created_at=job.created_at,
        started_at=job.started_at,
        heartbeat_at=job.heartbeat_at,
        finished_at=job.finished_at,
        eta_seconds=jobs.eta_seconds(job),
    )
