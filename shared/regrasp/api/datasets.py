"""Datasets and their imports (`/datasets`, `/datasets/import`), and the image kinds of
`/images/{id}/{kind}`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from regrasp.api.common import Public, UtcDatetime
from regrasp.data.synthetic.corruption import PAPER_KINDS

__all__ = [
    "CornellSource",
    "CorruptionKind",
    "DatasetPublic",
    "ImageKind",
    "ImportRequest",
    "ImportSource",
    "ImportStateName",
    "ImportStatus",
    "JacquardSource",
    "SplitRequest",
    "SyntheticSource",
]

ImageKind = Literal["rgb", "depth", "stereo_depth", "mask"]

#: The corruption kinds of `regrasp.data.synthetic.corruption.KINDS`, spelled out for the
#: schema (a unit test holds them equal).
CorruptionKind = Literal["one_orientation", "part_only", "wrong_action", "stray_rectangles"]


ImportStateName = Literal[
    "queued", "generating", "validating", "uploading", "writing", "succeeded", "failed"
]


_FINAL_STATES = ("succeeded", "failed")


class DatasetPublic(Public):
    id: int
    name: str
    description: str
    latest_version: int | None
    created_at: UtcDatetime
    image_count: int = Field(0, description="Images of the latest version.")
    grasp_count: int = Field(0, description="Grasps of the latest version.")


class JacquardSource(BaseModel):
    """A Jacquard tree: a server `path` (folder or .zip) or an object-store `prefix`."""

    kind: Literal["jacquard"] = "jacquard"
    path: str | None = None
    prefix: str | None = None


class CornellSource(BaseModel):
    """A Cornell folder on the server (object ids from its z.txt when present)."""

    kind: Literal["cornell"] = "cornell"
    path: str


class SyntheticSource(BaseModel):
    """A generated Jacquard-like dataset; the parameters regenerate it (and its truth)."""

    kind: Literal["synthetic"] = "synthetic"
    images: int = Field(gt=0, le=200_000)
    objects: int | None = Field(None, gt=0)
    size: int = Field(1024, ge=64, le=4096, description="Image side in pixels.")
    seed: int = 0
    corrupt_fraction: float = Field(0.0, ge=0.0, le=1.0)
    corruption_kinds: list[CorruptionKind] = Field(
        default_factory=lambda: list(PAPER_KINDS),
        min_length=1,
        description="How the corrupted images are corrupted, spread evenly among them "
        "(regrasp.data.synthetic.corruption): the paper's three kinds by default.",
    )


ImportSource = Annotated[
    JacquardSource | CornellSource | SyntheticSource, Field(discriminator="kind")
]


class SplitRequest(BaseModel):
    kind: Literal["object", "image"] = "object"
    seed: int = 0
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)


class ImportRequest(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
    description: str = ""
    source: ImportSource
    split: SplitRequest = Field(default_factory=SplitRequest)


class ImportStatus(Public):
    id: int
    dataset_name: str
    dataset_id: int | None
    state: ImportStateName
    done: int = Field(description="Images finished in the current phase.")
    total: int = Field(description="Images in the current phase.")
    uploaded: int = Field(description="Files copied to the object store.")
    skipped: int = Field(description="Files already stored with the same SHA-256.")
    error: str | None = Field(description="Why it failed; names the bad file.")
    created_at: UtcDatetime
    heartbeat_at: UtcDatetime
    finished_at: UtcDatetime | None

    @property
    def finished(self) -> bool:
        return self.state in _FINAL_STATES
