"""Stored images of a dataset version, read and prepared for a round's predictions.

A missing image or a corrupt file is that image's error (the round records it); an
unreachable object store fails the whole call (`StorageError`, 503) so the caller retries
it instead of recording images as unpredictable.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from regrasp.data.versions import select_images_at
from regrasp.learn.predict import ModelSpec, Prepared, prepare
from regrasp.platform.errors import InvalidInput, NotFound, RegraspError, StorageError
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import DatasetVersion, Image
from regrasp.platform.store.objects.base import ObjectStore

#: (depth key, rgb key) of an image
Keys = tuple[str | None, str | None]


def stored_keys(
    engine: Engine, dataset_id: int, version: int, image_ids: Sequence[int]
) -> dict[int, Keys]:
    """(depth_key, rgb_key) of each requested image present in the version; NotFound when
    the dataset has no such version."""
    with session_scope(engine) as session:
        found = session.execute(
            select_images_at(dataset_id, version)
            .where(Image.id.in_(set(image_ids)))
            .with_only_columns(Image.id, Image.depth_key, Image.rgb_key)
        ).all()
        exists = session.scalar(
            sa.select(DatasetVersion.id).where(
                DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == version
            )
        )
    if exists is None:
        raise NotFound(f"dataset {dataset_id} has no version {version}")
    return {row.id: (row.depth_key, row.rgb_key) for row in found}


def prepare_stored(
    store: ObjectStore,
    spec: ModelSpec,
    image_ids: Sequence[int],
    rows: dict[int, Keys],
    *,
    max_side: int,
) -> dict[int, Prepared | str]:
    """Each image's network input, or the error (a string) that stops it."""
    out: dict[int, Prepared | str] = {}
    for image_id in image_ids:
        if image_id not in rows:
            out[image_id] = "image is not in this dataset version"
            continue
        depth_key, rgb_key = rows[image_id]
        try:
            if spec.needs_depth and not depth_key:
                raise InvalidInput("image has no depth file")
            if spec.needs_rgb and not rgb_key:
                raise InvalidInput("image has no RGB file")
            out[image_id] = prepare(
                spec=spec,
                depth=store.get_bytes(depth_key) if spec.needs_depth else None,
                rgb=store.get_bytes(rgb_key) if spec.needs_rgb else None,
                max_side=max_side,
            )
        except StorageError:
            raise
        except RegraspError as exc:
            out[image_id] = f"{type(exc).__name__}: {exc}"
    return out
