"""The object-store key layout: every key built here, and nothing else, follows DESIGN.md."""

from __future__ import annotations

import pytest

from regrasp.platform.errors import InvalidInput
from regrasp.platform.store import keys
from regrasp.platform.store.objects import validate_key, validate_prefix

BAD_COMPONENTS = ["", ".", "..", ".hidden", "a/b", "a\\b", "a b", "a\x00", "é", "x" * 129, 7, None]


def test_image_file_keys_follow_the_layout() -> None:
    assert (
        keys.image_file_key("jacquard", "1a2b3c", "0_1a2b3c", "rgb")
        == "datasets/jacquard/1a2b3c/0_1a2b3c/rgb.png"
    )
    files = {
        kind: keys.image_file_key("d", "o", "i", kind).rsplit("/", 1)[1]
        for kind in ("rgb", "depth", "stereo_depth", "mask", "grasps")
    }
    assert files == {
        "rgb": "rgb.png",
        "depth": "depth.tiff",
        "stereo_depth": "stereo_depth.tiff",
        "mask": "mask.png",
        "grasps": "grasps.txt",
    }


def test_image_prefixes_nest() -> None:
    key = keys.image_file_key("d", "o", "i", "mask")

    for prefix in (
        keys.dataset_prefix("d"),
        keys.object_prefix("d", "o"),
        keys.image_prefix("d", "o", "i"),
    ):
        assert prefix.endswith("/") and key.startswith(prefix)
    assert keys.image_prefix("d", "o", "i") == "datasets/d/o/i/"
    assert not keys.image_file_key("d", "o2", "i", "rgb").startswith(keys.object_prefix("d", "o"))


def test_unknown_image_file_kind_is_refused() -> None:
    with pytest.raises(InvalidInput, match="rgb, depth, stereo_depth, mask, grasps"):
        keys.image_file_key("d", "o", "i", "normals")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["rgb", "depth", "stereo_depth", "mask", "grasps"])
def test_parse_image_file_key_inverts_the_builder(kind) -> None:
    key = keys.image_file_key("jq-v2", "obj_7", "12_obj_7", kind)

    ref = keys.parse_image_file_key(key)

    assert ref == keys.ImageFileRef(dataset="jq-v2", obj="obj_7", image="12_obj_7", kind=kind)
    assert keys.image_file_key(ref.dataset, ref.obj, ref.image, ref.kind) == key


@pytest.mark.parametrize(
    "key",
    [
        "datasets/d/o/i/rgb.jpg",
        "datasets/d/o/rgb.png",
        "datasets/d/o/i/x/rgb.png",
        "cache/d/o/i/rgb.png",
        "datasets/../o/i/rgb.png",
        "datasets/d/o/i/rgb.png/",
        "",
    ],
)
def test_parse_image_file_key_refuses_other_keys(key: str) -> None:
    with pytest.raises(InvalidInput):
        keys.parse_image_file_key(key)


def test_cache_keys_are_per_dataset_version() -> None:
    assert keys.cache_prefix("jq", 3) == "cache/jq/v3/"
    assert keys.cache_shard_key("jq", 3, "train-00001.npz") == "cache/jq/v3/train-00001.npz"
    assert keys.cache_shard_key("jq", 3, "300px/val-0.npz") == "cache/jq/v3/300px/val-0.npz"
    # A folder prefix: version 1 never covers version 10's shards.
    assert not keys.cache_shard_key("jq", 10, "s.npz").startswith(keys.cache_prefix("jq", 1))


def test_model_keys() -> None:
    assert keys.model_prefix("m-42") == "models/m-42/"
    assert keys.weights_key("m-42") == "models/m-42/weights.pt"
    assert keys.metadata_key("m-42") == "models/m-42/metadata.json"
    assert keys.model_key("m-42", "plots/loss.png") == "models/m-42/plots/loss.png"
    assert keys.checkpoints_prefix("m-42") == "models/m-42/checkpoints/"
    assert keys.checkpoint_key("m-42", 7) == "models/m-42/checkpoints/epoch-0007.pt"
    assert keys.checkpoint_key("m-42", 12345) == "models/m-42/checkpoints/epoch-12345.pt"


def test_checkpoint_keys_sort_by_epoch_and_parse_back() -> None:
    epochs = [0, 3, 10, 99, 100, 1000]
    built = [keys.checkpoint_key("m", e) for e in epochs]

    assert sorted(built) == built
    assert [keys.parse_checkpoint_key(k) for k in built] == [("m", e) for e in epochs]
    for other in ("models/m/weights.pt", "models/m/checkpoints/epoch-7.pt", "x/m/checkpoints/a"):
        with pytest.raises(InvalidInput):
            keys.parse_checkpoint_key(other)


def test_export_keys() -> None:
    assert keys.export_prefix("jq", 2) == "exports/jq/v2/"
    assert (
        keys.export_key("jq", 2, "train/1a2b/0_1a2b_RGB.png")
        == "exports/jq/v2/train/1a2b/0_1a2b_RGB.png"
    )
    assert keys.export_key("jq", 0, "manifest.json") == "exports/jq/v0/manifest.json"


@pytest.mark.parametrize("bad", BAD_COMPONENTS)
def test_every_name_component_is_validated(bad) -> None:
    builders = [
        lambda: keys.image_file_key(bad, "o", "i", "rgb"),
        lambda: keys.image_file_key("d", bad, "i", "rgb"),
        lambda: keys.image_file_key("d", "o", bad, "rgb"),
        lambda: keys.dataset_prefix(bad),
        lambda: keys.cache_prefix(bad, 1),
        lambda: keys.model_prefix(bad),
        lambda: keys.weights_key(bad),
        lambda: keys.checkpoint_key(bad, 1),
        lambda: keys.export_prefix(bad, 1),
    ]
    for build in builders:
        with pytest.raises(InvalidInput):
            build()


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "../x", "a//b", "a/", ".hidden/x", "a\\b"])
def test_relative_paths_are_validated_per_segment(bad: str) -> None:
    for build in (
        lambda: keys.cache_shard_key("d", 1, bad),
        lambda: keys.model_key("m", bad),
        lambda: keys.export_key("d", 1, bad),
    ):
        with pytest.raises(InvalidInput):
            build()


@pytest.mark.parametrize("bad", [-1, True, 1.0, "1", None])
def test_versions_and_epochs_are_non_negative_integers(bad) -> None:
    for build in (
        lambda: keys.cache_prefix("d", bad),
        lambda: keys.export_prefix("d", bad),
        lambda: keys.checkpoint_key("m", bad),
    ):
        with pytest.raises(InvalidInput, match="non-negative integer"):
            build()


def test_error_names_the_offending_part() -> None:
    with pytest.raises(InvalidInput, match=r"object name '\.\.'"):
        keys.image_file_key("d", "..", "i", "rgb")


def test_built_keys_and_prefixes_are_valid_store_keys() -> None:
    built = [
        keys.image_file_key("d", "o", "i", "stereo_depth"),
        keys.cache_shard_key("d", 1, "a/b.npz"),
        keys.checkpoint_key("m", 5),
        keys.export_key("d", 1, "x/y.txt"),
    ]
    prefixes = [keys.image_prefix("d", "o", "i"), keys.cache_prefix("d", 1)]

    assert [validate_key(k) for k in built] == built
    assert [validate_prefix(p) for p in prefixes] == prefixes


@pytest.mark.parametrize(
    "bad", ["", "/a", "a/", "a//b", "../a", "a/./b", "a\\b", "a\x00b", "a\x7fb", "é" * 600]
)
def test_store_key_validation_refuses_unsafe_keys(bad: str) -> None:
    with pytest.raises(InvalidInput):
        validate_key(bad)


def test_store_prefix_validation() -> None:
    for ok in ("", "a", "a/", "a/b", "datasets/d/o/"):
        assert validate_prefix(ok) == ok
    for bad in ("/", "/a", "a//", "../", "a/../", "a\\"):
        with pytest.raises(InvalidInput):
            validate_prefix(bad)


def test_every_built_key_reads_back_to_its_owner() -> None:
    owner = keys.KeyOwner
    assert keys.owner_of(keys.image_file_key("d", "o", "i", "rgb")) == owner("dataset", "d")
    assert keys.owner_of(keys.dataset_meta_key("d", "truth.json")) == owner("meta", "d")
    assert keys.owner_of(keys.cache_shard_key("d", 12, "a/b.npz")) == owner("cache", "d", 12)
    assert keys.owner_of(keys.export_key("d", 3, "manifest.json")) == owner("export", "d", 3)
    assert keys.owner_of(keys.checkpoint_key(keys.model_store_name(7), 2)) == owner("model", "7")
    assert keys.owner_of(keys.weights_key("named")) == owner("model", "named")
    # Not Regrasp's, or not a key it writes: no owner, or no version.
    for foreign in ("incoming/a/b.zip", "models/x", "cache", "datasets/.x/o/i/rgb.png"):
        assert keys.owner_of(foreign) is None
    assert keys.owner_of("cache/d/vx/a.npz") == owner("cache", "d", None)
    assert keys.owner_of("exports/d/v3") == owner("export", "d", None)


def test_dataset_store_name_falls_back_to_the_id() -> None:
    assert keys.dataset_store_name("jacquard", 4) == "jacquard"
    assert keys.dataset_store_name("my dataset", 4) == "id-4"
