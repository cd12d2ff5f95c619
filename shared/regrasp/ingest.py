"""Dataset import: check every file, copy the files to the object store, write version 0.

An import runs in three phases, in this order, so that a bad dataset leaves nothing behind:

1. validate (`plan_import`): read every file of every image (decode the images, parse
   the grasps, compare sizes). The first bad file stops the import with a `FormatError`
   naming it; nothing has been written.
2. upload (`upload_plan`): copy each file to `keys.image_file_key`, with its SHA-256. An
   object already stored under its key with the same SHA-256 is skipped, so a re-run after
   a crash or a storage failure uploads only what is missing (54k images resume, not
   restart).
3. write (`write_version0`): the dataset, its objects, its images (keys, sizes, checksum of
   the RGB file, split) and every grasp as version 0, in ONE database transaction.

Failure policy: a failure in phase 1 writes nothing anywhere. A failure in phase 2 or 3
leaves no database row (phase 3 is one transaction), and the objects phase 2 stored stay
where they are: nothing refers to them, and the next attempt under the same dataset name
checks and reuses them instead of uploading them again. `discard_orphan_objects` removes
them when the import is abandoned.

The import *job* (`create_import` / `run_import` / `get_import`) wraps these phases for a
service: the request and its progress live in the `imports` table, so any orchestrator
replica can report it, and a heartbeat tells a running import from one whose process died.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import cv2
import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.errors import Conflict, FormatError, InvalidInput, NotFound, RegraspError, StorageError
from regrasp.formats.cornell import CornellDataset, CornellImage, scan_cornell
from regrasp.formats.jacquard import JacquardDataset, JacquardImage, scan_jacquard
from regrasp.formats.sources import MAX_FILE_BYTES, ScannedDataset, check_member_name
from regrasp.grasps import X, Y
from regrasp.imaging import image_size
from regrasp.store import keys
from regrasp.store.db.engine import session_scope
from regrasp.store.db.tables import Dataset, DatasetImport, ImportState
from regrasp.store.db.versions import ImageRecords, create_dataset, import_version0
from regrasp.store.objects.base import ObjectStore

__all__ = [
    "ACTIVE_STATES",
    "ImportInterrupted",
    "ImportPlan",
    "ImportResult",
    "PlannedImage",
    "SplitSpec",
    "StoreSource",
    "assign_splits",
    "check_import_path",
    "create_import",
    "discard_orphan_objects",
    "fail_stale_imports",
    "get_import",
    "import_dataset",
    "open_dataset",
    "plan_import",
    "run_import",
    "upload_plan",
    "write_version0",
]

log = logging.getLogger(__name__)

Phase = Literal["generating", "validating", "uploading", "writing"]
#: `progress(phase, done, total)`: called from the importing thread after each image.
Progress = Callable[[Phase, int, int], None]

#: States of an import that is still running (or waiting to).
ACTIVE_STATES = (
    ImportState.queued,
    ImportState.generating,
    ImportState.validating,
    ImportState.uploading,
    ImportState.writing,
)
#: How often a running import proves it is alive, and after how long silence it is dead.
HEARTBEAT_EVERY = timedelta(seconds=10)
STALE_AFTER = timedelta(seconds=120)
#: Least time between two progress writes to the database.
_PROGRESS_EVERY_S = 0.5

#: Object-store file kind → Jacquard file kind (`regrasp.formats.jacquard.SUFFIXES`).
JACQUARD_KINDS: Mapping[keys.ImageFileKind, str] = {
    "rgb": "rgb",
    "depth": "perfect_depth",
    "stereo_depth": "stereo_depth",
    "mask": "mask",
    "grasps": "grasps",
}

ItemT = TypeVar("ItemT")


class ImportInterrupted(StorageError):
    """The import was asked to stop (service shutdown); a new request resumes it."""


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SplitSpec:
    """How images are split into `train` / `test`, recorded on every image.

    kind "object": whole objects go to one side (Jacquard's object-wise split); "image":
    images are drawn independently. `test_fraction` of the groups, drawn by `seed`, are
    test; with a fraction > 0 and at least two groups, each side gets at least one group.
    """

    kind: Literal["object", "image"] = "object"
    seed: int = 0
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in ("object", "image"):
            raise InvalidInput(f"split kind must be 'object' or 'image', got {self.kind!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise InvalidInput(f"test_fraction must lie in [0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class PlannedImage:
    """One validated image: ids, size in pixels, split and the key of each of its files."""

    name: str
    object_name: str
    width: int
    height: int
    split: str
    keys: Mapping[keys.ImageFileKind, str]


@dataclass(frozen=True)
class ImportPlan:
    """A validated dataset, ready to upload and write.

    grasp_image_index: (N,) int64 position in `images` of each grasp; grasps: (N, 5)
    float64 `(x, y, theta, opening, jaw)` in pixels and degrees, in file order.
    `read(i, kind)` returns the bytes to store for file `kind` of image i.
    """

    dataset_name: str
    images: tuple[PlannedImage, ...]
    grasp_image_index: np.ndarray
    grasps: np.ndarray
    read: Callable[[int, keys.ImageFileKind], bytes]
    location: Callable[[int, keys.ImageFileKind], str]

    @property
    def files(self) -> int:
        return sum(len(image.keys) for image in self.images)


@dataclass(frozen=True)
class ImportResult:
    dataset_id: int
    images: int
    objects: int
    grasps: int
    uploaded: int  # files copied to the object store by this run
    skipped: int  # files already stored with the same SHA-256
    seconds: float


# --- the whole import --------------------------------------------------------------------


def import_dataset(
    bind: Engine | sessionmaker[Session],
    store: ObjectStore,
    dataset: ScannedDataset[Any],
    *,
    name: str,
    description: str = "",
    split: SplitSpec | None = None,
    workers: int = 4,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImportResult:
    """Validate `dataset`, upload its files, write it as version 0 of a new dataset `name`.

    Conflict when a dataset of that name exists (checked first, and again by the final
    transaction). See the module docstring for what a failure leaves behind.
    """
    started = time.perf_counter()
    keys.dataset_prefix(name)  # a name that cannot be a key component is refused up front
    with session_scope(bind) as session:
        _check_name_free(session, name)
    plan = plan_import(
        dataset, name=name, split=split, workers=workers, progress=progress, should_stop=should_stop
    )
    checksums, uploaded, skipped = upload_plan(
        store, plan, workers=workers, progress=progress, should_stop=should_stop
    )
    if progress is not None:
        progress("writing", 0, 1)
    with session_scope(bind) as session:
        dataset_id, _ = write_version0(session, plan, checksums, description=description)
    if progress is not None:
        progress("writing", 1, 1)
    return ImportResult(
        dataset_id=dataset_id,
        images=len(plan.images),
        objects=len({image.object_name for image in plan.images}),
        grasps=len(plan.grasps),
        uploaded=uploaded,
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )


def open_dataset(
    kind: Literal["jacquard", "cornell"],
    *,
    path: str | Path | None = None,
    store: ObjectStore | None = None,
    prefix: str | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    roots: Sequence[str | Path] = (),
) -> ScannedDataset[Any]:
    """Scan a source: a server `path` (folder or .zip) or, for Jacquard, a store `prefix`.

    A file of a server path over `max_file_bytes`, or one really outside `roots` (a link out
    of REGRASP_IMPORT_ROOTS), fails validation, naming it.
    """
    if (path is None) == (prefix is None):
        raise InvalidInput("give exactly one of a server path or an object-store prefix")
    if kind == "jacquard":
        if prefix is not None:
            if store is None:
                raise InvalidInput("an object-store prefix needs a store")
            return scan_jacquard(StoreSource(store, prefix))
        return scan_jacquard(Path(path), max_file_bytes=max_file_bytes, roots=roots)  # type: ignore[arg-type]
    if kind == "cornell":
        if prefix is not None:
            raise InvalidInput("Cornell datasets import from a server folder, not a store prefix")
        return scan_cornell(Path(path), max_file_bytes=max_file_bytes, roots=roots)  # type: ignore[arg-type]
    raise InvalidInput(f"unknown dataset kind {kind!r}; known: jacquard, cornell, synthetic")


def check_import_path(path: str | Path, roots: Sequence[str | Path]) -> Path:
    """The resolved `path` if it lies under one of `roots` (any path when `roots` is empty)."""
    resolved = Path(path).expanduser().resolve()
    if not roots:
        return resolved
    for root in roots:
        if resolved.is_relative_to(Path(root).expanduser().resolve()):
            return resolved
    raise InvalidInput(
        f"{path}: imports may only read under {', '.join(str(r) for r in roots)} "
        "(REGRASP_IMPORT_ROOTS)"
    )


# --- phase 1: validate -------------------------------------------------------------------


def plan_import(
    dataset: ScannedDataset[Any],
    *,
    name: str,
    split: SplitSpec | None = None,
    workers: int = 4,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImportPlan:
    """Read and check every file of every image; FormatError naming the first bad file.

    Nothing is written. Images keep the dataset's order (object, then index).
    """
    keys.dataset_prefix(name)
    images = list(dataset.images)
    if isinstance(dataset, JacquardDataset):
        check, read, location = _jacquard_adapter(images)
    elif isinstance(dataset, CornellDataset):
        check, read, location = _cornell_adapter(images)
    else:
        raise InvalidInput(f"cannot import a {type(dataset).__name__}")
    checked = _in_order(
        check,
        len(images),
        workers=workers,
        should_stop=should_stop,
        progress=_phase(progress, "validating"),
    )

    splits = assign_splits(
        [im.object_id for im in images], [im.name for im in images], split or SplitSpec()
    )
    planned = []
    for i, (image, (width, height, _grasps, kinds)) in enumerate(zip(images, checked, strict=True)):
        try:
            file_keys = {
                kind: keys.image_file_key(name, image.object_id, image.name, kind) for kind in kinds
            }
        except InvalidInput as exc:
            raise FormatError(f"{location(i, 'rgb')}: cannot be stored: {exc}") from exc
        planned.append(
            PlannedImage(image.name, image.object_id, width, height, splits[i], file_keys)
        )
    counts = [len(c[2]) for c in checked]
    grasps = np.concatenate([c[2] for c in checked]) if checked else np.empty((0, 5))
    return ImportPlan(
        dataset_name=name,
        images=tuple(planned),
        grasp_image_index=np.repeat(np.arange(len(images), dtype=np.int64), counts),
        grasps=np.asarray(grasps, dtype=np.float64).reshape(-1, 5),
        read=read,
        location=location,
    )


def assign_splits(
    object_names: Sequence[str], image_names: Sequence[str], spec: SplitSpec
) -> list[str]:
    """`train` / `test` for each image (see `SplitSpec`); the same inputs give the same split."""
    groups = np.asarray(object_names if spec.kind == "object" else image_names, dtype=str)
    unique, of_image = np.unique(groups, return_inverse=True)
    n = len(unique)
    n_test = int(round(spec.test_fraction * n))
    if spec.test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    test = np.zeros(n, dtype=bool)
    test[np.random.default_rng(spec.seed).permutation(n)[:n_test]] = True
    return np.where(test[of_image], "test", "train").tolist()


# --- phase 2: upload ---------------------------------------------------------------------


def upload_plan(
    store: ObjectStore,
    plan: ImportPlan,
    *,
    workers: int = 4,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[str], int, int]:
    """Store every file of the plan; returns (RGB SHA-256 per image, uploaded, skipped).

    One listing of the dataset's prefix tells which keys exist; only those are `stat`ed
    to compare checksums, so a first import makes no extra request per file.
    """
    existing = {info.key for info in store.list(keys.dataset_prefix(plan.dataset_name))}

    def upload(i: int) -> tuple[str, int, int]:
        image, rgb_sha, uploaded, skipped = plan.images[i], "", 0, 0
        for kind, key in image.keys.items():
            data = plan.read(i, kind)
            sha = hashlib.sha256(data).hexdigest()
            if kind == "rgb":
                rgb_sha = sha
            if key in existing and store.stat(key).sha256 == sha:
                skipped += 1
                continue
            info = store.put_bytes(key, data)
            if info.sha256 != sha:
                raise StorageError(f"{key}: stored checksum {info.sha256} differs from {sha}")
            uploaded += 1
        return rgb_sha, uploaded, skipped

    done = _in_order(
        upload,
        len(plan.images),
        workers=workers,
        should_stop=should_stop,
        progress=_phase(progress, "uploading"),
    )
    return [d[0] for d in done], sum(d[1] for d in done), sum(d[2] for d in done)


def discard_orphan_objects(session: Session, store: ObjectStore, name: str) -> int:
    """Delete the stored files of an abandoned import of `name`; Conflict if it was imported."""
    _check_name_free(session, name)
    return store.delete_prefix(keys.dataset_prefix(name))


# --- phase 3: write ----------------------------------------------------------------------


def write_version0(
    session: Session, plan: ImportPlan, checksums: Sequence[str], *, description: str = ""
) -> tuple[int, np.ndarray]:
    """Create the dataset and write the plan as its version 0 → (dataset id, image ids)."""
    dataset_id = create_dataset(session, name=plan.dataset_name, description=description)
    images = plan.images

    def key_of(kind: keys.ImageFileKind) -> list[str | None]:
        return [image.keys.get(kind) for image in images]

    records = ImageRecords(
        names=[image.name for image in images],
        object_names=[image.object_name for image in images],
        widths=[image.width for image in images],
        heights=[image.height for image in images],
        splits=[image.split for image in images],
        rgb_keys=key_of("rgb"),
        depth_keys=key_of("depth"),
        stereo_keys=key_of("stereo_depth"),
        mask_keys=key_of("mask"),
        grasps_keys=key_of("grasps"),
        checksums=list(checksums),
    )
    image_ids = import_version0(
        session,
        dataset_id,
        records,
        plan.grasp_image_index,
        plan.grasps,
        message=f"import of {len(images)} images",
    )
    return dataset_id, image_ids


# --- the import job ----------------------------------------------------------------------


def create_import(
    session: Session,
    *,
    request: Mapping[str, Any],
    created_by_id: int | None = None,
    import_roots: Sequence[str | Path] = (),
) -> DatasetImport:
    """Record an import request (state `queued`) after the checks that need no file read.

    request: {"name", "description", "source": {"kind", "path" | "prefix" | synthetic
    params}, "split": {"kind", "seed", "test_fraction"}}. Conflict when the name is taken
    by a dataset or by an import still running.
    """
    name = str(request.get("name", ""))
    keys.dataset_prefix(name)
    _check_name_free(session, name)
    running = session.scalar(
        sa.select(DatasetImport.id).where(
            DatasetImport.dataset_name == name, DatasetImport.state.in_(ACTIVE_STATES)
        )
    )
    if running is not None:
        raise Conflict(f"import {running} of dataset {name!r} is still running")
    source = dict(request.get("source") or {})
    if source.get("path") is not None:
        source["path"] = str(check_import_path(source["path"], import_roots))
    SplitSpec(**dict(request.get("split") or {}))  # refuse a bad split now, not later
    row = DatasetImport(
        dataset_name=name,
        request={**request, "source": source},
        state=ImportState.queued,
        created_by_id=created_by_id,
    )
    session.add(row)
    session.flush()
    return row


def run_import(
    bind: Engine | sessionmaker[Session],
    store: ObjectStore,
    import_id: int,
    *,
    work_dir: str | Path,
    workers: int = 4,
    max_file_bytes: int = MAX_FILE_BYTES,
    import_roots: Sequence[str | Path] = (),
    should_stop: Callable[[], bool] | None = None,
) -> ImportState:
    """Run a recorded import to its end, keeping its row up to date; returns the final state.

    Never raises for a failed import: the error (naming the bad file) is stored on the row.
    `work_dir` holds temporary files (synthetic images before they are imported); a file
    over `max_file_bytes`, or a file really outside `import_roots`, fails the import.
    """
    with session_scope(bind) as session:
        row = session.get(DatasetImport, import_id)
        if row is None:
            raise NotFound(f"import {import_id} not found")
        request = dict(row.request)
    reporter = _Reporter(bind, import_id)
    stop_beat = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(bind, import_id, stop_beat), daemon=True, name="import-beat"
    )
    beat.start()
    try:
        result = _execute(
            request,
            bind,
            store,
            work_dir,
            workers,
            max_file_bytes,
            import_roots,
            reporter,
            should_stop,
        )
    except RegraspError as exc:
        reporter.finish(ImportState.failed, error=str(exc))
        return ImportState.failed
    except Exception as exc:  # noqa: BLE001 - recorded for the client, logged with traceback
        log.exception("import %s failed", import_id)
        reporter.finish(ImportState.failed, error=f"internal error: {type(exc).__name__}: {exc}")
        return ImportState.failed
    finally:
        stop_beat.set()
        beat.join()
    reporter.finish(
        ImportState.succeeded,
        dataset_id=result.dataset_id,
        uploaded=result.uploaded,
        skipped=result.skipped,
        done=result.images,
        total=result.images,
    )
    return ImportState.succeeded


def get_import(
    session: Session, import_id: int, *, stale_after: timedelta = STALE_AFTER
) -> DatasetImport:
    """The import's row; an active one whose heartbeat stopped is marked failed first."""
    row = session.get(DatasetImport, import_id)
    if row is None:
        raise NotFound(f"import {import_id} not found")
    if row.state in ACTIVE_STATES and _as_utc(row.heartbeat_at) < _now() - stale_after:
        _mark_interrupted(row)
        session.flush()
    return row


def fail_stale_imports(session: Session, *, stale_after: timedelta = STALE_AFTER) -> int:
    """Mark failed every active import whose process stopped beating; returns how many."""
    rows = session.scalars(
        sa.select(DatasetImport).where(
            DatasetImport.state.in_(ACTIVE_STATES),
            DatasetImport.heartbeat_at < _now() - stale_after,
        )
    ).all()
    for row in rows:
        _mark_interrupted(row)
    session.flush()
    return len(rows)


# --- object-store source -------------------------------------------------------------------


class StoreSource:
    """A `regrasp.formats.sources.Source` over the objects under a store prefix.

    Lets an export (or any Jacquard tree uploaded to the store) be imported again without a
    local copy. Names are keys relative to the prefix.
    """

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.root = f"{store.url.rstrip('/')}/{self._prefix}"

    def names(self) -> list[str]:
        names = [info.key[len(self._prefix) :] for info in self._store.list(self._prefix)]
        return sorted(check_member_name(n, source=self.root) for n in names)

    def read_bytes(self, name: str) -> bytes:
        return self._store.get_bytes(self._prefix + check_member_name(name, source=self.root))

    def location(self, name: str) -> str:
        return self.root + name

    def close(self) -> None:
        return None


# --- private: source adapters -------------------------------------------------------------

_Check = Callable[[int], tuple[int, int, np.ndarray, tuple[keys.ImageFileKind, ...]]]
_Read = Callable[[int, keys.ImageFileKind], bytes]
_Where = Callable[[int, keys.ImageFileKind], str]


def _jacquard_adapter(images: list[JacquardImage]) -> tuple[_Check, _Read, _Where]:
    def check(i: int) -> tuple[int, int, np.ndarray, tuple[keys.ImageFileKind, ...]]:
        image = images[i]
        image.validate()
        width, height = _size(image.read_bytes("rgb"), image.location("rgb"))
        kinds = tuple(k for k, jk in JACQUARD_KINDS.items() if jk in image.paths)
        grasps = _labels(image.load_grasps(), width, height, image.location("grasps"))
        return width, height, grasps, kinds

    def read(i: int, kind: keys.ImageFileKind) -> bytes:
        return images[i].read_bytes(JACQUARD_KINDS[kind])

    def location(i: int, kind: keys.ImageFileKind) -> str:
        return images[i].location(JACQUARD_KINDS[kind])

    return check, read, location


def _cornell_adapter(images: list[CornellImage]) -> tuple[_Check, _Read, _Where]:
    def check(i: int) -> tuple[int, int, np.ndarray, tuple[keys.ImageFileKind, ...]]:
        image = images[i]
        image.validate()
        width, height = _size(image.source.read_bytes(image.paths["rgb"]), image.location("rgb"))
        has_depth = "depth" in image.paths or "pcd" in image.paths
        kinds: tuple[keys.ImageFileKind, ...] = ("rgb", "grasps", "depth")
        grasps = _labels(image.load_grasps(), width, height, image.location("grasps"))
        return width, height, grasps, kinds if has_depth else kinds[:2]

    def read(i: int, kind: keys.ImageFileKind) -> bytes:
        image = images[i]
        if kind == "depth" and "depth" not in image.paths:
            # Only a point cloud: store the depth image it gives, as a float32 TIFF.
            ok, encoded = cv2.imencode(".tiff", image.load_depth())
            if not ok:
                raise FormatError(f"{image.location('pcd')}: depth could not be encoded")
            return encoded.tobytes()
        return image.source.read_bytes(image.paths[kind])

    def location(i: int, kind: keys.ImageFileKind) -> str:
        image = images[i]
        return image.location(kind if kind in image.paths else "pcd")

    return check, read, location


def _labels(grasps: np.ndarray, width: int, height: int, where: str) -> np.ndarray:
    """The image's labels if they can be version 0 of it; FormatError naming the file if not.

    An image needs at least one label (with none it can be neither scored nor flagged: the
    HIL flag compares the model's top grasp with the labels), and every centre must lie on
    the image (a centre off it means other coordinates or a corrupt file, and its
    rectangle could never match a prediction).
    """
    if len(grasps) == 0:
        raise FormatError(f"{where}: no grasp (an image needs at least one label)")
    x, y = grasps[:, X], grasps[:, Y]
    outside = np.flatnonzero((x < 0) | (x > width) | (y < 0) | (y > height))
    if len(outside):
        k = int(outside[0])
        raise FormatError(
            f"{where}: grasp {k + 1} has its centre ({x[k]:g}, {y[k]:g}) outside the "
            f"{width}×{height} image ({len(outside)} of {len(grasps)} grasps lie outside it)"
        )
    return grasps


def _size(data: bytes, where: str) -> tuple[int, int]:
    try:
        return image_size(data)
    except InvalidInput as exc:
        raise FormatError(f"{where}: {exc}") from exc


# --- private: running an import job --------------------------------------------------------


def _execute(
    request: Mapping[str, Any],
    bind: Engine | sessionmaker[Session],
    store: ObjectStore,
    work_dir: str | Path,
    workers: int,
    max_file_bytes: int,
    import_roots: Sequence[str | Path],
    reporter: _Reporter,
    should_stop: Callable[[], bool] | None,
) -> ImportResult:
    source = dict(request.get("source") or {})
    kind = source.get("kind")
    common = {
        "name": str(request["name"]),
        "description": str(request.get("description") or ""),
        "split": SplitSpec(**dict(request.get("split") or {})),
        "workers": workers,
        "progress": reporter.progress,
        "should_stop": should_stop,
    }
    if kind == "synthetic":
        # Rendered into a temporary folder, imported, then deleted: the parameters stored
        # on the import row regenerate the same bytes (and the truth manifest) at will.
        from regrasp.synthetic.generate import generate_dataset

        Path(work_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work_dir, prefix="synthetic-") as tmp:
            reporter.progress("generating", 0, int(source.get("images") or 0))
            generate_dataset(
                Path(tmp) / "data",
                images=int(source["images"]),
                objects=source.get("objects"),
                size=int(source.get("size") or 1024),
                seed=int(source.get("seed") or 0),
                corrupt_fraction=float(source.get("corrupt_fraction") or 0.0),
                workers=workers,
            )
            with scan_jacquard(Path(tmp) / "data", max_file_bytes=max_file_bytes) as dataset:
                return import_dataset(bind, store, dataset, **common)
    scan_kind = "jacquard" if kind == "jacquard" else "cornell" if kind == "cornell" else kind
    with open_dataset(
        scan_kind,  # type: ignore[arg-type]
        path=source.get("path"),
        prefix=source.get("prefix"),
        store=store,
        max_file_bytes=max_file_bytes,
        roots=import_roots,
    ) as dataset:
        return import_dataset(bind, store, dataset, **common)


class _Reporter:
    """Writes an import's state and progress to its row, at most every half second."""

    def __init__(self, bind: Engine | sessionmaker[Session], import_id: int) -> None:
        self._bind = bind
        self._id = import_id
        self._phase: str | None = None
        self._last = 0.0

    def progress(self, phase: Phase, done: int, total: int) -> None:
        now = time.monotonic()
        if phase == self._phase and done < total and now - self._last < _PROGRESS_EVERY_S:
            return
        self._phase, self._last = phase, now
        self._update(state=ImportState(phase), done=done, total=total, heartbeat_at=_now())

    def finish(self, state: ImportState, **values: Any) -> None:
        self._update(state=state, finished_at=_now(), heartbeat_at=_now(), **values)

    def _update(self, **values: Any) -> None:
        with session_scope(self._bind) as session:
            session.execute(
                sa.update(DatasetImport).where(DatasetImport.id == self._id).values(**values)
            )


def _heartbeat(bind: Engine | sessionmaker[Session], import_id: int, stop: threading.Event) -> None:
    """Refresh `heartbeat_at` until `stop`; failures (a busy SQLite) are logged, not fatal."""
    while not stop.wait(HEARTBEAT_EVERY.total_seconds()):
        try:
            with session_scope(bind) as session:
                session.execute(
                    sa.update(DatasetImport)
                    .where(DatasetImport.id == import_id)
                    .values(heartbeat_at=_now())
                )
        except RegraspError as exc:
            log.warning("import %s: heartbeat not written (%s)", import_id, exc)


def _mark_interrupted(row: DatasetImport) -> None:
    row.state = ImportState.failed
    row.finished_at = _now()
    row.error = (
        "interrupted: the orchestrator running this import stopped; submit it again to "
        "resume (files already stored are reused)"
    )


# --- private: helpers ----------------------------------------------------------------------


def _check_name_free(session: Session, name: str) -> None:
    if session.scalar(sa.select(Dataset.id).where(Dataset.name == name)) is not None:
        raise Conflict(f"dataset {name!r} already exists")


def _phase(progress: Progress | None, phase: Phase) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(phase, done, total)


def _in_order(
    fn: Callable[[int], ItemT],
    count: int,
    *,
    workers: int,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> list[ItemT]:
    """`[fn(0), …, fn(count-1)]` on `workers` threads, a bounded window in flight.

    The first failure in index order is raised and the work not yet started is cancelled,
    so a bad file early in 54k images stops the import at once.
    """
    if workers < 1:
        raise InvalidInput(f"workers must be >= 1, got {workers}")
    results: list[ItemT] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="import") as pool:
        pending: deque[Future[ItemT]] = deque()
        upcoming: Iterator[int] = iter(range(count))
        try:
            while True:
                while len(pending) < 2 * workers:
                    i = next(upcoming, None)
                    if i is None:
                        break
                    pending.append(pool.submit(fn, i))
                if not pending:
                    break
                if should_stop is not None and should_stop():
                    raise ImportInterrupted(
                        "import interrupted (service stopping); submit it again to resume"
                    )
                results.append(pending.popleft().result())
                if progress is not None:
                    progress(len(results), count)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return results


def _now() -> datetime:
    return datetime.now(UTC)


def _as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
