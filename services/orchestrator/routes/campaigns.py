"""Benchmark campaigns (Table I and figures 4–8) and refinement statistics per round.

The work runs in the campaign runner (`regrasp.workflows.campaigns.runner`); these routes record
requests and serve reports computed from the stored results (`regrasp.refine.campaigns.report`).
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response, status

from regrasp.api.campaigns import (
    CampaignCreate,
    CampaignPublic,
    CampaignReportPublic,
    CampaignRunPublic,
)
from regrasp.api.refinement import (
    AuditCreate,
    AuditPublic,
    RefinementPublic,
    RoundRefinementPublic,
    StopAdvicePublic,
)
from regrasp.api.rounds import RoundRetry
from regrasp.platform.errors import InvalidInput, NotFound
from regrasp.platform.store.db.tables import Campaign, Dataset
from regrasp.refine.campaigns import report as reports
from regrasp.refine.campaigns.config import CampaignConfig
from regrasp.refine.refinement_stats import add_audit_items, dataset_refinement, round_refinement
from regrasp.refine.refinement_stats import suggest_stop as _suggest_stop
from regrasp.workflows.campaigns import machine
from services.orchestrator.deps import AdminUser, CurrentUser, SessionDep, StoreDep
from services.orchestrator.routes import ERRORS, commit_and_wake

router = APIRouter(prefix="/campaigns", tags=["campaigns"], responses=ERRORS)
refinement_router = APIRouter(tags=["refinement"], responses=ERRORS)

_CSV = "text/csv; charset=utf-8"


@router.post("", response_model=CampaignPublic, status_code=status.HTTP_201_CREATED)
def create_campaign(
    body: CampaignCreate, admin: AdminUser, session: SessionDep, request: Request
) -> CampaignPublic:
    """Start a campaign: every network trained on every version, scored on one test split."""
    if session.get(Dataset, body.dataset_id) is None:
        raise NotFound(f"dataset {body.dataset_id} does not exist")
    config = CampaignConfig(**body.model_dump(exclude={"dataset_id"}))
    campaign = machine.create_campaign(
        session, dataset_id=body.dataset_id, config=config, created_by=admin.user_id
    )
    return commit_and_wake(session, request.app.state.campaign_runner, _public(campaign))


@router.get("", response_model=list[CampaignPublic])
def list_campaigns(
    _user: CurrentUser,
    session: SessionDep,
    dataset_id: int | None = Query(None, ge=1),
    limit: int = Query(100, ge=1, le=1000),
) -> list[CampaignPublic]:
    """Campaigns, newest first (optionally of one dataset)."""
    stmt = sa.select(Campaign).order_by(Campaign.id.desc()).limit(limit)
    if dataset_id is not None:
        stmt = stmt.where(Campaign.dataset_id == dataset_id)
    return [_public(c) for c in session.scalars(stmt)]


@router.get("/{campaign_id}", response_model=CampaignPublic)
def get_campaign(campaign_id: int, _user: CurrentUser, session: SessionDep) -> CampaignPublic:
    """A campaign's state and runs."""
    return _public(_campaign(session, campaign_id))


@router.post("/{campaign_id}/cancel", response_model=CampaignPublic)
def cancel_campaign(
    campaign_id: int, _admin: AdminUser, session: SessionDep, request: Request
) -> CampaignPublic:
    """Cancel a campaign; its unfinished trainer jobs are cancelled in the background."""
    campaign = machine.cancel_campaign(session, campaign_id)
    return commit_and_wake(session, request.app.state.campaign_runner, _public(campaign))


@router.post("/{campaign_id}/resume", response_model=CampaignPublic)
def resume_campaign(
    campaign_id: int, _admin: AdminUser, session: SessionDep, request: Request
) -> CampaignPublic:
    """Retry the failed runs of a failed campaign."""
    campaign = machine.resume_campaign(session, campaign_id)
    return commit_and_wake(session, request.app.state.campaign_runner, _public(campaign))


@router.get("/{campaign_id}/report", response_model=CampaignReportPublic)
def get_report(campaign_id: int, _user: CurrentUser, session: SessionDep) -> CampaignReportPublic:
    """The accuracy table and the numbers behind every figure."""
    return CampaignReportPublic(**reports.report_dict(reports.build_report(session, campaign_id)))


@router.get(
    "/{campaign_id}/table.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The accuracy table."}},
)
def get_table_csv(campaign_id: int, _user: CurrentUser, session: SessionDep) -> Response:
    """The accuracy table as CSV (one row per network and version, best marked)."""
    text = reports.table_csv(reports.build_report(session, campaign_id))
    return Response(text, media_type=_CSV)


@router.get(
    "/{campaign_id}/figures/{name}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The figure."}},
)
def get_figure_png(
    campaign_id: int, name: str, _user: CurrentUser, session: SessionDep, store: StoreDep
) -> Response:
    """One figure (flagged, review_outcome, accuracy, train_loss, overlays) as PNG."""
    report = reports.build_report(session, campaign_id)
    return Response(
        reports.figure_png(report, name, session=session, store=store), media_type="image/png"
    )


@router.get(
    "/{campaign_id}/figures/{name}.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The figure's numbers."}},
)
def get_figure_csv(
    campaign_id: int, name: str, _user: CurrentUser, session: SessionDep
) -> Response:
    """The numbers behind one figure as CSV."""
    return Response(
        reports.figure_csv(reports.build_report(session, campaign_id), name), media_type=_CSV
    )


@router.get(
    "/{campaign_id}/report.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "Table and figures."}},
)
def get_report_zip(
    campaign_id: int, _user: CurrentUser, session: SessionDep, store: StoreDep
) -> Response:
    """Table, report.json and every figure as PNG and CSV, in one zip."""
    data = reports.report_zip(session, store, campaign_id)
    headers = {"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.zip"'}
    return Response(data, media_type="application/zip", headers=headers)


@refinement_router.get("/datasets/{dataset_id}/refinement", response_model=RefinementPublic)
def get_refinement(
    dataset_id: int,
    _user: CurrentUser,
    session: SessionDep,
    min_drop: float = Query(0.1, ge=0.0, lt=1.0),
) -> RefinementPublic:
    """Per-round label noise, review yield and whether to stop refining."""
    if session.get(Dataset, dataset_id) is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    rounds = dataset_refinement(session, dataset_id)
    advice = _suggest_stop(rounds, min_drop=min_drop)
    return RefinementPublic(
        dataset_id=dataset_id,
        rounds=[RoundRefinementPublic.model_validate(r) for r in rounds],
        stop=StopAdvicePublic.model_validate(advice),
    )


@refinement_router.post("/rounds/{round_id}/audit", response_model=AuditPublic)
def add_audit(
    round_id: int, body: AuditCreate, _admin: AdminUser, session: SessionDep
) -> AuditPublic:
    """Queue an audit of a reviewing round's unflagged images: the `top` the flag ranks
    highest, all of them, and a random sample of the rest."""
    if (body.count is None) == (body.fraction is None):
        raise InvalidInput("give exactly one of count and fraction")
    added = add_audit_items(
        session,
        round_id,
        count=body.count,
        fraction=body.fraction,
        seed=body.seed,
        top=body.top,
    )
    session.flush()
    return AuditPublic(
        round_id=round_id, added=added, audited=round_refinement(session, round_id).audited
    )


def _campaign(session: sa.orm.Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return campaign


def _public(campaign: Campaign) -> CampaignPublic:
    config = machine.parse_config(campaign)
    return CampaignPublic(
        id=campaign.id,
        dataset_id=campaign.dataset_id,
        name=campaign.name,
        state=campaign.state.value,
        config=config.model_dump(mode="json"),
        test_version=config.scored_version,
        test_images=len(campaign.test_image_ids),
        runs=[CampaignRunPublic(**r) for r in campaign.runs],
        error=campaign.error,
        retry=RoundRetry(**campaign.retry) if campaign.retry else None,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        finished_at=campaign.finished_at,
    )
