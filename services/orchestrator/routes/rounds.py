"""Refinement rounds: start (admins), list, inspect, cancel, resume, decide in bulk, apply.

The work itself runs in the round runner (`regrasp.workflows.rounds.runner`); these routes only
record requests on the `rounds` row and wake the runner.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, status

from regrasp.api.rounds import (
    ApplyPreviewPublic,
    BulkDecisions,
    BulkDecisionsResult,
    RoundApply,
    RoundCounts,
    RoundCreate,
    RoundPublic,
    RoundRetry,
    TrainingProgress,
)
from regrasp.learn.queue import eta_seconds
from regrasp.platform.clock import utcnow
from regrasp.platform.errors import Conflict, NotFound
from regrasp.platform.store.db.tables import Job, ReviewItem, Round, RoundState
from regrasp.refine.review.decisions import decide
from regrasp.refine.rounds.applying import preview_apply
from regrasp.refine.rounds.config import RoundConfig, parse_config
from regrasp.refine.rounds.run import TrainingUnit, load_run
from regrasp.workflows.rounds import machine
from services.orchestrator.deps import AdminUser, CurrentUser, SessionDep
from services.orchestrator.routes import ERRORS, commit_and_wake

router = APIRouter(prefix="/rounds", tags=["rounds"], responses=ERRORS)


@router.post("", response_model=RoundPublic, status_code=status.HTTP_201_CREATED)
def create_round(
    body: RoundCreate, _admin: AdminUser, session: SessionDep, request: Request
) -> RoundPublic:
    """Start a round on a dataset version; the runner takes it through its states."""
    config = RoundConfig(**body.model_dump(exclude={"dataset_id", "version"}))
    rnd = machine.create_round(
        session, dataset_id=body.dataset_id, version=body.version, config=config
    )
    return commit_and_wake(session, request.app.state.round_runner, _public(session, rnd))


@router.get("", response_model=list[RoundPublic])
def list_rounds(
    _user: CurrentUser,
    session: SessionDep,
    dataset_id: int | None = Query(None, ge=1),
    limit: int = Query(100, ge=1, le=1000),
) -> list[RoundPublic]:
    """Rounds, newest first (optionally of one dataset)."""
    stmt = sa.select(Round).order_by(Round.id.desc()).limit(limit)
    if dataset_id is not None:
        stmt = stmt.where(Round.dataset_id == dataset_id)
    return [_public(session, r) for r in session.scalars(stmt)]


@router.get("/{round_id}", response_model=RoundPublic)
def get_round(round_id: int, _user: CurrentUser, session: SessionDep) -> RoundPublic:
    """A round's state, timings per state and counts."""
    return _public(session, _round(session, round_id))


@router.post("/{round_id}/cancel", response_model=RoundPublic)
def cancel_round(
    round_id: int, _admin: AdminUser, session: SessionDep, request: Request
) -> RoundPublic:
    """Cancel a round that has not started applying (its training job is cancelled too)."""
    rnd = machine.cancel_round(session, round_id)
    return commit_and_wake(session, request.app.state.round_runner, _public(session, rnd))


@router.post("/{round_id}/resume", response_model=RoundPublic)
def resume_round(
    round_id: int, _admin: AdminUser, session: SessionDep, request: Request
) -> RoundPublic:
    """Retry a failed round from the state it failed in."""
    rnd = machine.resume_round(session, round_id)
    return commit_and_wake(session, request.app.state.round_runner, _public(session, rnd))


@router.post("/{round_id}/apply", response_model=RoundPublic)
def apply_round(
    round_id: int,
    body: RoundApply,
    admin: AdminUser,
    session: SessionDep,
    request: Request,
) -> RoundPublic:
    """Apply the decisions as the next version (force: undecided items = true negatives)."""
    rnd = machine.request_apply(session, round_id, force=body.force, by=admin.user_id)
    return commit_and_wake(session, request.app.state.round_runner, _public(session, rnd))


@router.get("/{round_id}/apply-preview", response_model=ApplyPreviewPublic)
def apply_preview(round_id: int, _admin: AdminUser, session: SessionDep) -> ApplyPreviewPublic:
    """What applying now would change: images removed, grasps added and removed."""
    preview = preview_apply(session, round_id)
    return ApplyPreviewPublic.model_validate(preview)


@router.post("/{round_id}/decisions", response_model=BulkDecisionsResult)
def bulk_decisions(
    round_id: int, body: BulkDecisions, admin: AdminUser, session: SessionDep
) -> BulkDecisionsResult:
    """Record decisions as the calling admin through the review library (all or none)."""
    rnd = _round(session, round_id)
    if rnd.state != RoundState.reviewing:
        raise Conflict(f"round {round_id} is {rnd.state}, not reviewing")
    if admin.user_id is None:
        raise Conflict("bulk decisions need a user (not the service key)")
    wanted = [d.image_id for d in body.decisions]
    items = {
        i.image_id: i
        for i in session.scalars(
            sa.select(ReviewItem).where(
                ReviewItem.round_id == round_id, ReviewItem.image_id.in_(wanted)
            )
        )
    }
    missing = sorted(set(wanted) - set(items))
    if missing:
        raise NotFound(f"round {round_id} has no review item for images {missing[:10]}")
    for entry in body.decisions:
        item = items[entry.image_id]
        decide(
            session,
            item.id,
            admin.user_id,
            item_version=item.version,
            decision=entry.decision,
            accepted_predictions=entry.accepted_predictions,
            removed_grasp_ids=entry.removed_grasp_ids,
            drawn_grasps=entry.drawn_grasps,
            seconds_taken=entry.seconds_taken,
        )
    session.flush()
    return BulkDecisionsResult(
        recorded=len(body.decisions), counts=RoundCounts(**machine.round_counts(session, round_id))
    )


def _round(session: sa.orm.Session, round_id: int) -> Round:
    rnd = session.get(Round, round_id, populate_existing=True)
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    return rnd


def _public(session: sa.orm.Session, rnd: Round) -> RoundPublic:
    run = load_run(rnd)
    units = run.units
    now = utcnow()
    timings = {}
    for state, t in run.timings.items():
        start = _time(t.started)
        end = _time(t.finished)
        seconds = ((end or now) - start).total_seconds() if start else None
        if end is None and state != rnd.state.value:
            seconds = None
        timings[state] = {"started": start, "finished": end, "seconds": seconds}
    return RoundPublic(
        id=rnd.id,
        dataset_id=rnd.dataset_id,
        base_version=rnd.base_version,
        result_version=rnd.result_version,
        state=rnd.state.value,
        config=parse_config(rnd.config).model_dump(mode="json"),
        model_id=rnd.model_id,
        model_ids=[u.model_id for u in units if u.model_id is not None],
        train_job_id=rnd.train_job_id,
        train_job_ids=[u.job_id for u in units if u.job_id is not None],
        error=rnd.error,
        failed_in=run.failed_in if rnd.state == RoundState.failed else None,
        retry=RoundRetry(**rnd.retry) if rnd.retry else None,
        created_at=rnd.created_at,
        updated_at=rnd.updated_at,
        finished_at=rnd.finished_at,
        timings=timings,
        counts=RoundCounts(**machine.round_counts(session, rnd.id)),
        training=_training(session, rnd, units),
    )


def _training(
    session: sa.orm.Session, rnd: Round, units: list[TrainingUnit]
) -> list[TrainingProgress]:
    """The round's training jobs as their workers last reported (epoch n of N, loss, ETA),
    while it is training: read from the jobs table the trainer's workers write (the same
    database), so the view answers even when the trainer API is down."""
    if rnd.state not in (RoundState.created, RoundState.training):
        return []
    ids = [u.job_id for u in units if u.job_id is not None]
    if not ids and rnd.train_job_id is not None:
        ids = [rnd.train_job_id]
    if not ids:
        return []
    jobs = {j.id: j for j in session.scalars(sa.select(Job).where(Job.id.in_(ids)))}
    out = []
    for job_id in ids:
        job = jobs.get(job_id)
        if job is None:
            continue
        m = job.metrics or {}
        loss = m.get("loss")
        out.append(
            TrainingProgress(
                job_id=job.id,
                state=job.state.value,
                phase=m.get("phase"),
                epoch=m.get("epoch"),
                epochs=m.get("epochs") or (job.payload or {}).get("config", {}).get("epochs"),
                loss=loss if isinstance(loss, int | float) and loss == loss else None,
                progress=float(job.progress or 0.0),
                eta_seconds=eta_seconds(job),
            )
        )
    return out


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
