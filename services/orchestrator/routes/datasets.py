"""Datasets and their imports: list, inspect, import (admins) and follow an import."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Query, Request, status

from regrasp.api.datasets import DatasetPublic, ImportRequest, ImportStatus
from regrasp.data.ingest import create_import, get_import
from regrasp.platform.errors import NotFound
from regrasp.platform.store.db.tables import Dataset, DatasetImport, DatasetVersion
from services.orchestrator.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from services.orchestrator.routes import ERRORS

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=ERRORS)


@router.post("/import", response_model=ImportStatus, status_code=status.HTTP_202_ACCEPTED)
def start_import(
    body: ImportRequest,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    background: BackgroundTasks,
) -> ImportStatus:
    """Queue an import; it runs in the background (follow it at /datasets/imports/{id})."""
    row = create_import(
        session,
        request=body.model_dump(mode="json"),
        created_by_id=admin.user_id,
        import_roots=settings.import_roots,
    )
    # A background task runs after the request's transaction committed, so the runner's
    # poll finds the row (any replica's runner would; this one looks at once).
    background.add_task(request.app.state.import_runner.wake)
    return ImportStatus.model_validate(row)


@router.get("/imports", response_model=list[ImportStatus])
def list_imports(
    _user: CurrentUser, session: SessionDep, limit: int = Query(50, ge=1, le=1000)
) -> list[ImportStatus]:
    """The most recent imports, newest first."""
    rows = session.scalars(
        sa.select(DatasetImport).order_by(DatasetImport.id.desc()).limit(limit)
    ).all()
    return [ImportStatus.model_validate(get_import(session, r.id)) for r in rows]


@router.get("/imports/{import_id}", response_model=ImportStatus)
def import_status(import_id: int, _user: CurrentUser, session: SessionDep) -> ImportStatus:
    """State and progress of an import; `error` names the bad file when it failed."""
    return ImportStatus.model_validate(get_import(session, import_id))


@router.get("", response_model=list[DatasetPublic])
def list_datasets(_user: CurrentUser, session: SessionDep) -> list[DatasetPublic]:
    """Every dataset with the counts of its latest version."""
    return [_public(d, v) for d, v in session.execute(_with_head()).all()]


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: int, _user: CurrentUser, session: SessionDep) -> DatasetPublic:
    """One dataset with the counts of its latest version."""
    row = session.execute(_with_head().where(Dataset.id == dataset_id)).one_or_none()
    if row is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    return _public(*row)


def _with_head() -> sa.Select[tuple[Dataset, DatasetVersion | None]]:
    return (
        sa.select(Dataset, DatasetVersion)
        .outerjoin(
            DatasetVersion,
            sa.and_(
                DatasetVersion.dataset_id == Dataset.id,
                DatasetVersion.number == Dataset.latest_version,
            ),
        )
        .order_by(Dataset.id)
    )


def _public(dataset: Dataset, head: DatasetVersion | None) -> DatasetPublic:
    return DatasetPublic(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        latest_version=dataset.latest_version,
        created_at=dataset.created_at,
        image_count=head.image_count if head else 0,
        grasp_count=head.grasp_count if head else 0,
    )
