"""Training-sample throughput: the decoded-tensor cache vs decoding the original files each epoch.

Both pipelines produce the same training items (network input + GG-CNN target maps) with
the same random rotation/zoom: `CachedGraspDataset` reads the shards built once by
`regrasp.learn.training.cache` (the cache build time is reported separately), while
`DecodedGraspDataset` decodes every 1024² PNG/TIFF and resizes it on every access, as the
reference GG-CNN loaders do. Throughput is measured in one process, side by side, over
the same images and the same number of epochs, through a DataLoader.

    python bench/pipeline.py --samples ../shared/data/jacquard_samples --epochs 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from regrasp.data.formats.jacquard import scan_jacquard
from regrasp.learn.training.cache import build_cache, jacquard_images
from regrasp.learn.training.config import AugmentConfig
from regrasp.learn.training.data import CachedGraspDataset, DecodedGraspDataset, make_loader
from regrasp.platform.store.objects import open_store

DEFAULT_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared/data/jacquard_samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--channels", default="depth", choices=("depth", "rgb", "rgbd"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    args = parser.parse_args()

    images = jacquard_images(scan_jacquard(args.samples))
    augment = AugmentConfig()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"file://{tmp}/objects")
        began = time.perf_counter()
        index = build_cache(
            store, images, dataset="bench", version=0, channels=args.channels, size=args.size
        )
        build_s = time.perf_counter() - began
        cached = CachedGraspDataset(store, index, augment=augment)
        decoded = DecodedGraspDataset(
            images, channels=args.channels, size=args.size, augment=augment
        )
        cached_rate = _throughput(cached, args)
        decoded_rate = _throughput(decoded, args)

    n = len(images)
    print(f"images: {n} ({args.samples}), {args.channels} at {args.size}², {args.epochs} epochs")
    print(f"cache build (once): {build_s:.2f} s ({n / build_s:.1f} images/s)")
    print(f"decode every epoch (GG-CNN way): {decoded_rate:8.1f} samples/s")
    print(f"from the cache:                  {cached_rate:8.1f} samples/s")
    print(f"ratio cache / decode: {cached_rate / decoded_rate:.1f}x")


def _throughput(dataset, args) -> float:
    loader = make_loader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
    )
    seen = 0
    began = time.perf_counter()
    for epoch in range(args.epochs):
        loader.sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        for x, _, _ in loader:
            seen += len(x)
    return seen / (time.perf_counter() - began)


if __name__ == "__main__":
    main()
