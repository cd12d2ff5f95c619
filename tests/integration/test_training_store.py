"""Training against the real stores: a dataset version from the database + S3, cached on S3,
and a model registered with its `models` row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regrasp.data import versions as V
from regrasp.data.formats.jacquard import scan_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.learn import nets
from regrasp.learn.training.cache import build_cache, db_images, read_shard
from regrasp.learn.training.config import TrainConfig
from regrasp.learn.training.loop import metadata_for
from regrasp.learn.training.registry import load_registered, register_model
from regrasp.platform.store import keys
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Model, ModelStatus
from regrasp.platform.store.objects import open_store

SIZE = 48


@pytest.fixture
def s3_store(s3_server, s3_store_url):
    return open_store(
        s3_store_url,
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
    )


@pytest.fixture
def engine(migrated_engine):
    """The harness's engine on a migrated database (both backends), under this file's name."""
    return migrated_engine


def test_db_version_cached_on_s3_and_model_registered(tmp_path, engine, s3_store) -> None:
    generate_dataset(tmp_path / "data", images=6, objects=3, size=96, seed=8, workers=1)
    scanned = list(scan_jacquard(tmp_path / "data"))
    rgb_keys, depth_keys, all_grasps, owner = [], [], [], []
    for i, image in enumerate(scanned):
        rgb = keys.image_file_key("syn", image.object_id, image.name, "rgb")
        depth = keys.image_file_key("syn", image.object_id, image.name, "depth")
        s3_store.put_bytes(rgb, image.read_bytes("rgb"))
        s3_store.put_bytes(depth, image.read_bytes("perfect_depth"))
        rgb_keys.append(rgb)
        depth_keys.append(depth)
        grasps = image.load_grasps()
        all_grasps.append(grasps)
        owner.extend([i] * len(grasps))
    with session_scope(engine) as session:
        dataset_id = V.create_dataset(session, name="syn")
        ids = V.import_version0(
            session,
            dataset_id,
            V.ImageRecords(
                names=[im.name for im in scanned],
                object_names=[im.object_id for im in scanned],
                widths=[96] * len(scanned),
                heights=[96] * len(scanned),
                rgb_keys=rgb_keys,
                depth_keys=depth_keys,
            ),
            owner,
            np.concatenate(all_grasps),
        )
        sources = db_images(session, s3_store, dataset_id=dataset_id, version=0)

    assert sorted(s.image_id for s in sources) == sorted(ids)
    index = build_cache(
        s3_store, sources, dataset="syn", version=0, channels="rgbd", size=SIZE, shard_size=4
    )
    assert all(s.key.startswith(keys.cache_prefix("syn", 0)) for s in index.shards)
    where = index.locations()
    for image_id, original in zip(ids, all_grasps, strict=True):
        shard_no, row = where[image_id]
        shard = read_shard(s3_store, index.shards[shard_no].key)
        back = shard.letterbox(row).to_image(shard.network_grasps(row))
        np.testing.assert_allclose(back, original, atol=1e-9)
        assert shard.inputs(row).shape == (4, SIZE, SIZE)

    config = TrainConfig(architecture="ggcnn", channels="rgbd", input_size=SIZE)
    torch.manual_seed(0)
    model = nets.build("ggcnn", 4, dropout=0.05)
    meta = metadata_for(
        config, dataset="syn", dataset_version=0, split=None, metrics={"val_accuracy": 0.25}
    )
    with session_scope(engine) as session:
        written = register_model(
            s3_store, "m-7", model=model, metadata=meta, session=session, dataset_id=dataset_id
        )
    with session_scope(engine) as session:
        row = session.get(Model, written["model_id"])
        assert row.status == ModelStatus.ready
        assert row.weights_key == keys.weights_key("m-7")
        assert (row.architecture, row.in_channels, row.dataset_version) == ("ggcnn", 4, 0)
        assert row.metrics == {"val_accuracy": 0.25}
    loaded, stored = load_registered(s3_store, "m-7", device="cpu")
    assert stored["channels"] == "rgbd"
    x = torch.randn(2, 4, SIZE, SIZE)
    model.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), loaded(x), strict=True))
