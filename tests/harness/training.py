"""A small synthetic dataset, generated and cached for training tests in one call."""

from __future__ import annotations

from pathlib import Path

from regrasp.data.formats.jacquard import scan_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.learn.training.cache import (
    SHARD_SIZE,
    CacheIndex,
    build_cache,
    jacquard_images,
)
from regrasp.learn.training.splits import Split, make_split
from regrasp.platform.store.objects import open_store


def synthetic_cache(
    root: Path,
    *,
    images: int,
    objects: int,
    seed: int,
    size: int,
    image_size: int = 64,
    shard_size: int = SHARD_SIZE,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
) -> tuple[str, CacheIndex, Split]:
    """(file:// store URL, cache index at `size`², object-wise split with seed 0) of
    `images` synthetic images of `objects` objects, `image_size`² px, under `root`."""
    generate_dataset(
        root / "data", images=images, objects=objects, size=image_size, seed=seed, workers=1
    )
    url = f"file://{root / 'objects'}"
    sources = jacquard_images(scan_jacquard(root / "data"))
    index = build_cache(
        open_store(url), sources, dataset="syn", version=0, size=size, shard_size=shard_size
    )
    split = make_split(
        [i.image_id for i in sources],
        [i.object_id for i in sources],
        seed=0,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    return url, index, split
