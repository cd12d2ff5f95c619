"""Dataset versions: list, diff, roll back, export (`/datasets/{id}/versions`, ...)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from regrasp.api.common import Public, UtcDatetime, fields_of
from regrasp.data.export import ExportSummary

__all__ = [
    "DiffPublic",
    "ExportPublic",
    "ExportRequest",
    "GraspChangePublic",
    "ImageChangePublic",
    "RollbackRequest",
    "VersionPublic",
]


class VersionPublic(Public):
    number: int
    parent_number: int | None
    round_id: int | None
    message: str
    image_count: int
    grasp_count: int
    created_at: UtcDatetime


class GraspChangePublic(BaseModel):
    grasp_id: int
    image_id: int
    image: str
    grasp: tuple[float, float, float, float, float] = Field(
        description="(x, y, theta, opening, jaw): pixels and degrees."
    )
    source: str
    round_id: int | None
    prediction_id: int | None
    reviewer_id: int | None
    note: str | None
    removed_reason: str | None
    removed_by_id: int | None


class ImageChangePublic(BaseModel):
    image_id: int
    image: str
    object: str


class DiffPublic(BaseModel):
    dataset_id: int
    from_version: int
    to_version: int
    added_grasp_count: int
    removed_grasp_count: int
    added_grasps: list[GraspChangePublic]
    removed_grasps: list[GraspChangePublic]
    added_images: list[ImageChangePublic]
    removed_images: list[ImageChangePublic]
    truncated: bool = Field(description="True when the grasp lists were cut at `limit`.")


class RollbackRequest(BaseModel):
    to: int = Field(ge=0, description="The version whose labels and images to restore.")
    message: str | None = None


class ExportRequest(BaseModel):
    prefix: str | None = Field(
        None, description="Optional sub-folder under exports/<dataset>/v<version>/."
    )


class _ExportedVersion(Public):
    dataset_id: int
    version: int


class ExportPublic(fields_of(ExportSummary, base=_ExportedVersion)):  # type: ignore[misc]
    """Where a version's export was written (`regrasp.data.export.ExportSummary`)."""

    prefix: str = Field(description="Object-store prefix holding the export.")
