"""Export a dataset version in the exact Jacquard layout, with a manifest of what changed.

Every image present at the version gets the files Jacquard has, named as Jacquard names
them (`<object>/<i>_<object>_{RGB.png, perfect_depth.tiff, stereo_depth.tiff, mask.png,
grasps.txt}`): the image files are copied byte for byte from the object store, and the
grasps file is made from the version's labels in the style of the imported file
(`regrasp.data.formats.jacquard.rewrite_grasps_file`): an image whose labels did not change
gets its original grasps file byte for byte (checksums of a release stay valid), a changed
one keeps its untouched lines as written, its line endings (CRLF) and its number style
(`114.0`). Without an imported file the labels are written plainly
(`regrasp.grasp.rectangles.format_jacquard`, the shortest decimal that reads back to the same
float). `manifest.json` beside the object folders records the version chain, each
image's split, and every change since version 0 with its provenance (source, round,
reviewer, note; reason and remover of each removal): what a paper's "Jacquard V2" release
needs to be audited.

Two destinations: a zip streamed in bounded memory (`iter_export_zip`, written to a
non-seekable sink, so an HTTP response can send it as it is made) or the object store
under `keys.export_prefix` (`export_to_store`).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.data.formats.jacquard import SUFFIXES, rewrite_grasps_file
from regrasp.data.versions import NO_ID, diff, labels_at, list_versions, select_images_at
from regrasp.grasp.rectangles import format_jacquard
from regrasp.platform.errors import InvalidInput, NotFound
from regrasp.platform.store import keys
from regrasp.platform.store.db.tables import Dataset, DatasetObject, Image, ImageSpan, User
from regrasp.platform.store.objects.base import CHUNK_SIZE, ObjectStore

__all__ = [
    "MANIFEST_NAME",
    "ExportFile",
    "ExportPlan",
    "ExportSummary",
    "export_to_store",
    "iter_export_zip",
    "plan_export",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "regrasp-export/1"

#: Image column holding the key of each stored file kind, and its Jacquard file kind.
_FILES: tuple[tuple[str, str], ...] = (
    ("rgb_key", "rgb"),
    ("depth_key", "perfect_depth"),
    ("stereo_key", "stereo_depth"),
    ("mask_key", "mask"),
)
#: Already-compressed files are stored in the zip as they are; text is deflated.
_STORED_SUFFIXES = (".png", ".tiff")


@dataclass(frozen=True)
class ExportFile:
    """One file of the export: copied from `key`, or made from `grasps` (K, 5) in the style
    of the imported grasps file at `original_key` (when there is one), or from `data`."""

    path: str  # relative POSIX path in the Jacquard layout
    key: str | None = None
    grasps: np.ndarray | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)
    original_key: str | None = None


@dataclass(frozen=True)
class ExportPlan:
    """What an export of one version writes: its files (manifest last) and the manifest."""

    dataset_id: int
    dataset_name: str
    version: int
    created_at: datetime  # when the version was made; dates the zip members
    files: tuple[ExportFile, ...]
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ExportSummary:
    prefix: str  # object-store prefix the export was written under (ends with '/')
    files: int
    bytes: int
    manifest_key: str


def plan_export(session: Session, dataset_id: int, version: int) -> ExportPlan:
    """Read the version's images, labels and history; NotFound for a missing version."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    labels = labels_at(session, dataset_id, version)  # NotFound for a version not made yet
    rows = session.execute(
        select_images_at(dataset_id, version)
        .add_columns(DatasetObject.name)
        .join(DatasetObject, DatasetObject.id == Image.object_id)
        .order_by(DatasetObject.name, Image.name)
    ).all()
    bounds_of = {}
    if len(labels):
        ids, starts = np.unique(labels.image_ids, return_index=True)
        ends = np.append(starts[1:], len(labels))
        bounds_of = dict(
            zip(ids.tolist(), zip(starts.tolist(), ends.tolist(), strict=True), strict=True)
        )

    files: list[ExportFile] = []
    for image, obj in rows:
        stem = f"{obj}/{image.name}"
        for column, kind in _FILES:
            key = getattr(image, column)
            if key is not None:
                files.append(ExportFile(f"{stem}{SUFFIXES[kind]}", key=key))
        start, end = bounds_of.get(image.id, (0, 0))
        files.append(
            ExportFile(
                f"{stem}{SUFFIXES['grasps']}",
                grasps=labels.grasps[start:end],
                original_key=image.grasps_key,
            )
        )

    versions = [v for v in list_versions(session, dataset_id) if v.number <= version]
    manifest = _manifest(session, dataset, version, rows, versions, len(labels))
    data = json.dumps(manifest, indent=1, sort_keys=False).encode("utf-8")
    files.append(ExportFile(MANIFEST_NAME, data=data))
    return ExportPlan(
        dataset_id=dataset_id,
        dataset_name=dataset.name,
        version=version,
        created_at=versions[-1].created_at,
        files=tuple(files),
        manifest=manifest,
    )


def iter_export_zip(
    store: ObjectStore, plan: ExportPlan, *, root: str | None = None
) -> Iterator[bytes]:
    """The export as a zip archive, in chunks, made as it is consumed (bounded memory).

    Members sit under `root/` (default `<dataset>-v<version>/`) and are dated with the
    version's creation time, and the manifest holds no export time, so exporting the same
    version gives the same bytes every time (and from a restored backup).
    """
    root = f"{plan.dataset_name}-v{plan.version}" if root is None else root
    prefix = f"{root.strip('/')}/" if root.strip("/") else ""
    stamp = _zip_time(plan.created_at)
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for item in plan.files:
            info = zipfile.ZipInfo(prefix + item.path, date_time=stamp)
            info.compress_type = (
                zipfile.ZIP_STORED if item.path.endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            )
            info.external_attr = 0o644 << 16
            with archive.open(info, "w") as member:
                for chunk in _content(store, item):
                    member.write(chunk)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()


def export_to_store(
    store: ObjectStore, plan: ExportPlan, *, subfolder: str | None = None, workers: int = 4
) -> ExportSummary:
    """Write the export under `keys.export_prefix` (and `subfolder/` when given).

    Image files are streamed from their keys to the export keys; the manifest is written
    last, so its presence marks a complete export.
    """
    folder = (subfolder or "").strip("/")
    if folder:  # refuse an unusable subfolder (e.g. one climbing out with `..`) before writing
        keys.export_key(plan.dataset_name, plan.version, folder)

    def key_of(path: str) -> str:
        return keys.export_key(
            plan.dataset_name, plan.version, f"{folder}/{path}" if folder else path
        )

    def write(item: ExportFile) -> int:
        dest = key_of(item.path)
        if item.key is not None:
            with store.open(item.key) as stream:
                return store.put_stream(dest, stream).size
        return store.put_bytes(dest, b"".join(_content(store, item))).size

    *files, manifest = plan.files
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="export") as pool:
        sizes = list(pool.map(write, files))
    sizes.append(write(manifest))
    prefix = key_of(MANIFEST_NAME)[: -len(MANIFEST_NAME)]
    return ExportSummary(
        prefix=prefix, files=len(sizes), bytes=sum(sizes), manifest_key=key_of(MANIFEST_NAME)
    )


# --- private -------------------------------------------------------------------------------


def _content(store: ObjectStore, item: ExportFile) -> Iterator[bytes]:
    if item.key is not None:
        with store.open(item.key) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                yield chunk
    elif item.grasps is not None and item.original_key is not None:
        yield rewrite_grasps_file(store.get_bytes(item.original_key), item.grasps)
    elif item.grasps is not None:
        yield format_jacquard(item.grasps).encode("ascii")
    elif item.data is not None:
        yield item.data
    else:
        raise InvalidInput(f"export file {item.path} has no content")


def _manifest(
    session: Session,
    dataset: Dataset,
    version: int,
    rows: list[Any],
    versions: list[Any],
    grasp_count: int,
) -> dict[str, Any]:
    """Version chain, splits, and every change since version 0 with who and why."""
    changes = diff(session, dataset.id, 0, version)
    touched = np.unique(
        np.concatenate(
            [
                changes.added.image_ids,
                changes.removed.image_ids,
                changes.added_image_ids,
                changes.removed_image_ids,
            ]
        )
    ).tolist()
    names = image_names(session, touched)
    user_ids = {
        int(u)
        for u in np.concatenate(
            [changes.added.reviewer_ids, changes.removed.removed_by_ids]
        ).tolist()
        if u != NO_ID
    }
    removals = _image_removals(session, dataset.id, changes.removed_image_ids.tolist(), version)
    user_ids |= {by for _, by in removals.values() if by is not None}
    users = _usernames(session, user_ids)

    def user(uid: int | None) -> str | None:
        return None if uid is None or uid == NO_ID else users.get(uid, f"user {uid}")

    def image_ref(image_id: int) -> dict[str, Any]:
        name, obj = names.get(image_id, (f"image {image_id}", None))
        return {"image": name, "object": obj, "image_id": image_id}

    def nid(value: int) -> int | None:
        return None if value == NO_ID else int(value)

    added = changes.added
    removed = changes.removed
    splits: dict[str, int] = {}
    for image, _obj in rows:
        splits[image.split or "none"] = splits.get(image.split or "none", 0) + 1
    return {
        "format": MANIFEST_FORMAT,
        "layout": "jacquard",
        "dataset": {"id": dataset.id, "name": dataset.name, "description": dataset.description},
        "version": version,
        "counts": {
            "images": len(rows),
            "objects": len({obj for _, obj in rows}),
            "grasps": grasp_count,
            "splits": splits,
        },
        "history": [
            {
                "version": v.number,
                "parent": v.parent_number,
                "round_id": v.round_id,
                "message": v.message,
                "images": v.image_count,
                "grasps": v.grasp_count,
                "created_at": v.created_at.isoformat(),
            }
            for v in versions
        ],
        "splits": {f"{obj}/{image.name}": image.split for image, obj in rows},
        "changes_since_v0": {
            "removed_images": [
                {
                    **image_ref(i),
                    "reason": removals.get(i, (None, None))[0],
                    "removed_by": user(removals.get(i, (None, None))[1]),
                }
                for i in changes.removed_image_ids.tolist()
            ],
            "added_images": [image_ref(i) for i in changes.added_image_ids.tolist()],
            "added_grasps": [
                {
                    **image_ref(int(added.image_ids[k])),
                    "grasp": added.grasps[k].tolist(),
                    "source": added.sources[k],
                    "round_id": nid(added.round_ids[k]),
                    "prediction_id": nid(added.prediction_ids[k]),
                    "reviewer": user(int(added.reviewer_ids[k])),
                    "note": added.notes[k],
                }
                for k in range(len(added))
            ],
            "removed_grasps": [
                {
                    **image_ref(int(removed.image_ids[k])),
                    "grasp": removed.grasps[k].tolist(),
                    "source": removed.sources[k],
                    "reason": removed.removed_reasons[k],
                    "removed_by": user(int(removed.removed_by_ids[k])),
                }
                for k in range(len(removed))
            ],
        },
    }


def image_names(session: Session, image_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Image id → (image name, object name), for people-readable diffs and manifests."""
    if not image_ids:
        return {}
    rows = session.execute(
        sa.select(Image.id, Image.name, DatasetObject.name)
        .join(DatasetObject, DatasetObject.id == Image.object_id)
        .where(Image.id.in_(image_ids))
    ).all()
    return {int(i): (name, obj) for i, name, obj in rows}


def _image_removals(
    session: Session, dataset_id: int, image_ids: list[int], version: int
) -> dict[int, tuple[str | None, int | None]]:
    """Reason and remover of the latest removal (at or before `version`) of each image."""
    if not image_ids:
        return {}
    rows = session.execute(
        sa.select(ImageSpan.image_id, ImageSpan.removed_reason, ImageSpan.removed_by_id)
        .where(
            ImageSpan.dataset_id == dataset_id,
            ImageSpan.image_id.in_(image_ids),
            ImageSpan.removed_in_version <= version,
        )
        .order_by(ImageSpan.removed_in_version)
    ).all()
    return {int(i): (reason, by) for i, reason, by in rows}  # later rows win


def _usernames(session: Session, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = session.execute(sa.select(User.id, User.username).where(User.id.in_(user_ids))).all()
    return {int(i): name for i, name in rows}


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    t = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    return (max(t.year, 1980), t.month, t.day, t.hour, t.minute, t.second)


class _Sink:
    """A write-only, non-seekable file for `zipfile`: it collects what is written until drained.

    Having no `tell`/`seek` makes zipfile stream (data descriptors after each member)
    instead of seeking back to patch headers.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def drain(self) -> Iterator[bytes]:
        if self._chunks:
            chunk, self._chunks = b"".join(self._chunks), []
            yield chunk
