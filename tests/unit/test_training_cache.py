"""The training cache: sharding, content equal to direct decoding, reuse and repair."""

from __future__ import annotations

import numpy as np
import pytest

from regrasp.data.formats.jacquard import scan_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.grasp.imaging import Letterbox, network_input
from regrasp.learn.training.cache import build_cache, jacquard_images, open_cache, read_shard
from regrasp.platform.errors import InvalidInput, NotFound
from regrasp.platform.store import keys
from regrasp.platform.store.objects import open_store


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(root, images=12, objects=4, size=96, seed=11, workers=1, compress=False)
    return root


@pytest.fixture
def store(tmp_path):
    return open_store(f"file://{tmp_path / 'objects'}")


def _etags(store, prefix):
    return {info.key: info.etag for info in store.list(prefix)}


def test_cache_is_sharded_and_equals_direct_decoding(synthetic_root, store) -> None:
    images = jacquard_images(scan_jacquard(synthetic_root))
    index = build_cache(
        store, images, dataset="syn", version=0, channels="rgbd", size=64, shard_size=5
    )
    assert [len(s.image_ids) for s in index.shards] == [5, 5, 2]
    assert sorted(index.image_ids) == sorted(im.image_id for im in images)
    prefix = keys.cache_prefix("syn", 0)
    assert all(s.key.startswith(prefix + "rgbd-64/shard-") for s in index.shards)
    assert open_cache(store, dataset="syn", version=0, channels="rgbd", size=64) == index

    by_id = {im.image_id: im for im in images}
    for info in index.shards:
        shard = read_shard(store, info.key)
        assert shard.depth.dtype == np.float16 and shard.rgb.dtype == np.uint8
        assert shard.depth.shape == (len(info.image_ids), 1, 64, 64)
        for row, image_id in enumerate(info.image_ids):
            image = by_id[image_id]
            depth, rgb = image.load_depth(), image.load_rgb()
            expected = network_input(depth, rgb, size=64, channels="rgbd")
            got = shard.inputs(row)
            assert got.shape == (4, 64, 64) and got.dtype == np.float32
            np.testing.assert_allclose(got[0], expected[0], atol=1e-3)  # float16 depth
            np.testing.assert_allclose(got[1:], expected[1:], atol=1e-6)  # exact RGB
            box = Letterbox.for_image(depth, size=64)
            np.testing.assert_allclose(
                shard.network_grasps(row), box.to_network(image.load_grasps())
            )
            np.testing.assert_allclose(
                shard.letterbox(row).to_image(shard.network_grasps(row)), image.load_grasps()
            )


def test_complete_cache_is_reused_without_writing(synthetic_root, store) -> None:
    images = jacquard_images(scan_jacquard(synthetic_root))
    first = build_cache(store, images, dataset="syn", version=1, size=48, shard_size=4)
    before = _etags(store, keys.cache_prefix("syn", 1))
    again = build_cache(store, images, dataset="syn", version=1, size=48, shard_size=4)
    subset = build_cache(store, images[:5], dataset="syn", version=1, size=48, shard_size=4)
    assert again == first and subset == first
    assert _etags(store, keys.cache_prefix("syn", 1)) == before


def test_interrupted_build_rewrites_only_missing_shards(synthetic_root, store) -> None:
    images = jacquard_images(scan_jacquard(synthetic_root))
    index = build_cache(store, images, dataset="syn", version=2, size=48, shard_size=4)
    # An interrupted build: the index and one shard never made it to the store.
    store.delete(keys.cache_shard_key("syn", 2, "depth-48/index.json"))
    store.delete(index.shards[1].key)
    kept = {s.key: store.stat(s.key).etag for s in (index.shards[0], index.shards[2])}
    written = []
    rebuilt = build_cache(
        store,
        images,
        dataset="syn",
        version=2,
        size=48,
        shard_size=4,
        progress=lambda done, total: written.append((done, total)),
    )
    assert rebuilt == index
    assert store.exists(index.shards[1].key)
    assert {k: store.stat(k).etag for k in kept} == kept
    assert written[-1] == (12, 12)


def test_other_versions_and_sizes_are_separate_caches(synthetic_root, store) -> None:
    images = jacquard_images(scan_jacquard(synthetic_root))
    build_cache(store, images, dataset="syn", version=3, size=32)
    with pytest.raises(NotFound):
        open_cache(store, dataset="syn", version=3, channels="depth", size=40)
    with pytest.raises(NotFound):
        open_cache(store, dataset="syn", version=4, channels="depth", size=32)


def test_bad_arguments_are_refused(synthetic_root, store) -> None:
    images = jacquard_images(scan_jacquard(synthetic_root))
    with pytest.raises(InvalidInput):
        build_cache(store, images, dataset="syn", version=0, channels="ir")
    with pytest.raises(InvalidInput):
        build_cache(store, images, dataset="syn", version=0, shard_size=0)
    with pytest.raises(InvalidInput):
        build_cache(store, [], dataset="syn", version=0)
    with pytest.raises(InvalidInput):
        build_cache(store, images + images[:1], dataset="syn", version=0)


def test_real_samples_cache_matches_network_input(jacquard_samples, store) -> None:
    dataset = scan_jacquard(jacquard_samples)
    images = jacquard_images(dataset)
    index = build_cache(store, images, dataset="jacquard", version=0, size=100, shard_size=16)
    assert len(index.image_ids) == len(images) == 33
    where = index.locations()
    for image in (images[0], images[-1]):
        shard_no, row = where[image.image_id]
        shard = read_shard(store, index.shards[shard_no].key)
        expected = network_input(image.load_depth(), size=100)
        np.testing.assert_allclose(shard.inputs(row), expected, atol=1e-3)
        assert len(shard.network_grasps(row)) == len(image.load_grasps())


def test_a_folders_images_get_int_ids_and_the_cache_keeps_name_order(synthetic_root, store) -> None:
    # Folders have no database ids: images are numbered so that the cache, which orders
    # ids by their decimal string, lays a folder out in file-name order (as before ids
    # were ints), whatever the folder's size.
    dataset = scan_jacquard(synthetic_root)
    images = jacquard_images(dataset)
    assert [type(im.image_id) for im in images] == [int] * 12
    assert [im.image_id for im in images] == list(range(100, 112))  # 12 images: 3 digits
    name_of = dict(
        zip((im.image_id for im in images), sorted(i.name for i in dataset), strict=True)
    )
    index = build_cache(store, images, dataset="syn", version=0, channels="depth", size=32)
    shard = read_shard(store, index.shards[0].key)
    assert shard.image_ids.dtype == np.int64
    assert shard.image_ids.tolist() == list(index.image_ids)
    pairs = zip(index.image_ids, shard.object_ids, strict=True)
    cached = [(obj, name_of[i]) for i, obj in pairs]
    assert cached == sorted(cached)  # by object, then file name
