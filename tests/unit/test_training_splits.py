"""Splits: deterministic by seed, independent of listing order, disjoint, objects kept whole."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from regrasp.learn.training.config import SplitConfig, TrainConfig
from regrasp.learn.training.splits import Split, id_order, make_split
from regrasp.platform.errors import InvalidInput


def _dataset(objects: int = 40, per_object: int = 5) -> tuple[list[int], list[str]]:
    """Image ids 1.. (object o's first image is o * per_object + 1), object names."""
    images, owners = [], []
    for o in range(objects):
        for i in range(per_object):
            images.append(o * per_object + i + 1)
            owners.append(f"obj{o:03d}")
    return images, owners


def test_object_split_keeps_each_object_in_one_part() -> None:
    images, owners = _dataset()
    split = make_split(images, owners, kind="object", seed=3, val_fraction=0.1, test_fraction=0.2)
    part_of = {i: name for name in ("train", "val", "test") for i in getattr(split, name)}
    assert set(part_of) == set(images)
    parts_per_object: dict[str, set[str]] = {}
    for image, owner in zip(images, owners, strict=True):
        parts_per_object.setdefault(owner, set()).add(part_of[image])
    assert all(len(p) == 1 for p in parts_per_object.values())
    # round(fraction × 40 objects) objects of 5 images each
    assert len(split.test) == 8 * 5 and len(split.val) == 4 * 5


def test_image_split_counts_images() -> None:
    images, owners = _dataset()
    split = make_split(images, owners, kind="image", seed=1, val_fraction=0.1, test_fraction=0.1)
    assert len(split.test) == 20 and len(split.val) == 20 and len(split.train) == 160
    # image-wise: some object has images in two parts
    part_of = {i: n for n in ("train", "val", "test") for i in getattr(split, n)}
    first = {o: images[owners.index(o)] for o in owners}
    mixed = {o for i, o in zip(images, owners, strict=True) if part_of[i] != part_of[first[o]]}
    assert mixed


def test_split_does_not_depend_on_listing_order() -> None:
    images, owners = _dataset()
    pairs = list(zip(images, owners, strict=True))
    random.Random(5).shuffle(pairs)
    shuffled_images, shuffled_owners = (list(x) for x in zip(*pairs, strict=True))
    for kind in ("object", "image"):
        a = make_split(images, owners, kind=kind, seed=9)
        b = make_split(shuffled_images, shuffled_owners, kind=kind, seed=9)
        assert a == b


def test_seed_changes_the_split_and_same_seed_repeats_it() -> None:
    images, owners = _dataset()
    assert make_split(images, owners, seed=1) == make_split(images, owners, seed=1)
    assert make_split(images, owners, seed=1).test != make_split(images, owners, seed=2).test


def test_split_serialises_and_refuses_overlap() -> None:
    images, owners = _dataset(objects=10)
    split = make_split(images, owners, seed=0, val_fraction=0.2, test_fraction=0.2)
    data = json.loads(json.dumps(split.to_dict()))
    assert Split.from_dict(data) == split
    with pytest.raises(InvalidInput, match="disjoint"):
        Split(kind="object", seed=0, train=(1, 2), val=(), test=(2,))
    with pytest.raises(InvalidInput, match="malformed"):
        Split.from_dict({"kind": "object"})


def test_test_images_never_reach_training() -> None:
    images, owners = _dataset(objects=10)
    split = make_split(images, owners, seed=0, val_fraction=0.2, test_fraction=0.2)
    split.check_not_test(split.train + split.val)
    with pytest.raises(InvalidInput, match="test image"):
        split.check_not_test([*split.train, split.test[0]])


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput):
        make_split([1, 1], ["x", "y"])
    with pytest.raises(InvalidInput):
        make_split([1], ["x", "y"])
    with pytest.raises(InvalidInput):
        make_split([1], ["x"], val_fraction=0.6, test_fraction=0.5)
    for bad in ("a", "1_obj000", True, 1.5):
        with pytest.raises(InvalidInput, match="integers"):
            make_split([bad], ["x"])
    with pytest.raises(ValueError):
        SplitConfig(val_fraction=0.5, test_fraction=0.5)


def test_config_defaults_are_the_papers() -> None:
    config = TrainConfig()
    assert (config.architecture, config.epochs, config.batch_size) == ("mobilenet_v2", 100, 32)
    assert (config.lr, config.dropout, config.optimizer) == (5e-4, 0.05, "adam")
    assert (config.input_size, config.channels, config.in_channels) == (300, "depth", 1)
    assert TrainConfig(channels="rgbd").in_channels == 4
    with pytest.raises(ValueError):
        TrainConfig(unknown_option=1)
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config


def test_ids_are_ints_ranked_and_ordered_as_their_decimal_strings() -> None:
    # Ids were strings before; ranking and ordering by the decimal string keeps every
    # split (and so every training set and order) what it was.
    images, owners = _dataset(objects=30, per_object=1)
    split = make_split(images, owners, kind="image", seed=4, val_fraction=0.2, test_fraction=0.1)
    assert all(type(i) is int for name in ("train", "val", "test") for i in getattr(split, name))
    ranked = sorted(images, key=lambda i: hashlib.sha256(f"4:{i}".encode()).digest())
    assert set(split.test) == set(ranked[:3]) and set(split.val) == set(ranked[3:9])
    assert list(split.train) == sorted(split.train, key=str) != sorted(split.train)
    assert id_order(10) < id_order(9)


def test_splits_stored_with_string_ids_load_as_ints() -> None:
    images, owners = _dataset(objects=10)
    split = make_split(images, owners, seed=0, val_fraction=0.2, test_fraction=0.2)
    old = split.to_dict()
    old.update({n: [str(i) for i in getattr(split, n)] for n in ("train", "val", "test")})
    assert Split.from_dict(old) == split
    with pytest.raises(InvalidInput, match="split ids must be integers"):
        Split.from_dict({**old, "test": ["1_obj000"]})
