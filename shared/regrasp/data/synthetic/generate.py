"""Write a synthetic dataset in the Jacquard layout, in parallel, with its truth manifest.

`generate_dataset` renders `images` images of `objects` objects (several poses of each
object, object ids as folder names, like Jacquard's) and writes for each
`<root>/<object>/<i>_<object>_{RGB.png, perfect_depth.tiff, stereo_depth.tiff, mask.png,
grasps.txt}`. A chosen fraction of the images get corrupted labels in their grasps file;
`<root>/truth.jsonl` keeps the clean truth (see `regrasp.data.synthetic.manifest`).

Determinism: every object and image draws from its own `numpy.random.SeedSequence`
child of `seed`, so the bytes of every file depend on the seed only, not on the number
of workers or the order the pool finishes in. Workers are spawned processes (safe to call
from a threaded service), each with OpenCV limited to one thread so that N workers use N
cores.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from regrasp.data.synthetic.corruption import (
    EXPECTED_DECISION,
    KINDS,
    PAPER_KINDS,
    choose_corrupted,
    corrupt,
)
from regrasp.data.synthetic.manifest import Manifest, TruthRecord, write_manifest
from regrasp.data.synthetic.scenes import (
    DEFAULT_MAX_OPENING,
    FAMILIES,
    ObjectModel,
    make_object,
    render_scene,
)
from regrasp.grasp.rectangles import write_jacquard
from regrasp.platform.errors import Conflict, InvalidInput, StorageError

#: Images per object when `objects` is not given (Jacquard: about 54k images / 11k objects).
IMAGES_PER_OBJECT = 5
#: Version of the generator's output; bumped when the same seed would give other bytes.
FORMAT_VERSION = 1

# SeedSequence spawn-key tags: one independent stream per purpose.
_OBJECT, _IMAGE, _CORRUPT, _CHOICE, _FAMILY = range(5)


def generate_dataset(
    root: str | Path,
    *,
    images: int,
    objects: int | None = None,
    size: int = 1024,
    seed: int = 0,
    corrupt_fraction: float = 0.0,
    workers: int | None = None,
    progress: bool = False,
    corruption_kinds: tuple[str, ...] = PAPER_KINDS,
    max_opening: float = DEFAULT_MAX_OPENING,
    compress: bool = True,
) -> Manifest:
    """Generate a Jacquard-layout dataset under `root` (created; must be empty) → its manifest.

    images: number of images. objects: number of objects (default images / 5, at least
    1); images are spread evenly, an object's images numbered 0, 1, … in its folder, and
    families cycle over the objects so every family appears once objects >= 6.
    size: image side in pixels (Jacquard 1024; outlines and grasps scale with it).
    corrupt_fraction: exactly round(fraction × images) images, chosen by seed, get
    corrupted labels, the kinds of `corruption_kinds` spread evenly among them (a kind
    that does not fit an object falls back to one that does). workers: processes (default
    the CPU count; 1 renders in this process). max_opening: gripper stroke in pixels of a
    1024² image. compress: LZW TIFFs and zlib-1 PNGs like Jacquard (False: uncompressed,
    faster, about 3× the disk).
    """
    root = Path(root)
    objects = _check_args(root, images, objects, size, corrupt_fraction, workers, corruption_kinds)
    workers = min(workers or os.cpu_count() or 1, images)
    jobs = _plan(images, objects, size, seed, corrupt_fraction, corruption_kinds, max_opening)
    root.mkdir(parents=True, exist_ok=True)
    for object_id in sorted({job.object_id for job in jobs}):
        (root / object_id).mkdir(exist_ok=True)

    work = functools.partial(_write_image, root=str(root), compress=compress)
    records: list[TruthRecord] = []
    with tqdm(total=images, disable=not progress, desc="synthetic images", unit="img") as bar:
        if workers == 1:
            for job in jobs:
                records.append(work(job))
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            chunk = max(1, min(16, images // (workers * 8)))
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                for record in pool.imap(work, jobs, chunksize=chunk):
                    records.append(record)
                    bar.update()

    params = {
        "generator": "regrasp.data.synthetic",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": size,
        "images": images,
        "objects": objects,
        "families": sorted({job.family for job in jobs}),
        "corrupt_fraction": corrupt_fraction,
        "corrupted": sum(r.corrupted for r in records),
        "corruption_kinds": list(corruption_kinds),
        "max_opening_ref_px": max_opening,
        "compress": compress,
    }
    write_manifest(root, params, records)
    return Manifest(root=root, params=params, records=records)


def object_id(seed: int, number: int) -> str:
    """Folder name of object `number` of a generation: 32 hex digits like Jacquard's."""
    return hashlib.sha256(f"regrasp-synthetic/{seed}/{number}".encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Job:
    """Everything one worker needs to write one image (small and picklable)."""

    object_id: str
    index: int
    family: str
    object_seed: int
    image_seed: int
    corrupt_seed: int
    kind: str | None
    size: int
    max_opening: float


def _check_args(
    root: Path,
    images: int,
    objects: int | None,
    size: int,
    fraction: float,
    workers: int | None,
    kinds: tuple[str, ...],
) -> int:
    """Validate before anything is written; returns the number of objects."""
    if not isinstance(images, int) or images < 1:
        raise InvalidInput(f"images must be a positive integer, got {images!r}")
    if objects is None:
        objects = max(1, round(images / IMAGES_PER_OBJECT))
    if not isinstance(objects, int) or not 1 <= objects <= images:
        raise InvalidInput(f"objects must be an integer in [1, images={images}], got {objects!r}")
    if not isinstance(size, int) or not 64 <= size <= 4096:
        raise InvalidInput(f"size must be an integer in [64, 4096] pixels, got {size!r}")
    if not 0.0 <= fraction <= 1.0:
        raise InvalidInput(f"corrupt_fraction must be in [0, 1], got {fraction!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InvalidInput(f"workers must be a positive integer or None, got {workers!r}")
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise InvalidInput(f"corruption_kinds must be a non-empty subset of {KINDS}, got {kinds}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise Conflict(f"{root} exists and is not an empty folder; refusing to write into it")
    return objects


def _plan(
    images: int,
    objects: int,
    size: int,
    seed: int,
    fraction: float,
    kinds: tuple[str, ...],
    max_opening: float,
) -> list[_Job]:
    """One job per image, in (object, index) order; all randomness from `seed`."""
    corrupted = choose_corrupted(images, fraction, seed=_seed(seed, _CHOICE, 0), kinds=kinds)
    offset = _seed(seed, _FAMILY, 0) % len(FAMILIES)
    jobs = []
    counts: dict[int, int] = {}
    for n in range(images):
        k = n * objects // images
        index = counts.get(k, 0)
        counts[k] = index + 1
        jobs.append(
            _Job(
                object_id=object_id(seed, k),
                index=index,
                family=FAMILIES[(k + offset) % len(FAMILIES)],
                object_seed=_seed(seed, _OBJECT, k),
                image_seed=_seed(seed, _IMAGE, n),
                corrupt_seed=_seed(seed, _CORRUPT, n),
                kind=corrupted.get(n),
                size=size,
                max_opening=max_opening,
            )
        )
    return jobs


def _seed(seed: int, tag: int, number: int) -> int:
    """An independent 63-bit seed for (purpose, number) under the generation seed."""
    ss = np.random.SeedSequence(seed, spawn_key=(tag, number))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _init_worker() -> None:
    # One OpenCV thread per worker process: the pool, not OpenCV, spreads work over cores.
    cv2.setNumThreads(1)


@functools.lru_cache(maxsize=16)
def _object(family: str, seed: int, max_opening: float) -> ObjectModel:
    # Consecutive images of one object usually land in the same worker chunk.
    return make_object(family, seed=seed, max_opening=max_opening)


def _write_image(job: _Job, *, root: str, compress: bool) -> TruthRecord:
    """Render one image, write its five Jacquard files, return its truth record."""
    model = _object(job.family, job.object_seed, job.max_opening)
    scene = render_scene(model, size=job.size, seed=job.image_seed)
    labels = scene.grasps
    record = {
        "corruption": None,
        "category": None,
        "expected_decision": None,
        "wrong_labels": (),
        "detail": {},
    }
    if job.kind is not None:
        c = corrupt(
            scene.grasps,
            scene.groups,
            scene.shape,
            kind=job.kind,
            max_opening=scene.max_opening,
            image_size=scene.size,
            seed=job.corrupt_seed,
        )
        labels = c.labels
        record = {
            "corruption": c.kind,
            "category": c.category,
            "expected_decision": EXPECTED_DECISION[c.kind],
            "wrong_labels": tuple(c.wrong_labels),
            "detail": c.detail,
        }
    truth = TruthRecord(
        object_id=job.object_id,
        index=job.index,
        family=scene.family,
        size=scene.size,
        grasps=scene.grasps,
        groups=scene.groups,
        shape=scene.shape,
        max_opening=round(scene.max_opening, 4),
        labels_written=len(labels),
        **record,
    )
    paths = truth.paths(root)
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1 if compress else 0]
    tiff = [
        cv2.IMWRITE_TIFF_COMPRESSION,
        cv2.IMWRITE_TIFF_COMPRESSION_LZW if compress else cv2.IMWRITE_TIFF_COMPRESSION_NONE,
    ]
    _imwrite(paths["rgb"], np.ascontiguousarray(scene.rgb[..., ::-1]), png)
    _imwrite(paths["perfect_depth"], scene.perfect_depth, tiff)
    _imwrite(paths["stereo_depth"], scene.stereo_depth, tiff)
    _imwrite(paths["mask"], scene.mask, png)
    write_jacquard(paths["grasps"], labels)
    return truth


def _imwrite(path: Path, image: np.ndarray, params: list[int]) -> None:
    if not cv2.imwrite(str(path), image, params):
        raise StorageError(f"OpenCV could not write {path}")
