"""Dataset versions: list, diff, rollback (admins) and export (zip download or the store)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import sqlalchemy as sa
from fastapi import APIRouter, Query, status
from fastapi.responses import StreamingResponse

from regrasp.api.versions import (
    DiffPublic,
    ExportPublic,
    ExportRequest,
    GraspChangePublic,
    ImageChangePublic,
    RollbackRequest,
    VersionPublic,
)
from regrasp.data import versions as V
from regrasp.data.export import export_to_store, image_names, iter_export_zip, plan_export
from regrasp.platform.errors import NotFound
from regrasp.platform.store.db.tables import Dataset, DatasetVersion
from services.orchestrator.deps import AdminUser, CurrentUser, SessionDep, SettingsDep, StoreDep
from services.orchestrator.routes import ERRORS

router = APIRouter(prefix="/datasets/{dataset_id}", tags=["versions"], responses=ERRORS)


@router.get("/versions", response_model=list[VersionPublic])
def list_versions(dataset_id: int, _user: CurrentUser, session: SessionDep) -> list[VersionPublic]:
    """Every version, oldest first, with image and grasp counts."""
    _dataset(session, dataset_id)
    return [VersionPublic.model_validate(v) for v in V.list_versions(session, dataset_id)]


@router.get("/diff", response_model=DiffPublic)
def diff(
    dataset_id: int,
    _user: CurrentUser,
    session: SessionDep,
    from_version: Annotated[int, Query(alias="from", ge=0)],
    to_version: Annotated[int, Query(alias="to", ge=0)],
    limit: Annotated[int, Query(ge=0, le=1_000_000)] = 10_000,
) -> DiffPublic:
    """Grasps and images added and removed between two versions, with provenance."""
    _dataset(session, dataset_id)
    d = V.diff(session, dataset_id, from_version, to_version)
    ids = np.concatenate(
        [d.added.image_ids, d.removed.image_ids, d.added_image_ids, d.removed_image_ids]
    )
    names = image_names(session, np.unique(ids).tolist())
    return DiffPublic(
        dataset_id=dataset_id,
        from_version=from_version,
        to_version=to_version,
        added_grasp_count=len(d.added),
        removed_grasp_count=len(d.removed),
        added_grasps=_grasp_changes(d.added, names, limit),
        removed_grasps=_grasp_changes(d.removed, names, limit),
        added_images=[_image_change(i, names) for i in d.added_image_ids.tolist()],
        removed_images=[_image_change(i, names) for i in d.removed_image_ids.tolist()],
        truncated=max(len(d.added), len(d.removed)) > limit,
    )


@router.post("/rollback", response_model=VersionPublic, status_code=status.HTTP_201_CREATED)
def rollback(
    dataset_id: int, body: RollbackRequest, admin: AdminUser, session: SessionDep
) -> VersionPublic:
    """Make a new version whose labels and images equal those of version `to`."""
    _dataset(session, dataset_id)
    number = V.rollback_to(
        session, dataset_id, body.to, message=body.message, reviewer_id=admin.user_id
    )
    row = session.scalar(
        sa.select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == number
        )
    )
    return VersionPublic.model_validate(row)


@router.get(
    "/versions/{version}/export.zip",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The zip archive."}},
)
def export_zip(
    dataset_id: int, version: int, _user: CurrentUser, session: SessionDep, store: StoreDep
) -> StreamingResponse:
    """Download the version in the Jacquard layout with its manifest, as a streamed zip."""
    plan = plan_export(session, dataset_id, version)
    filename = f"{plan.dataset_name}-v{version}.zip"
    return StreamingResponse(
        iter_export_zip(store, plan),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/versions/{version}/export", response_model=ExportPublic, status_code=status.HTTP_201_CREATED
)
def export_store(
    dataset_id: int,
    version: int,
    body: ExportRequest,
    _admin: AdminUser,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
) -> ExportPublic:
    """Write the version under exports/<dataset>/v<version>/ in the object store."""
    plan = plan_export(session, dataset_id, version)
    done = export_to_store(store, plan, subfolder=body.prefix, workers=settings.import_workers)
    return ExportPublic(
        dataset_id=dataset_id,
        version=version,
        prefix=done.prefix,
        files=done.files,
        bytes=done.bytes,
        manifest_key=done.manifest_key,
    )


def _dataset(session: SessionDep, dataset_id: int) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    return dataset


def _image_change(image_id: int, names: dict[int, tuple[str, str]]) -> ImageChangePublic:
    name, obj = names[image_id]
    return ImageChangePublic(image_id=image_id, image=name, object=obj)


def _grasp_changes(
    g: V.GraspChanges, names: dict[int, tuple[str, str]], limit: int
) -> list[GraspChangePublic]:
    def nid(value: int) -> int | None:
        return None if value == V.NO_ID else int(value)

    return [
        GraspChangePublic(
            grasp_id=int(g.grasp_ids[k]),
            image_id=int(g.image_ids[k]),
            image=names[int(g.image_ids[k])][0],
            grasp=tuple(g.grasps[k].tolist()),
            source=str(g.sources[k]),
            round_id=nid(g.round_ids[k]),
            prediction_id=nid(g.prediction_ids[k]),
            reviewer_id=nid(g.reviewer_ids[k]),
            note=g.notes[k],
            removed_reason=g.removed_reasons[k],
            removed_by_id=nid(g.removed_by_ids[k]),
        )
        for k in range(min(len(g), limit))
    ]
