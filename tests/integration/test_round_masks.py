"""A round scores labels against the object: the predicting step reads the stored masks.

A generated dataset is imported into a real database and object store (a `file://`
folder and moto's S3 server); the masks a round hands to the score are those the import
stored, image by image. A mask that is gone or corrupt costs that image its mask terms,
not the round; and the score's mask terms do act on what is read (the coverage is
measured only where a mask came back).
"""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.data import versions
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.grasp.imaging import decode_mask
from regrasp.platform.store.db.engine import make_session_factory, session_scope
from regrasp.platform.store.db.tables import Image
from regrasp.platform.store.objects import open_store
from regrasp.workflows.rounds import machine
from regrasp.workflows.rounds.predicting import object_masks, score
from tests.harness.seeders import import_folder


@pytest.fixture(params=["file", "s3"])
def store(request):  # type: ignore[no-untyped-def]
    if request.param == "file":
        return open_store(request.getfixturevalue("file_store_url"))
    server = request.getfixturevalue("s3_server")
    return open_store(
        request.getfixturevalue("s3_store_url"),
        s3_endpoint=server.endpoint,
        s3_access_key=server.access_key,
        s3_secret_key=server.secret_key,
    )


@pytest.fixture
def dataset(migrated_engine, store, tmp_path):  # type: ignore[no-untyped-def]
    generate_dataset(tmp_path / "synth", images=4, objects=2, size=64, workers=1, seed=2)
    with session_scope(migrated_engine) as s:
        dataset_id = import_folder(s, store, tmp_path / "synth", name="masks")
        ids = versions.images_at(s, dataset_id, 0)
        keys = dict(s.execute(sa.select(Image.id, Image.mask_key)).all())
    return dataset_id, ids, [keys[int(i)] for i in ids]


def _services(store) -> machine.Services:  # type: ignore[no-untyped-def]
    return machine.Services(trainer_url="", inference_urls=(), credential=None, store=store)


def test_the_round_reads_each_images_stored_mask(migrated_engine, store, dataset):
    _, ids, keys = dataset
    assert all(keys), "the import stored no masks: the check would be empty"
    bind = make_session_factory(migrated_engine)
    masks = machine._masks(bind, _services(store), ids)
    assert masks is not None and len(masks) == len(ids)
    for mask, key in zip(masks, keys, strict=True):
        assert mask is not None and mask.dtype == bool and mask.any()
        np.testing.assert_array_equal(mask, decode_mask(store.get_bytes(key)) > 0)
    # Without an object store the round scores on the predictions alone.
    assert machine._masks(bind, _services(None), ids) is None


def test_a_mask_gone_or_corrupt_costs_that_image_its_mask_terms_only(store, dataset):
    _, ids, keys = dataset
    store.delete(keys[0])
    store.put_bytes(keys[1], b"not a png")
    masks = object_masks(store, [*keys, None])
    assert masks[0] is None and masks[1] is None and masks[-1] is None
    assert all(m is not None and m.any() for m in masks[2:-1])


def test_the_score_measures_the_labels_reach_only_where_a_mask_was_read(
    migrated_engine, store, dataset
):
    dataset_id, ids, keys = dataset
    with session_scope(migrated_engine) as s:
        labels = versions.labels_at(s, dataset_id, 0)
    chosen = labels.image_ids[np.isin(labels.image_ids, ids[:2])]
    owner = np.searchsorted(ids[:2], chosen)
    grasps = [np.zeros((0, 6)), np.zeros((0, 6))]
    masks = object_masks(store, [keys[0], None])
    quality = score(
        grasps,
        labels.grasps[np.isin(labels.image_ids, ids[:2])],
        owner,
        threshold=0.25,
        flag="score",
        masks=masks,
    ).quality
    assert quality[0]["coverage"] is not None and 0.0 < quality[0]["coverage"] <= 1.0
    assert quality[1]["coverage"] is None
