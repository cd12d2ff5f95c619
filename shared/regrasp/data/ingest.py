"""Dataset import: one pass over the files (check, hash, store), then version 0 in one go.

An import reads each file of a dataset exactly once, streaming, in bounded memory:

1. stage (`stage_import`): worker threads take the images in order, a bounded window at
   a time. For each image they read its files, check them from their structure (PNG
   chunks and CRCs, TIFF header and strip extents: `regrasp.data.formats.headers`; a full
   decode, in a process pool, only where a header cannot decide), parse its grasps, and
   store each file under `keys.image_file_key` with its SHA-256 (skipping a file already
   stored with the same checksum, so a re-run uploads only what is missing). Files are
   written without a per-file fsync; the store is synced every `SYNC_EVERY_BYTES` and at
   the end. The rows of version 0 (image records, grasps) go to a temporary spill file,
   never all in memory. The first bad file, in image order, stops the import with a
   `FormatError` naming it.
2. write (`write_version0`): the dataset, its objects, images (keys, sizes, checksum of
   the RGB file, split) and every grasp as version 0, read back from the spill file in
   batches of `WRITE_BATCH_IMAGES` images, in ONE database transaction.

Failure policy: nothing reaches the database before every file has been checked and
stored. When a bad file stops the import, the files this run stored are deleted again
(files an earlier run stored stay), so a bad dataset leaves nothing behind. A storage
failure, a crash or an interruption leaves the stored files where they are: nothing
refers to them, and the next attempt under the same dataset name checks and reuses them
instead of uploading them again; `discard_orphan_objects` (or the garbage collector,
`regrasp.data.gc`) removes them when the import is abandoned.

The import *job* (`create_import` / `run_import` / `get_import`) wraps this for a service:
the request and its progress (images done, for a rate and an ETA) live in the `imports`
table, so any orchestrator replica can report it, and a heartbeat tells a running import
from one whose process died.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.data.formats.cornell import CornellDataset, CornellImage, pcd_depth_tiff, scan_cornell
from regrasp.data.formats.headers import ImageKind, check_image, decode_size
from regrasp.data.formats.jacquard import JacquardDataset, JacquardImage, scan_jacquard
from regrasp.data.formats.sources import MAX_FILE_BYTES, ScannedDataset, Source, check_member_name
from regrasp.data.versions import ImageRecords, create_dataset, import_version0_batches
from regrasp.grasp.imaging import MAX_SIDE
from regrasp.grasp.rectangles import X, Y, parse_cornell, parse_jacquard
from regrasp.platform.clock import as_utc, utcnow
from regrasp.platform.errors import (
    Conflict,
    FormatError,
    InvalidInput,
    NotFound,
    RegraspError,
    StorageError,
)
from regrasp.platform.store import keys
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Dataset, DatasetImport, ImportState
from regrasp.platform.store.objects.base import ObjectStore

__all__ = [
    "ACTIVE_STATES",
    "RUNNING_STATES",
    "ImportInterrupted",
    "ImportResult",
    "SplitSpec",
    "StagedImport",
    "StoreSource",
    "assign_splits",
    "check_import_path",
    "create_import",
    "discard_orphan_objects",
    "fail_stale_imports",
    "get_import",
    "import_jacquard",
    "import_dataset",
    "open_dataset",
    "run_import",
    "stage_import",
    "write_version0",
]

log = logging.getLogger(__name__)

Phase = Literal["generating", "uploading", "writing"]
#: `progress(phase, done, total)`: called from the importing thread after each image.
Progress = Callable[[Phase, int, int], None]

#: States of an import that is still running (or waiting to). `validating` is no longer
#: entered (files are checked as they are stored) but rows written before may hold it.
ACTIVE_STATES = (
    ImportState.queued,
    ImportState.generating,
    ImportState.validating,
    ImportState.uploading,
    ImportState.writing,
)
#: States in which a process is running the import and keeps its heartbeat fresh. A queued
#: import waits in the table for any orchestrator's runner (`regrasp.workflows.imports`):
#: it has no process to lose, so it is never stale.
RUNNING_STATES = tuple(s for s in ACTIVE_STATES if s != ImportState.queued)
#: How often a running import proves it is alive, and after how long silence it is dead.
HEARTBEAT_EVERY = timedelta(seconds=10)
STALE_AFTER = timedelta(seconds=120)
#: Least time between two progress writes to the database.
_PROGRESS_EVERY_S = 0.5
#: Bytes stored between two syncs of the store, each run in the background while the
#: workers go on: bounds the dirty data a crash can lose and keeps the final sync (the
#: only one anything waits for) short, at one flush per 128 MiB instead of one per file.
SYNC_EVERY_BYTES = 128 << 20
#: Images per batch of version-0 rows written from the spill file (~130 grasps each for
#: Jacquard): small enough that a batch never dominates the import's memory.
WRITE_BATCH_IMAGES = 256

#: Object-store file kind → Jacquard file kind (`regrasp.data.formats.jacquard.SUFFIXES`).
JACQUARD_KINDS: Mapping[keys.ImageFileKind, str] = {
    "rgb": "rgb",
    "depth": "perfect_depth",
    "stereo_depth": "stereo_depth",
    "mask": "mask",
    "grasps": "grasps",
}
#: Order of the file kinds of an image in the spill file and the upload bookkeeping.
_KINDS: tuple[keys.ImageFileKind, ...] = ("rgb", "depth", "stereo_depth", "mask", "grasps")

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


@dataclass
class StagedImport:
    """A dataset whose every file is checked and stored, and whose version-0 rows wait in
    a temporary spill file for `write_version0`. Close it (or use `with`) to drop the file.

    `files`: files of the dataset; `uploaded` of them stored by this run, `skipped` found
    already stored with the same SHA-256.
    """

    dataset_name: str
    images: int
    objects: int
    grasps: int
    files: int
    uploaded: int
    skipped: int
    _records: IO[bytes] = field(repr=False)
    _grasps: IO[bytes] = field(repr=False)

    def batches(
        self, size: int = WRITE_BATCH_IMAGES
    ) -> Iterator[tuple[ImageRecords, np.ndarray, np.ndarray]]:
        """The rows of version 0, `size` images at a time: (records, grasp → image index
        within the batch, (N, 5) grasps), in the dataset's order."""
        self._records.seek(0)
        self._grasps.seek(0)
        while True:
            lines = [line for _, line in zip(range(size), self._records, strict=False)]
            if not lines:
                return
            rows = [json.loads(line) for line in lines]
            counts = np.asarray([r[7] for r in rows], dtype=np.int64)
            raw = self._grasps.read(int(counts.sum()) * 5 * 8)
            grasps = np.frombuffer(raw, dtype="<f8").reshape(-1, 5)

            def key_of(kind: keys.ImageFileKind, rows: list[Any] = rows) -> list[str | None]:
                bit = 1 << _KINDS.index(kind)
                return [
                    keys.image_file_key(self.dataset_name, r[1], r[0], kind) if r[5] & bit else None
                    for r in rows
                ]

            records = ImageRecords(
                names=[r[0] for r in rows],
                object_names=[r[1] for r in rows],
                widths=[r[2] for r in rows],
                heights=[r[3] for r in rows],
                splits=[r[4] for r in rows],
                rgb_keys=key_of("rgb"),
                depth_keys=key_of("depth"),
                stereo_keys=key_of("stereo_depth"),
                mask_keys=key_of("mask"),
                grasps_keys=key_of("grasps"),
                checksums=[r[6] for r in rows],
            )
            yield records, np.repeat(np.arange(len(rows), dtype=np.int64), counts), grasps

    def close(self) -> None:
        self._records.close()
        self._grasps.close()

    def __enter__(self) -> StagedImport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    decode_workers: int | None = None,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImportResult:
    """Check and store every file of `dataset`, then write it as version 0 of dataset `name`.

    Conflict when a dataset of that name exists (checked first, and again by the final
    transaction). See the module docstring for what a failure leaves behind; `stage_import`
    for the options.
    """
    started = time.perf_counter()
    keys.dataset_prefix(name)  # a name that cannot be a key component is refused up front
    with session_scope(bind) as session:
        _check_name_free(session, name)
    with stage_import(
        store,
        dataset,
        name=name,
        final_sync=False,
        split=split,
        workers=workers,
        decode_workers=decode_workers,
        work_dir=work_dir,
        progress=progress,
        should_stop=should_stop,
    ) as staged:
        if progress is not None:
            progress("writing", 0, 1)
        # The store's final sync runs while the rows are written: no row is visible
        # before the commit, and the commit waits for the sync (so for every file).
        with ThreadPoolExecutor(1) as pool, session_scope(bind) as session:
            synced = pool.submit(store.sync)
            dataset_id = write_version0(session, staged, description=description)
            synced.result()
        if progress is not None:
            progress("writing", 1, 1)
    return ImportResult(
        dataset_id=dataset_id,
        images=staged.images,
        objects=staged.objects,
        grasps=staged.grasps,
        uploaded=staged.uploaded,
        skipped=staged.skipped,
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


# --- step 1: check and store every file, once -------------------------------------------


def stage_import(
    store: ObjectStore,
    dataset: ScannedDataset[Any],
    *,
    name: str,
    final_sync: bool = True,
    split: SplitSpec | None = None,
    workers: int = 4,
    decode_workers: int | None = None,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> StagedImport:
    """Read each file of `dataset` once: check it, hash it, store it; spill version 0's rows.

    `workers` threads read, check and store images in the dataset's order (object, then
    index), `2 × workers` images in flight at most, so memory stays bounded whatever the
    dataset's size. A file whose header cannot decide is decoded in a pool of
    `decode_workers` processes (default: `workers`, at most the CPU count), started only
    if such a file turns up. The spill file lives in `work_dir` (default: the system's
    temporary folder). FormatError naming the first bad file, in image order; the files
    this run stored are deleted again before it is raised. Nothing touches the database.
    With `final_sync=False` the files stored since the last periodic sync may not be
    durable yet: the caller syncs the store before any row refers to them.
    """
    if workers < 1:
        raise InvalidInput(f"workers must be >= 1, got {workers}")
    prefix = keys.dataset_prefix(name)
    images = list(dataset.images)
    if isinstance(dataset, JacquardDataset):
        plan_files: Callable[[Any], list[_File]] = _jacquard_files
    elif isinstance(dataset, CornellDataset):
        plan_files = _cornell_files
    else:
        raise InvalidInput(f"cannot import a {type(dataset).__name__}")
    splits = assign_splits(
        [im.object_id for im in images], [im.name for im in images], split or SplitSpec()
    )
    # A first import (nothing under the dataset's prefix yet) needs no per-file lookups.
    stored_before = next(iter(store.list(prefix)), None) is not None
    uploaded_kinds = np.zeros((len(images), len(_KINDS)), dtype=bool)
    decoder = _Decoder(decode_workers or min(workers, os.cpu_count() or 1))

    def one(i: int) -> _Done:
        return _store_image(
            store, name, images[i], plan_files(images[i]), decoder, stored_before, uploaded_kinds[i]
        )

    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    records = tempfile.TemporaryFile(dir=work_dir, prefix="regrasp-import-")
    grasps_file = tempfile.TemporaryFile(dir=work_dir, prefix="regrasp-import-")
    totals = {"grasps": 0, "files": 0, "uploaded": 0, "skipped": 0}
    unsynced = 0
    try:
        with (
            decoder,
            ThreadPoolExecutor(1, thread_name_prefix="import-sync") as sync_pool,
            closing(_in_order(one, len(images), workers=workers, should_stop=should_stop)) as done,
        ):
            syncing: Future[None] = sync_pool.submit(lambda: None)
            for i, stored in enumerate(done):
                records.write(json.dumps(stored.row(images[i], splits[i])).encode() + b"\n")
                grasps_file.write(np.ascontiguousarray(stored.grasps, dtype="<f8").tobytes())
                totals["grasps"] += len(stored.grasps)
                totals["files"] += len(stored.kinds)
                totals["uploaded"] += stored.uploaded
                totals["skipped"] += len(stored.kinds) - stored.uploaded
                unsynced += stored.uploaded_bytes
                if unsynced >= SYNC_EVERY_BYTES and syncing.done():
                    syncing.result()  # a failed sync fails the import
                    syncing = sync_pool.submit(store.sync)
                    unsynced = 0
                if progress is not None:
                    progress("uploading", i + 1, len(images))
            syncing.result()
        if final_sync:
            store.sync()  # every stored file durable before any row can refer to it
    except BaseException as exc:
        records.close()
        grasps_file.close()
        if isinstance(exc, FormatError):
            _delete_uploaded(store, name, images, uploaded_kinds, workers)
        raise
    records.flush()
    grasps_file.flush()
    return StagedImport(
        dataset_name=name,
        images=len(images),
        objects=len({im.object_id for im in images}),
        grasps=totals["grasps"],
        files=totals["files"],
        uploaded=totals["uploaded"],
        skipped=totals["skipped"],
        _records=records,
        _grasps=grasps_file,
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


def discard_orphan_objects(session: Session, store: ObjectStore, name: str) -> int:
    """Delete the stored files of an abandoned import of `name`; Conflict if it was imported."""
    _check_name_free(session, name)
    return store.delete_prefix(keys.dataset_prefix(name))


# --- step 2: write -----------------------------------------------------------------------


def write_version0(
    session: Session,
    staged: StagedImport,
    *,
    description: str = "",
    batch_images: int = WRITE_BATCH_IMAGES,
) -> int:
    """Create the dataset and write the staged rows as its version 0; returns its id.

    The rows go in batches of `batch_images` images, all in the caller's transaction.
    """
    dataset_id = create_dataset(session, name=staged.dataset_name, description=description)
    import_version0_batches(
        session,
        dataset_id,
        staged.batches(batch_images),
        message=f"import of {staged.images} images",
    )
    return dataset_id


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
    """The import's row; a running one whose heartbeat stopped is marked failed first."""
    row = session.get(DatasetImport, import_id)
    if row is None:
        raise NotFound(f"import {import_id} not found")
    if row.state in RUNNING_STATES and as_utc(row.heartbeat_at) < utcnow() - stale_after:
        _mark_interrupted(row)
        session.flush()
    return row


def fail_stale_imports(session: Session, *, stale_after: timedelta = STALE_AFTER) -> int:
    """Mark failed every running import whose process stopped beating; returns how many."""
    rows = session.scalars(
        sa.select(DatasetImport).where(
            DatasetImport.state.in_(RUNNING_STATES),
            DatasetImport.heartbeat_at < utcnow() - stale_after,
        )
    ).all()
    for row in rows:
        _mark_interrupted(row)
    session.flush()
    return len(rows)


# --- object-store source -------------------------------------------------------------------


class StoreSource:
    """A `regrasp.data.formats.sources.Source` over the objects under a store prefix.

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


# --- private: one image, read once ----------------------------------------------------------

_Check = Literal["rgb", "depth", "mask", "jacquard_grasps", "cornell_grasps", "pcd_depth"]


@dataclass(frozen=True)
class _File:
    """One file of an image: where it is stored (`kind`), where it is read, how it is checked."""

    kind: keys.ImageFileKind
    source: Source
    name: str
    check: _Check
    max_side: int = MAX_SIDE

    @property
    def location(self) -> str:
        return self.source.location(self.name)


@dataclass(frozen=True)
class _Done:
    """An image checked and stored: its size, labels, stored kinds and RGB checksum."""

    width: int
    height: int
    grasps: np.ndarray
    kinds: tuple[keys.ImageFileKind, ...]
    rgb_sha256: str
    uploaded: int
    uploaded_bytes: int

    def row(self, image: JacquardImage | CornellImage, split: str) -> list[Any]:
        """The image's line of the spill file (read back by `StagedImport.batches`)."""
        bits = sum(1 << _KINDS.index(k) for k in self.kinds)
        return [
            image.name,
            image.object_id,
            self.width,
            self.height,
            split,
            bits,
            self.rgb_sha256,
            len(self.grasps),
        ]


def _jacquard_files(image: JacquardImage) -> list[_File]:
    checks: dict[keys.ImageFileKind, _Check] = {
        "rgb": "rgb",
        "depth": "depth",
        "stereo_depth": "depth",
        "mask": "mask",
        "grasps": "jacquard_grasps",
    }
    return [
        _File(kind, image.source, image.paths[jk], checks[kind], image.max_side)
        for kind, jk in JACQUARD_KINDS.items()
        if jk in image.paths
    ]


def _cornell_files(image: CornellImage) -> list[_File]:
    files = [_File("rgb", image.source, image.paths["rgb"], "rgb", image.max_side)]
    if "depth" in image.paths:
        files.append(_File("depth", image.source, image.paths["depth"], "depth", image.max_side))
    elif "pcd" in image.paths:
        # Only a point cloud: the depth image it gives is stored, as a float32 TIFF.
        files.append(_File("depth", image.source, image.paths["pcd"], "pcd_depth", image.max_side))
    files.append(_File("grasps", image.source, image.paths["grasps"], "cornell_grasps"))
    return files


def _store_image(
    store: ObjectStore,
    dataset_name: str,
    image: JacquardImage | CornellImage,
    files: list[_File],
    decoder: _Decoder,
    stored_before: bool,
    uploaded_kinds: np.ndarray,
) -> _Done:
    """Read each file of `image` once, check it, then store what is not stored yet.

    Every file is checked before any is stored, so an image is stored whole or not at all.
    `uploaded_kinds` (one flag per `_KINDS`) records each file stored, as it is stored.
    """
    contents: dict[keys.ImageFileKind, bytes] = {}
    width = height = 0
    raw_grasps: np.ndarray | None = None
    grasps_where = ""
    for f in files:
        where = f.location
        data = f.source.read_bytes(f.name)
        check = f.check
        if check == "pcd_depth":
            data = decoder.run(pcd_depth_tiff, data, where)
            check = "depth"
        if check in ("rgb", "depth", "mask"):
            size = _image_size(check, data, where, f.max_side, decoder)  # type: ignore[arg-type]
            if check == "rgb":
                width, height = size
            elif size != (width, height):
                raise FormatError(
                    f"{where}: size {size[0]}×{size[1]} differs from the RGB image's "
                    f"{width}×{height}"
                )
        else:
            text = _text(data, where)
            parse = parse_jacquard if check == "jacquard_grasps" else parse_cornell
            raw_grasps, grasps_where = parse(text, source=where), where
        contents[f.kind] = data
    if raw_grasps is None:
        raise FormatError(f"{image.name}: has no grasps file")
    grasps = _labels(raw_grasps, width, height, grasps_where)
    try:
        file_keys = {
            kind: keys.image_file_key(dataset_name, image.object_id, image.name, kind)
            for kind in contents
        }
    except InvalidInput as exc:
        raise FormatError(f"{files[0].location}: cannot be stored: {exc}") from exc

    # Keys of a re-run are looked up per image: one listing, never the whole dataset's.
    existing = (
        {
            info.key
            for info in store.list(keys.image_prefix(dataset_name, image.object_id, image.name))
        }
        if stored_before
        else set()
    )
    rgb_sha = ""
    uploaded = uploaded_bytes = 0
    for kind, data in contents.items():
        key = file_keys[kind]
        if key in existing:
            sha = hashlib.sha256(data).hexdigest()
            if store.stat(key).sha256 == sha:
                rgb_sha = sha if kind == "rgb" else rgb_sha
                continue
        info = store.put_bytes(key, data, durable=False)  # the store hashes what it writes
        uploaded_kinds[_KINDS.index(kind)] = True
        uploaded += 1
        uploaded_bytes += len(data)
        if info.sha256 is None:
            raise StorageError(f"{key}: the store recorded no checksum")
        rgb_sha = info.sha256 if kind == "rgb" else rgb_sha
    return _Done(width, height, grasps, tuple(contents), rgb_sha, uploaded, uploaded_bytes)


def _image_size(
    kind: ImageKind, data: bytes, where: str, max_side: int, decoder: _Decoder
) -> tuple[int, int]:
    """(width, height) of a valid `kind` image, from its header or else a full decode."""
    try:
        size = check_image(kind, data, max_side=max_side)
        if size is None:
            size = decoder.run(decode_size, kind, data, max_side)
    except FormatError:
        raise
    except InvalidInput as exc:
        raise FormatError(f"{where}: {exc}") from exc
    return size


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where}: not a UTF-8 text file ({exc.reason})") from exc


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


class _Decoder:
    """Full decodes (and point-cloud conversions) in a process pool started on first use.

    Decoding is CPU-bound and holds the GIL for parts of its work; in processes it runs
    on every core. Most datasets never start the pool: their headers decide.
    """

    def __init__(self, processes: int) -> None:
        self._processes = max(1, processes)
        self._pool: Executor | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[..., ItemT], *args: Any) -> ItemT:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(self._processes, mp_context=context)
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _delete_uploaded(
    store: ObjectStore,
    name: str,
    images: Sequence[JacquardImage | CornellImage],
    uploaded_kinds: np.ndarray,
    workers: int,
) -> None:
    """Delete the files this run stored (a bad file stopped it); failures are only logged,
    as the garbage collector removes what is left."""
    rows, cols = np.nonzero(uploaded_kinds)
    doomed = [
        keys.image_file_key(name, images[i].object_id, images[i].name, _KINDS[k])
        for i, k in zip(rows.tolist(), cols.tolist(), strict=True)
    ]
    if not doomed:
        return

    def delete(key: str) -> None:
        try:
            store.delete(key)
        except RegraspError as exc:
            log.warning("import of %r: could not delete %s after a bad file (%s)", name, key, exc)

    with ThreadPoolExecutor(workers, thread_name_prefix="import-undo") as pool:
        list(pool.map(delete, doomed))


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
        "work_dir": work_dir,
        "progress": reporter.progress,
        "should_stop": should_stop,
    }
    if kind == "synthetic":
        # Rendered into a temporary folder, imported, then deleted: the parameters stored
        # on the import row regenerate the same bytes (and the truth manifest) at will.
        from regrasp.data.synthetic.corruption import PAPER_KINDS
        from regrasp.data.synthetic.generate import generate_dataset

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
                corruption_kinds=tuple(source.get("corruption_kinds") or PAPER_KINDS),
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
        self._update(state=ImportState(phase), done=done, total=total, heartbeat_at=utcnow())

    def finish(self, state: ImportState, **values: Any) -> None:
        self._update(state=state, finished_at=utcnow(), heartbeat_at=utcnow(), **values)

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
                    .values(heartbeat_at=utcnow())
                )
        except RegraspError as exc:
            log.warning("import %s: heartbeat not written (%s)", import_id, exc)


def _mark_interrupted(row: DatasetImport) -> None:
    row.state = ImportState.failed
    row.finished_at = utcnow()
    row.error = (
        "interrupted: the orchestrator running this import stopped; submit it again to "
        "resume (files already stored are reused)"
    )


# --- private: helpers ----------------------------------------------------------------------


def _check_name_free(session: Session, name: str) -> None:
    if session.scalar(sa.select(Dataset.id).where(Dataset.name == name)) is not None:
        raise Conflict(f"dataset {name!r} already exists")


def _in_order(
    fn: Callable[[int], ItemT],
    count: int,
    *,
    workers: int,
    should_stop: Callable[[], bool] | None,
) -> Iterator[ItemT]:
    """Yield `fn(0), …, fn(count-1)` in order, computed on `workers` threads, at most
    `2 × workers` in flight (so memory does not grow with `count`).

    The first failure in index order is raised, the work not yet started is cancelled and
    the work running is waited for, so a bad file early in 54k images stops the import at
    once and nothing is still writing when the caller cleans up.
    """
    if workers < 1:
        raise InvalidInput(f"workers must be >= 1, got {workers}")
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
                yield pending.popleft().result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def import_jacquard(
    session: Session,
    store: ObjectStore,
    root: str | Path,
    *,
    name: str,
    description: str = "",
) -> int:
    """Import a Jacquard-layout folder (or zip) as version 0 of a new dataset; returns its id.

    The steps of `import_dataset` (stage every file, write version 0) in the caller's
    session instead of its own, so tests and benches import and set up in one transaction.
    """
    with (
        open_dataset("jacquard", path=root) as dataset,
        stage_import(store, dataset, name=name) as staged,
    ):
        return write_version0(session, staged, description=description)
