"""The versioned label store: immutable dataset versions over append-only grasp history.

A dataset is a linear chain of versions 0, 1, 2, ... Version 0 is the import; every later
version is its parent plus one `ChangeSet` (grasps added with provenance, grasps removed,
images removed) or a `rollback_to` an earlier version. Rows are never deleted or reopened
(see `regrasp.platform.store.db.tables` for the interval design), so "the labels of version v" and
"what changed between v1 and v2" are set-based queries over the same tables.

Every function here works in the caller's session and writes inside a SAVEPOINT, so a
failure anywhere (an id that is not a label of the parent, a stale parent, a crash after
the inserts) leaves nothing behind even if the caller keeps the outer transaction. Bulk
work is one SQL statement per step: rows travel as arrays (`unnest` on PostgreSQL,
`json_each` on SQLite) or, for the version-0 import on PostgreSQL, as one binary COPY
built with numpy. Labels come back as numpy arrays: on PostgreSQL one `bytea` aggregated
server-side and viewed with a structured dtype, without a Python object per row.

Version creation is a compare-and-swap on `datasets.latest_version`: the parent must be
the head, two writers racing for the same number get one success and one `Conflict`, and
the unique `(dataset_id, number)` constraint backs it up.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import ArrayLike
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from regrasp.platform.errors import Conflict, InvalidInput, NotFound
from regrasp.platform.store.db.engine import core_connection
from regrasp.platform.store.db.tables import (
    Dataset,
    DatasetObject,
    DatasetVersion,
    Grasp,
    GraspSource,
    Image,
    ImageSpan,
)

__all__ = [
    "NO_ID",
    "ChangeSet",
    "Diff",
    "GraspChanges",
    "ImageRecords",
    "Labels",
    "create_dataset",
    "create_version",
    "diff",
    "images_at",
    "import_version0",
    "import_version0_batches",
    "labels_at",
    "labels_for_image",
    "latest_version",
    "list_versions",
    "rollback_to",
    "select_images_at",
]

#: Stands for "no id" (SQL NULL) in the int64 provenance arrays.
NO_ID = -1

#: Rows per bulk statement: bounds client memory and parameter size.
CHUNK_ROWS = 262_144


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """The grasps of one version, sorted by (image id, grasp id).

    grasp_ids: (N,) int64; image_ids: (N,) int64; grasps: (N, 5) float64 rows
    `(x, y, theta, opening, jaw)` in pixels and degrees.
    """

    version: int
    grasp_ids: np.ndarray
    image_ids: np.ndarray
    grasps: np.ndarray

    def __len__(self) -> int:
        return len(self.grasp_ids)


@dataclass(frozen=True)
class GraspChanges:
    """Grasp rows with their provenance, all arrays of length K, sorted by grasp id.

    `sources` holds `GraspSource` values as str; id arrays use `NO_ID` for none; `notes`
    (why added), `removed_reasons` (why removed) are object arrays of str or None.
    """

    grasp_ids: np.ndarray
    image_ids: np.ndarray
    grasps: np.ndarray
    sources: np.ndarray
    round_ids: np.ndarray
    prediction_ids: np.ndarray
    reviewer_ids: np.ndarray
    notes: np.ndarray
    removed_reasons: np.ndarray
    removed_by_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.grasp_ids)


@dataclass(frozen=True)
class Diff:
    """What turns version `v_from` into `v_to` (either may be the older one)."""

    v_from: int
    v_to: int
    added: GraspChanges
    removed: GraspChanges
    added_image_ids: np.ndarray
    removed_image_ids: np.ndarray


@dataclass(frozen=True, kw_only=True)
class ImageRecords:
    """Images to import, all sequences of the same length I (one entry per image).

    `names` are unique within the dataset; `object_names` group images into objects.
    Keys are object-store keys built by `regrasp.platform.store.keys`; sizes in pixels.
    """

    names: Sequence[str]
    object_names: Sequence[str]
    widths: ArrayLike
    heights: ArrayLike
    splits: Sequence[str | None] | None = None
    rgb_keys: Sequence[str | None] | None = None
    depth_keys: Sequence[str | None] | None = None
    stereo_keys: Sequence[str | None] | None = None
    mask_keys: Sequence[str | None] | None = None
    grasps_keys: Sequence[str | None] | None = None
    checksums: Sequence[str | None] | None = None

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True, kw_only=True)
class ChangeSet:
    """The edits that turn a parent version into the next one.

    add_image_ids: (M,) ids of images that receive the grasps add_grasps (M, 5);
    add_source: one `GraspSource` for all, or (M,) of them; add_prediction_ids and
    add_reviewer_ids: (M,) int with `NO_ID` for none; add_notes: (M,) str or None.
    remove_grasp_ids: (K,) grasps to remove, with reasons (one str or K) and the reviewer
    ids (K,) who removed them; remove_image_ids: (R,) images to remove (their grasps go
    with them), with reasons and reviewer ids likewise. Arrays are normalised on creation.
    """

    add_image_ids: ArrayLike = ()
    add_grasps: ArrayLike = field(default_factory=lambda: np.empty((0, 5)))
    add_source: GraspSource | str | Sequence[GraspSource | str] = GraspSource.manual
    add_prediction_ids: ArrayLike | None = None
    add_reviewer_ids: ArrayLike | None = None
    add_notes: str | Sequence[str | None] | None = None
    remove_grasp_ids: ArrayLike = ()
    remove_grasp_reasons: str | Sequence[str | None] | None = None
    remove_grasp_reviewer_ids: ArrayLike | None = None
    remove_image_ids: ArrayLike = ()
    remove_image_reasons: str | Sequence[str | None] | None = None
    remove_image_reviewer_ids: ArrayLike | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        add_ids = _ids(self.add_image_ids, "add_image_ids")
        m = len(add_ids)
        grasps = np.asarray(self.add_grasps, dtype=np.float64)
        if grasps.size == 0:
            grasps = grasps.reshape(0, 5)
        if grasps.shape != (m, 5):
            raise InvalidInput(f"add_grasps must have shape ({m}, 5), got {grasps.shape}")
        _check_grasp_values(grasps)
        s(self, "add_image_ids", add_ids)
        s(self, "add_grasps", grasps)
        s(self, "add_source", _sources(self.add_source, m))
        s(self, "add_prediction_ids", _opt_ids(self.add_prediction_ids, m, "add_prediction_ids"))
        s(self, "add_reviewer_ids", _opt_ids(self.add_reviewer_ids, m, "add_reviewer_ids"))
        s(self, "add_notes", _texts(self.add_notes, m, "add_notes"))

        rg = _ids(self.remove_grasp_ids, "remove_grasp_ids", unique=True)
        s(self, "remove_grasp_ids", rg)
        s(self, "remove_grasp_reasons", _texts(self.remove_grasp_reasons, len(rg), "reasons"))
        s(
            self,
            "remove_grasp_reviewer_ids",
            _opt_ids(self.remove_grasp_reviewer_ids, len(rg), "remove_grasp_reviewer_ids"),
        )
        ri = _ids(self.remove_image_ids, "remove_image_ids", unique=True)
        s(self, "remove_image_ids", ri)
        s(self, "remove_image_reasons", _texts(self.remove_image_reasons, len(ri), "reasons"))
        s(
            self,
            "remove_image_reviewer_ids",
            _opt_ids(self.remove_image_reviewer_ids, len(ri), "remove_image_reviewer_ids"),
        )
        both = np.intersect1d(add_ids, ri)
        if len(both):
            raise InvalidInput(f"grasps added to images being removed: {both[:5].tolist()}")

    @property
    def is_empty(self) -> bool:
        return not (
            len(self.add_image_ids) or len(self.remove_grasp_ids) or len(self.remove_image_ids)
        )


# --- datasets and imports ----------------------------------------------------------------


def create_dataset(session: Session, *, name: str, description: str = "") -> int:
    """Create an empty dataset (no version yet) and return its id; Conflict if the name is taken."""
    if not name or not name.strip():
        raise InvalidInput("dataset name must not be empty")
    try:
        with session.begin_nested():
            row = Dataset(name=name, description=description)
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"dataset {name!r} already exists") from exc
    return row.id


def import_version0(
    session: Session,
    dataset_id: int,
    images: ImageRecords,
    grasp_image_index: ArrayLike,
    grasps: ArrayLike,
    *,
    message: str = "import",
) -> np.ndarray:
    """Write version 0: the images, their objects, and every original grasp, in bulk.

    grasp_image_index: (N,) int, the position in `images` of each grasp's image;
    grasps: (N, 5) float64 `(x, y, theta, opening, jaw)`. Returns the image ids (I,) in
    the order of `images`. Conflict if the dataset already has a version.
    """
    n_img = len(images)
    names = np.asarray(images.names, dtype=object)
    if n_img == 0:
        raise InvalidInput("version 0 needs at least one image")
    if len(np.unique(names.astype(str))) != n_img:
        raise InvalidInput("image names must be unique within a dataset")
    cols = _image_columns(images)
    index = np.asarray(grasp_image_index, dtype=np.int64).reshape(-1)
    g = np.asarray(grasps, dtype=np.float64).reshape(-1, 5)
    if len(index) != len(g):
        raise InvalidInput(f"{len(index)} image indices for {len(g)} grasps")
    if len(index) and (index.min() < 0 or index.max() >= n_img):
        raise InvalidInput(f"grasp_image_index must lie in [0, {n_img})")
    _check_grasp_values(g)

    with session.begin_nested():
        _claim_head(session, dataset_id, parent=None, new=0)
        obj_names, obj_of_image = np.unique(
            np.asarray(images.object_names, dtype=str), return_inverse=True
        )
        src = _rows(session, {"name": (sa.Text, obj_names.tolist())})
        session.execute(
            sa.insert(DatasetObject).from_select(
                ["dataset_id", "name"], sa.select(sa.literal(dataset_id), src.c.name)
            )
        )
        obj_ids = _ids_by_name(session, DatasetObject, dataset_id, obj_names)
        cols["object_id"] = (sa.BigInteger, obj_ids[obj_of_image].tolist())
        src = _rows(session, cols)
        session.execute(
            sa.insert(Image).from_select(
                ["dataset_id", *cols], sa.select(sa.literal(dataset_id), *src.c)
            )
        )
        image_ids = _ids_by_name(session, Image, dataset_id, names.astype(str))
        session.execute(
            sa.insert(ImageSpan).from_select(
                ["dataset_id", "image_id", "added_in_version"],
                sa.select(Image.dataset_id, Image.id, sa.literal(0)).where(
                    Image.dataset_id == dataset_id
                ),
            )
        )
        _insert_original_grasps(session, dataset_id, image_ids[index], g)
        session.add(
            DatasetVersion(
                dataset_id=dataset_id,
                number=0,
                parent_number=None,
                message=message,
                image_count=n_img,
                grasp_count=len(g),
            )
        )
        session.flush()
    return image_ids


def import_version0_batches(
    session: Session,
    dataset_id: int,
    batches: Iterable[tuple[ImageRecords, ArrayLike, ArrayLike]],
    *,
    message: str = "import",
) -> tuple[int, int]:
    """Write version 0 from batches of images, in one savepoint; returns (images, grasps).

    The same rows as `import_version0`, for datasets too large to hold at once (54k
    Jacquard images carry millions of grasps): each batch is `(images, grasp_image_index,
    grasps)` with the index local to the batch, and is inserted as it arrives, so only one
    batch is in memory. Either every batch lands or none does (the caller commits).
    """
    n_img = n_grasps = 0
    with session.begin_nested():
        _claim_head(session, dataset_id, parent=None, new=0)
        for images, grasp_image_index, grasps in batches:
            index = np.asarray(grasp_image_index, dtype=np.int64).reshape(-1)
            g = np.asarray(grasps, dtype=np.float64).reshape(-1, 5)
            _insert_image_batch(session, dataset_id, images, index, g)
            n_img, n_grasps = n_img + len(images), n_grasps + len(g)
        if n_img == 0:
            raise InvalidInput("version 0 needs at least one image")
        session.add(
            DatasetVersion(
                dataset_id=dataset_id,
                number=0,
                parent_number=None,
                message=message,
                image_count=n_img,
                grasp_count=n_grasps,
            )
        )
        session.flush()
    return n_img, n_grasps


def _insert_image_batch(
    session: Session, dataset_id: int, images: ImageRecords, index: np.ndarray, g: np.ndarray
) -> np.ndarray:
    """Insert one batch of version-0 images (objects created as needed), their spans and
    grasps; returns the batch's image ids. Names already used by an earlier batch are
    refused (InvalidInput)."""
    n_img = len(images)
    names = np.asarray([str(x) for x in images.names], dtype=str)
    if n_img == 0:
        return np.empty(0, dtype=np.int64)
    if len(np.unique(names)) != n_img:
        raise InvalidInput("image names must be unique within a dataset")
    if len(index) != len(g):
        raise InvalidInput(f"{len(index)} image indices for {len(g)} grasps")
    if len(index) and (index.min() < 0 or index.max() >= n_img):
        raise InvalidInput(f"grasp_image_index must lie in [0, {n_img})")
    _check_grasp_values(g)
    cols = _image_columns(images)
    obj_names, obj_of_image = np.unique(
        np.asarray(images.object_names, dtype=str), return_inverse=True
    )
    src = _rows(session, {"name": (sa.Text, obj_names.tolist())})
    known = sa.select(DatasetObject.name).where(DatasetObject.dataset_id == dataset_id)
    session.execute(
        sa.insert(DatasetObject).from_select(
            ["dataset_id", "name"],
            sa.select(sa.literal(dataset_id), src.c.name).where(src.c.name.not_in(known)),
        )
    )
    obj_ids = _ids_by_name(session, DatasetObject, dataset_id, obj_names, only=True)
    cols["object_id"] = (sa.BigInteger, obj_ids[obj_of_image].tolist())
    src = _rows(session, cols)
    try:
        with session.begin_nested():
            session.execute(
                sa.insert(Image).from_select(
                    ["dataset_id", *cols], sa.select(sa.literal(dataset_id), *src.c)
                )
            )
    except IntegrityError as exc:
        raise InvalidInput("image names must be unique within a dataset") from exc
    image_ids = _ids_by_name(session, Image, dataset_id, names, only=True)
    ids = _rows(session, {"id": (sa.BigInteger, image_ids.tolist())})
    session.execute(
        sa.insert(ImageSpan).from_select(
            ["dataset_id", "image_id", "added_in_version"],
            sa.select(sa.literal(dataset_id), ids.c.id, sa.literal(0)),
        )
    )
    _insert_original_grasps(session, dataset_id, image_ids[index], g)
    return image_ids


# --- reading -----------------------------------------------------------------------------


def latest_version(session: Session, dataset_id: int) -> int:
    """The head of the dataset's version chain; NotFound if it has no version yet."""
    head = session.execute(
        sa.select(Dataset.latest_version).where(Dataset.id == dataset_id)
    ).one_or_none()
    if head is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    if head[0] is None:
        raise NotFound(f"dataset {dataset_id} has no version yet (import version 0 first)")
    return int(head[0])


def list_versions(session: Session, dataset_id: int) -> list[DatasetVersion]:
    """Every version of the dataset, oldest first, with its counts, message and round."""
    return list(
        session.scalars(
            sa.select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset_id)
            .order_by(DatasetVersion.number)
        )
    )


def labels_at(session: Session, dataset_id: int, version: int) -> Labels:
    """All grasps that are labels of `version`, as arrays (see `Labels`)."""
    _check_version(session, dataset_id, version)
    where = sa.and_(Grasp.dataset_id == dataset_id, _present(Grasp, version))
    return _fetch_labels(session, version, where)


def labels_for_image(session: Session, image_id: int, version: int) -> Labels:
    """The labels of one image at `version` (empty when the image is absent there)."""
    dataset_id = session.scalar(sa.select(Image.dataset_id).where(Image.id == image_id))
    if dataset_id is None:
        raise NotFound(f"image {image_id} does not exist")
    _check_version(session, dataset_id, version)
    where = sa.and_(Grasp.image_id == image_id, _present(Grasp, version))
    return _fetch_labels(session, version, where)


def labels_of_known_image(session: Session, image_id: int, version: int) -> Labels:
    """`labels_for_image` for a caller that already knows the image and the version exist
    (a review item's image at its round's base version): one query, no checks, built once
    (every review screen and every fix decision asks for it)."""
    pg = session.get_bind().dialect.name == "postgresql"
    stmt = _KNOWN_IMAGE_LABELS_PG if pg else _KNOWN_IMAGE_LABELS_SQLITE
    return _run_label_query(
        session, version, stmt, pg=pg, params={"p_image": image_id, "p_version": version}
    )


def select_images_at(dataset_id: int, version: int) -> sa.Select[tuple[Image]]:
    """A SELECT of the `Image` rows present at `version`, to filter or page further."""
    present = sa.select(ImageSpan.image_id).where(
        ImageSpan.dataset_id == dataset_id, _present(ImageSpan, version)
    )
    return sa.select(Image).where(Image.id.in_(present))


def images_at(session: Session, dataset_id: int, version: int) -> np.ndarray:
    """Sorted ids (I,) int64 of the images present at `version`."""
    _check_version(session, dataset_id, version)
    rows = session.scalars(
        sa.select(ImageSpan.image_id).where(
            ImageSpan.dataset_id == dataset_id, _present(ImageSpan, version)
        )
    ).all()
    return np.sort(np.asarray(rows, dtype=np.int64))


def diff(session: Session, dataset_id: int, v_from: int, v_to: int) -> Diff:
    """Grasps and images added and removed between two versions, with provenance.

    With v_from > v_to the answer is the reverse: what to add and remove to go back.
    """
    _check_version(session, dataset_id, v_from)
    _check_version(session, dataset_id, v_to)
    lo, hi = min(v_from, v_to), max(v_from, v_to)
    # On a linear chain: present at hi and not at lo <=> added in (lo, hi] and still there
    # at hi; present at lo and not at hi <=> added by lo and removed in (lo, hi].
    new_g = _grasp_changes(session, dataset_id, _appeared(Grasp, lo, hi))
    old_g = _grasp_changes(session, dataset_id, _vanished(Grasp, lo, hi))
    new_i = _span_images(session, dataset_id, _appeared(ImageSpan, lo, hi))
    old_i = _span_images(session, dataset_id, _vanished(ImageSpan, lo, hi))
    # An image removed and later restored inside (lo, hi] is present at both ends.
    new_i, old_i = np.setdiff1d(new_i, old_i), np.setdiff1d(old_i, new_i)
    if v_from > v_to:
        new_g, old_g, new_i, old_i = old_g, new_g, old_i, new_i
    return Diff(v_from, v_to, new_g, old_g, new_i, old_i)


# --- writing -----------------------------------------------------------------------------


def create_version(
    session: Session,
    dataset_id: int,
    parent_version: int,
    change_set: ChangeSet,
    *,
    round_id: int | None = None,
    message: str = "",
) -> int:
    """Apply `change_set` on top of `parent_version` and return the new version number.

    The parent must be the dataset's latest version (Conflict otherwise, including when
    another writer created the same number first). Every removed grasp or image and every
    image receiving grasps must belong to the dataset and be present at the parent
    (InvalidInput otherwise). Added grasps record `round_id` as their round. All or nothing.
    """
    cs = change_set
    new = parent_version + 1
    try:
        with session.begin_nested():
            _claim_head(session, dataset_id, parent=parent_version, new=new)
            parent_row = _version_row(session, dataset_id, parent_version)
            row = DatasetVersion(
                dataset_id=dataset_id,
                number=new,
                parent_number=parent_version,
                round_id=round_id,
                message=message,
                image_count=parent_row.image_count,
                grasp_count=parent_row.grasp_count,
            )
            session.add(row)
            session.flush()

            removed_g = _remove_grasps(session, dataset_id, new, cs)
            removed_i, cascaded = _remove_images(session, dataset_id, new, cs)
            added_g = _add_grasps(session, dataset_id, new, cs, round_id)
            row.grasp_count = parent_row.grasp_count - removed_g - cascaded + added_g
            row.image_count = parent_row.image_count - removed_i
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"version {new} of dataset {dataset_id} not created: {exc.orig}") from exc
    return new


def rollback_to(
    session: Session,
    dataset_id: int,
    target_version: int,
    *,
    message: str | None = None,
    reviewer_id: int | None = None,
) -> int:
    """Create a new version whose labels and images equal those of `target_version`.

    History stays append-only: rows added after the target are closed, and rows the
    target had that were closed since are copied as new rows (`restored_from_id`,
    new image spans). Returns the new version number.
    """
    parent = latest_version(session, dataset_id)
    _check_version(session, dataset_id, target_version)
    new = parent + 1
    reason = f"rollback to v{target_version}"
    t = target_version
    try:
        with session.begin_nested():
            _claim_head(session, dataset_id, parent=parent, new=new)
            parent_row = _version_row(session, dataset_id, parent)
            row = DatasetVersion(
                dataset_id=dataset_id,
                number=new,
                parent_number=parent,
                message=message if message is not None else reason,
            )
            session.add(row)
            session.flush()

            # Grasps the target lacks: everything still open that was added after it.
            closed = _count(
                session,
                sa.update(Grasp)
                .where(
                    Grasp.dataset_id == dataset_id,
                    Grasp.removed_in_version.is_(None),
                    Grasp.added_in_version > t,
                )
                .values(removed_in_version=new, removed_reason=reason, removed_by_id=reviewer_id),
            )
            # Grasps the target had that were removed since: copied, history untouched.
            copy_cols = ["image_id", "x", "y", "theta", "opening", "jaw", "source", "round_id"]
            copy_cols += ["prediction_id", "reviewer_id", "note"]
            restored = _count(
                session,
                sa.insert(Grasp).from_select(
                    ["dataset_id", *copy_cols, "added_in_version", "restored_from_id"],
                    sa.select(
                        Grasp.dataset_id,
                        *(Grasp.__table__.c[c] for c in copy_cols),
                        sa.literal(new),
                        Grasp.id,
                    ).where(
                        Grasp.dataset_id == dataset_id,
                        Grasp.added_in_version <= t,
                        Grasp.removed_in_version > t,
                    ),
                ),
            )
            # Images: reopen those present at the target without an open span, then close
            # open spans of images the target did not have.
            at_target = sa.select(ImageSpan.image_id).where(
                ImageSpan.dataset_id == dataset_id, _present(ImageSpan, t)
            )
            open_now = sa.select(ImageSpan.image_id).where(
                ImageSpan.dataset_id == dataset_id, ImageSpan.removed_in_version.is_(None)
            )
            target_images = at_target.distinct().subquery()
            reopened = _count(
                session,
                sa.insert(ImageSpan).from_select(
                    ["dataset_id", "image_id", "added_in_version"],
                    sa.select(
                        sa.literal(dataset_id), target_images.c.image_id, sa.literal(new)
                    ).where(target_images.c.image_id.not_in(open_now)),
                ),
            )
            img_closed = _count(
                session,
                sa.update(ImageSpan)
                .where(
                    ImageSpan.dataset_id == dataset_id,
                    ImageSpan.removed_in_version.is_(None),
                    ImageSpan.added_in_version < new,
                    ImageSpan.image_id.not_in(at_target),
                )
                .values(removed_in_version=new, removed_reason=reason, removed_by_id=reviewer_id),
            )
            row.grasp_count = parent_row.grasp_count - closed + restored
            row.image_count = parent_row.image_count + reopened - img_closed
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"rollback of dataset {dataset_id} not created: {exc.orig}") from exc
    return new


# --- private: version chain --------------------------------------------------------------


def _claim_head(session: Session, dataset_id: int, *, parent: int | None, new: int) -> None:
    """Compare-and-swap the dataset's head from `parent` to `new`, or raise.

    Being the first write of the savepoint, it also takes the row lock (PostgreSQL) or the
    database write lock (SQLite) that serialises version creation.
    """
    head = Dataset.latest_version
    expected = head.is_(None) if parent is None else head == parent
    try:
        done = _count(
            session,
            sa.update(Dataset)
            .where(Dataset.id == dataset_id, expected)
            .values(latest_version=new)
            .execution_options(synchronize_session=False),
        )
    except OperationalError as exc:
        if session.get_bind().dialect.name == "sqlite" and "locked" in str(exc.orig):
            raise Conflict(
                f"dataset {dataset_id} was changed by another writer meanwhile; retry"
            ) from exc
        raise
    if done == 1:
        return
    current = session.execute(
        sa.select(Dataset.latest_version).where(Dataset.id == dataset_id)
    ).one_or_none()
    if current is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    if parent is None:
        raise Conflict(f"dataset {dataset_id} already has versions (latest {current[0]})")
    if current[0] is None:
        raise NotFound(f"dataset {dataset_id} has no version yet (import version 0 first)")
    if parent > current[0]:
        raise NotFound(f"version {parent} of dataset {dataset_id} does not exist")
    raise Conflict(
        f"version {parent} is not the latest of dataset {dataset_id} (latest is {current[0]}); "
        "versions form a linear chain: rebuild the change on the latest version"
    )


def _version_row(session: Session, dataset_id: int, number: int) -> DatasetVersion:
    row = session.scalars(
        sa.select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == number
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"version {number} of dataset {dataset_id} does not exist")
    return row


def _check_version(session: Session, dataset_id: int, version: int) -> None:
    head = latest_version(session, dataset_id)
    if not 0 <= version <= head:
        raise NotFound(f"dataset {dataset_id} has versions 0..{head}, not {version}")


def _present(table: Any, v: int | sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    """Row of `table` (grasps or image_spans) alive at version v."""
    return sa.and_(
        table.added_in_version <= v,
        sa.or_(table.removed_in_version.is_(None), table.removed_in_version > v),
    )


def _appeared(table: Any, lo: int, hi: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        table.added_in_version > lo,
        table.added_in_version <= hi,
        sa.or_(table.removed_in_version.is_(None), table.removed_in_version > hi),
    )


def _vanished(table: Any, lo: int, hi: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        table.added_in_version <= lo,
        table.removed_in_version > lo,
        table.removed_in_version <= hi,
    )


# --- private: change-set steps ------------------------------------------------------------


def _remove_grasps(session: Session, dataset_id: int, new: int, cs: ChangeSet) -> int:
    ids = cs.remove_grasp_ids
    if not len(ids):
        return 0
    src = _rows(
        session,
        {
            "id": (sa.BigInteger, ids.tolist()),
            "reason": (sa.Text, cs.remove_grasp_reasons),
            "by": (sa.BigInteger, _nullable(cs.remove_grasp_reviewer_ids)),
        },
    )
    _require_all(
        session,
        src.c.id,
        sa.select(Grasp.id).where(
            Grasp.dataset_id == dataset_id, Grasp.removed_in_version.is_(None)
        ),
        f"grasps that are not labels of the latest version of dataset {dataset_id}",
    )
    return _count(
        session,
        sa.update(Grasp)
        .where(Grasp.id == src.c.id, Grasp.removed_in_version.is_(None))
        .values(removed_in_version=new, removed_reason=src.c.reason, removed_by_id=src.c.by)
        .execution_options(synchronize_session=False),
    )


def _remove_images(session: Session, dataset_id: int, new: int, cs: ChangeSet) -> tuple[int, int]:
    """Close the images' spans and their open grasps; returns (images, grasps) closed."""
    ids = cs.remove_image_ids
    if not len(ids):
        return 0, 0
    src = _rows(
        session,
        {
            "id": (sa.BigInteger, ids.tolist()),
            "reason": (sa.Text, cs.remove_image_reasons),
            "by": (sa.BigInteger, _nullable(cs.remove_image_reviewer_ids)),
        },
    )
    _require_all(
        session,
        src.c.id,
        _open_images(dataset_id),
        f"images not present in the latest version of dataset {dataset_id}",
    )
    images = _count(
        session,
        sa.update(ImageSpan)
        .where(ImageSpan.image_id == src.c.id, ImageSpan.removed_in_version.is_(None))
        .values(removed_in_version=new, removed_reason=src.c.reason, removed_by_id=src.c.by)
        .execution_options(synchronize_session=False),
    )
    reason = sa.func.coalesce("image removed: " + src.c.reason, "image removed")
    grasps = _count(
        session,
        sa.update(Grasp)
        .where(Grasp.image_id == src.c.id, Grasp.removed_in_version.is_(None))
        .values(removed_in_version=new, removed_reason=reason, removed_by_id=src.c.by)
        .execution_options(synchronize_session=False),
    )
    return images, grasps


def _add_grasps(
    session: Session, dataset_id: int, new: int, cs: ChangeSet, round_id: int | None
) -> int:
    m = len(cs.add_image_ids)
    if not m:
        return 0
    g = cs.add_grasps
    cols = {
        "image_id": (sa.BigInteger, cs.add_image_ids.tolist()),
        "x": (sa.Double, g[:, 0].tolist()),
        "y": (sa.Double, g[:, 1].tolist()),
        "theta": (sa.Double, g[:, 2].tolist()),
        "opening": (sa.Double, g[:, 3].tolist()),
        "jaw": (sa.Double, g[:, 4].tolist()),
        "source": (sa.Text, cs.add_source),
        "prediction_id": (sa.BigInteger, _nullable(cs.add_prediction_ids)),
        "reviewer_id": (sa.BigInteger, _nullable(cs.add_reviewer_ids)),
        "note": (sa.Text, cs.add_notes),
    }
    _check_images_open(session, dataset_id, np.unique(cs.add_image_ids))
    inserted = 0
    for start in range(0, m, CHUNK_ROWS):
        src = _rows(session, {k: (t, v[start : start + CHUNK_ROWS]) for k, (t, v) in cols.items()})
        inserted += _count(
            session,
            sa.insert(Grasp).from_select(
                ["dataset_id", "added_in_version", "round_id", *cols],
                sa.select(sa.literal(dataset_id), sa.literal(new), sa.literal(round_id), *src.c),
            ),
        )
    return inserted


def _count(session: Session, stmt: sa.Executable) -> int:
    """Execute `stmt` and return how many rows it wrote (kept for INSERT ... SELECT too)."""
    count = session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount
    if count < 0:  # a driver that cannot count would silently corrupt the version counts
        raise RuntimeError("database driver did not report a row count")
    return count


def _check_images_open(session: Session, dataset_id: int, image_ids: np.ndarray) -> None:
    src = _rows(session, {"id": (sa.BigInteger, image_ids.tolist())})
    _require_all(
        session,
        src.c.id,
        _open_images(dataset_id),
        f"grasps added to images not present in the latest version of dataset {dataset_id}",
    )


def _open_images(dataset_id: int) -> sa.Select[Any]:
    return sa.select(ImageSpan.image_id).where(
        ImageSpan.dataset_id == dataset_id, ImageSpan.removed_in_version.is_(None)
    )


def _require_all(
    session: Session, ids: sa.ColumnElement[Any], allowed: sa.Select[Any], what: str
) -> None:
    """InvalidInput naming up to five of `ids` that `allowed` does not contain."""
    bad = session.scalars(sa.select(ids).where(ids.not_in(allowed)).limit(5)).all()
    if bad:
        raise InvalidInput(f"{what}: {sorted(int(b) for b in bad)}")


# --- private: bulk transport --------------------------------------------------------------


def _rows(session: Session, columns: dict[str, tuple[Any, Sequence[Any]]]) -> sa.Subquery:
    """A derived table of the given columns (equal lengths), sent as a few parameters.

    PostgreSQL: `unnest` of one array per column. SQLite: `json_each` of one JSON array
    of rows. Either way it is one statement, however many rows.
    """
    names = list(columns)
    typed = [sa.column(n, t) for n, (t, _) in columns.items()]
    if session.get_bind().dialect.name == "postgresql":
        pg = {sa.BigInteger: "bigint[]", sa.Double: "double precision[]", sa.Text: "text[]"}
        args = ", ".join(f"CAST(:c{i} AS {pg[t]})" for i, (t, _) in enumerate(columns.values()))
        stmt = sa.text(f"SELECT * FROM unnest({args}) AS t({', '.join(names)})")  # noqa: S608
        params = {f"c{i}": list(v) for i, (_, v) in enumerate(columns.values())}
    else:
        picks = ", ".join(f"json_extract(value, '$[{i}]') AS {n}" for i, n in enumerate(names))
        stmt = sa.text(f"SELECT {picks} FROM json_each(:rows)")  # noqa: S608
        params = {"rows": json.dumps(list(zip(*(v for _, v in columns.values()), strict=True)))}
    return stmt.bindparams(**params).columns(*typed).subquery()


def _insert_original_grasps(
    session: Session, dataset_id: int, image_ids: np.ndarray, grasps: np.ndarray
) -> None:
    """Insert version-0 grasps: binary COPY on PostgreSQL, `_rows` on SQLite."""
    n = len(grasps)
    if session.get_bind().dialect.name != "postgresql":
        # The driver's executemany: no JSON to build and parse (half the CPU of `_rows`).
        columns = "dataset_id, image_id, " + ", ".join(_GRASP_COLS) + ", added_in_version, source"
        sql = f"INSERT INTO grasps ({columns}) VALUES ({', '.join('?' * 9)})"  # noqa: S608
        driver = session.connection().connection.driver_connection
        original = GraspSource.original.value
        for s in range(0, n, CHUNK_ROWS):
            ids = image_ids[s : s + CHUNK_ROWS].tolist()
            values = grasps[s : s + CHUNK_ROWS].tolist()
            driver.executemany(
                sql,
                [(dataset_id, i, *g, 0, original) for i, g in zip(ids, values, strict=True)],
            )
        return
    source = GraspSource.original.value.encode()
    dtype = np.dtype(
        [("nfields", ">i2"), ("l_ds", ">i4"), ("ds", ">i4"), ("l_img", ">i4"), ("img", ">i4")]
        + [item for k in _GRASP_COLS for item in ((f"l_{k}", ">i4"), (k, ">f8"))]
        + [("l_v", ">i4"), ("v", ">i4"), ("l_src", ">i4"), ("src", f"S{len(source)}")]
    )
    columns = "dataset_id, image_id, " + ", ".join(_GRASP_COLS) + ", added_in_version, source"
    driver = session.connection().connection.driver_connection
    with (
        driver.cursor() as cur,
        cur.copy(f"COPY grasps ({columns}) FROM STDIN (FORMAT binary)") as cp,
    ):
        cp.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)  # signature, flags, no extension
        for s in range(0, n, CHUNK_ROWS):
            chunk = np.empty(min(CHUNK_ROWS, n - s), dtype)
            chunk["nfields"] = 9
            chunk["l_ds"], chunk["ds"] = 4, dataset_id
            chunk["l_img"], chunk["img"] = 4, image_ids[s : s + len(chunk)]
            for j, k in enumerate(_GRASP_COLS):
                chunk[f"l_{k}"], chunk[k] = 8, grasps[s : s + len(chunk), j]
            chunk["l_v"], chunk["v"] = 4, 0
            chunk["l_src"], chunk["src"] = len(source), source
            cp.write(chunk.tobytes())
        cp.write(b"\xff\xff")  # end-of-data marker


_GRASP_COLS = ("x", "y", "theta", "opening", "jaw")

#: One label row as PostgreSQL's int8send/float8send concatenation lays it out.
_PG_LABEL_DTYPE = np.dtype([("id", ">i8"), ("image_id", ">i8"), ("g", ">f8", (5,))])


def _fetch_labels(session: Session, version: int, where: sa.ColumnElement[bool]) -> Labels:
    pg = session.get_bind().dialect.name == "postgresql"
    return _run_label_query(session, version, _label_query(where, pg=pg), pg=pg)


def _label_query(where: sa.ColumnElement[bool], *, pg: bool) -> sa.Select[Any]:
    """The labels matching `where`: on PostgreSQL one bytea aggregated server-side (no
    Python object per row on the way back), elsewhere plain rows."""
    if pg:
        packed = sa.func.int8send(sa.cast(Grasp.id, sa.BigInteger)).op("||")(
            sa.func.int8send(sa.cast(Grasp.image_id, sa.BigInteger))
        )
        for k in _GRASP_COLS:
            packed = packed.op("||")(sa.func.float8send(Grasp.__table__.c[k]))
        return sa.select(sa.func.string_agg(packed, sa.literal_column("''::bytea"))).where(where)
    cols = [Grasp.id, Grasp.image_id, *(Grasp.__table__.c[k] for k in _GRASP_COLS)]
    return sa.select(*cols).where(where)


def _run_label_query(
    session: Session,
    version: int,
    stmt: sa.Select[Any],
    *,
    pg: bool,
    params: dict[str, Any] | None = None,
) -> Labels:
    db = core_connection(session)  # plain rows: no ORM objects are loaded here
    if pg:
        blob = db.execute(stmt, params).scalar()
        rows = np.frombuffer(blob or b"", _PG_LABEL_DTYPE)
        ids, img, g = rows["id"], rows["image_id"], rows["g"]
    else:
        # Flattened through the rows' own iteration: numpy handed Row objects probes each
        # for array attributes it lacks (three failed lookups a row, most of the time).
        rows = db.execute(stmt, params).all()
        arr = np.fromiter(itertools.chain.from_iterable(rows), np.float64, count=7 * len(rows))
        arr = arr.reshape(-1, 7)
        ids, img, g = arr[:, 0], arr[:, 1], arr[:, 2:]
    order = np.lexsort((ids, img))
    return Labels(
        version=version,
        grasp_ids=ids[order].astype(np.int64),
        image_ids=img[order].astype(np.int64),
        grasps=np.ascontiguousarray(g[order], dtype=np.float64),
    )


_KNOWN_IMAGE = sa.and_(
    Grasp.image_id == sa.bindparam("p_image", type_=sa.Integer),
    _present(Grasp, sa.bindparam("p_version", type_=sa.Integer)),
)
_KNOWN_IMAGE_LABELS_PG = _label_query(_KNOWN_IMAGE, pg=True)
_KNOWN_IMAGE_LABELS_SQLITE = _label_query(_KNOWN_IMAGE, pg=False)


def _grasp_changes(session: Session, dataset_id: int, cond: sa.ColumnElement[bool]) -> GraspChanges:
    def nid(col: Any) -> Any:
        return sa.func.coalesce(col, NO_ID)

    stmt = (
        sa.select(
            Grasp.id,
            Grasp.image_id,
            *(Grasp.__table__.c[k] for k in _GRASP_COLS),
            Grasp.source,
            nid(Grasp.round_id),
            nid(Grasp.prediction_id),
            nid(Grasp.reviewer_id),
            Grasp.note,
            Grasp.removed_reason,
            nid(Grasp.removed_by_id),
        )
        .where(Grasp.dataset_id == dataset_id, cond)
        .order_by(Grasp.id)
    )
    rows = session.execute(stmt).all()
    c = list(zip(*rows, strict=True)) if rows else [()] * 14

    def i64(k: int) -> np.ndarray:
        return np.asarray(c[k], dtype=np.int64)

    def obj(k: int) -> np.ndarray:
        out = np.empty(len(rows), dtype=object)
        out[:] = [str(s) if isinstance(s, GraspSource) else s for s in c[k]]
        return out

    return GraspChanges(
        grasp_ids=i64(0),
        image_ids=i64(1),
        grasps=np.asarray(list(zip(*c[2:7], strict=True)), dtype=np.float64).reshape(-1, 5),
        sources=obj(7),
        round_ids=i64(8),
        prediction_ids=i64(9),
        reviewer_ids=i64(10),
        notes=obj(11),
        removed_reasons=obj(12),
        removed_by_ids=i64(13),
    )


def _span_images(session: Session, dataset_id: int, cond: sa.ColumnElement[bool]) -> np.ndarray:
    rows = session.scalars(
        sa.select(ImageSpan.image_id).where(ImageSpan.dataset_id == dataset_id, cond)
    ).all()
    return np.unique(np.asarray(rows, dtype=np.int64))


def _ids_by_name(
    session: Session, table: Any, dataset_id: int, names: np.ndarray, *, only: bool = False
) -> np.ndarray:
    """Ids (len(names),) int64 of the rows of `table` with these names, in `names` order.

    `only`: fetch just those names' rows (a batch of a large import), not the dataset's.
    """
    query = sa.select(table.id, table.name).where(table.dataset_id == dataset_id)
    if only:
        src = _rows(session, {"name": (sa.Text, [str(n) for n in names])})
        query = query.where(table.name.in_(sa.select(src.c.name)))
    rows = session.execute(query).all()
    got_ids = np.asarray([r[0] for r in rows], dtype=np.int64)
    got_names = np.asarray([r[1] for r in rows], dtype=str)
    order = np.argsort(got_names)
    pos = np.searchsorted(got_names[order], names)
    return got_ids[order][pos]


def _image_columns(images: ImageRecords) -> dict[str, tuple[Any, list[Any]]]:
    n = len(images)
    widths = np.asarray(images.widths, dtype=np.int64).reshape(-1)
    heights = np.asarray(images.heights, dtype=np.int64).reshape(-1)
    if len(widths) != n or len(heights) != n or len(images.object_names) != n:
        raise InvalidInput(f"image records must all have {n} entries")
    if n and (widths.min() <= 0 or heights.min() <= 0):
        raise InvalidInput("image widths and heights must be positive")
    cols: dict[str, tuple[Any, list[Any]]] = {
        "name": (sa.Text, [str(x) for x in images.names]),
        "width": (sa.BigInteger, widths.tolist()),
        "height": (sa.BigInteger, heights.tolist()),
    }
    for name in ("split", "rgb_key", "depth_key", "stereo_key", "mask_key", "grasps_key"):
        cols[name] = (sa.Text, _texts(getattr(images, name + "s"), n, name + "s"))
    cols["checksum"] = (sa.Text, _texts(images.checksums, n, "checksums"))
    return cols


# --- private: input normalisation ---------------------------------------------------------


def _ids(values: ArrayLike, name: str, *, unique: bool = False) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInput(f"{name} must be a 1-D array of integer ids")
    arr = arr.astype(np.int64)
    if unique and len(np.unique(arr)) != len(arr):
        raise InvalidInput(f"{name} contains duplicates")
    return arr


def _opt_ids(values: ArrayLike | None, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, NO_ID, dtype=np.int64)
    arr = _ids(values, name)
    if len(arr) != n:
        raise InvalidInput(f"{name} must have {n} entries, got {len(arr)}")
    return arr


def _nullable(ids: np.ndarray) -> list[int | None]:
    out: list[int | None] = ids.tolist()
    if (ids == NO_ID).any():
        obj = np.asarray(out, dtype=object)
        obj[ids == NO_ID] = None
        out = obj.tolist()
    return out


def _texts(values: str | Sequence[str | None] | None, n: int, name: str) -> list[str | None]:
    if values is None or isinstance(values, str):
        return [values] * n
    out = [None if v is None else str(v) for v in values]
    if len(out) != n:
        raise InvalidInput(f"{name} must have {n} entries, got {len(out)}")
    return out


def _sources(values: Any, n: int) -> list[str]:
    valid = {s.value for s in GraspSource}
    if isinstance(values, str):
        values = [values] * n
    out = [str(GraspSource(v)) if v in valid else str(v) for v in values]
    bad = sorted(set(out) - valid)
    if bad or len(out) != n:
        raise InvalidInput(f"add_source must be {n} of {sorted(valid)}; got {bad or len(out)}")
    return out


def _check_grasp_values(g: np.ndarray) -> None:
    if not np.isfinite(g).all():
        raise InvalidInput("grasps must be finite numbers")
    if len(g) and (g[:, 3].min() <= 0 or g[:, 4].min() <= 0):
        raise InvalidInput("grasp opening and jaw must be positive (pixels)")
