"""Benchmark: flag a whole Jacquard-sized round with the library vs. rasterised per-pair IoU.

The HIL rule flags an image when its top-1 prediction's best gated IoU over ~100 ground
truths is below 0.2; a round over Jacquard evaluates this for 54k images. This script
builds synthetic images shaped like Jacquard labels (about 100 rectangles clustered on one
object, openings 6–270 px, jaws 12–94 px in a 1024² frame, poses repeated with several jaw
sizes) and one top-1 prediction per image (half near a label, a quarter elsewhere on the
object, a quarter anywhere), then in one run:

- library: `regrasp.grasp.metrics.flagged_batch` over every image, one vectorised call;
- library per image: `regrasp.grasp.metrics.is_flagged` in a Python loop over the sample;
- baseline: the reference-code way on the sample — per pair in Python, angle gate first,
  then both rectangles drawn into boolean canvases and IoU = |A∧B| / |A∨B|. "origin" draws
  on a canvas from (0, 0) to the pair's far corner like GG-CNN's `GraspRectangle.iou`
  (OpenCV `fillPoly` with sub-pixel vertices stands in for skimage's `polygon`); "tight"
  is the fairer variant drawing only the pair's bounding box.

It prints images/s for each, the speed ratio, and the share of sampled images whose flag
decision agrees with the library's (the raster estimate differs slightly near 0.2).

    python bench/metrics.py --seed 0 --images 10000 --baseline-sample 200
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from regrasp.grasp import metrics
from regrasp.grasp.rectangles import JAW, OPENING, THETA, angle_difference, corners

IMAGE_SIZE = 1024
# Sub-pixel bits for cv2.fillPoly: vertices at 1/16 px, as close to exact as OpenCV draws.
_SHIFT = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--baseline-sample", type=int, default=200)
    args = parser.parse_args()
    if args.images < 1 or not 1 <= args.baseline_sample <= args.images:
        parser.error("need --images >= 1 and 1 <= --baseline-sample <= --images")

    rng = np.random.default_rng(args.seed)
    top1, gt, owner = synthetic_round(rng, args.images)
    counts = np.bincount(owner, minlength=args.images)
    pair_iou = metrics.iou_paired(top1[owner], gt)
    gated = angle_difference(top1[owner, THETA], gt[:, THETA]) < metrics.ANGLE_GATE
    print(
        f"{args.images} images, {len(gt)} ground-truth rectangles "
        f"({counts.mean():.1f}/image, min {counts.min()}, max {counts.max()}); "
        f"pairs passing the angle gate {gated.mean():.1%}, overlapping {np.mean(pair_iou > 0):.1%}"
    )

    # Library, all images in one call (best of 3 to keep one-off allocation noise out).
    lib_s = min(
        _timed(lambda: metrics.flagged_batch(top1, gt, image_index=owner))[1] for _ in range(3)
    )
    flags, _ = _timed(lambda: metrics.flagged_batch(top1, gt, image_index=owner))
    print(f"flagged by the library: {flags.mean():.1%} of images")

    sample = rng.choice(args.images, size=args.baseline_sample, replace=False)
    starts = np.concatenate([[0], np.cumsum(counts)])
    per_image = [gt[starts[i] : starts[i + 1]] for i in range(args.images)]

    loop_flags, loop_s = _timed(
        lambda: np.array([metrics.is_flagged(top1[i], per_image[i]) for i in sample])
    )
    assert (loop_flags == flags[sample]).all(), "per-image and batched library forms disagree"

    rows = [("library, batched", args.images, lib_s, None)]
    rows.append(("library, per-image loop", len(sample), loop_s, loop_flags))
    for canvas in ("origin", "tight"):
        best, base_s = _timed(lambda c=canvas: _baseline(top1, per_image, sample, c))
        rows.append(
            (f"baseline raster ({canvas} canvas)", len(sample), base_s, best < metrics.FLAG_IOU)
        )
        lib_best = metrics.best_iou_batch(top1[sample], [per_image[i] for i in sample])
        print(
            f"raster ({canvas}) vs exact best IoU on the sample: mean |diff| "
            f"{np.abs(best - lib_best).mean():.4f}, max {np.abs(best - lib_best).max():.4f}"
        )

    lib_ips = args.images / lib_s
    header = ("method", "images", "seconds", "images/s", "library ×", "agree")
    print("\n{:34s} {:>7s} {:>9s} {:>10s} {:>10s} {:>7s}".format(*header))
    for name, n, seconds, decided in rows:
        ips = n / seconds
        agree = "" if decided is None else f"{np.mean(decided == flags[sample]):.1%}"
        print(f"{name:34s} {n:7d} {seconds:9.3f} {ips:10.1f} {lib_ips / ips:10.1f} {agree:>7s}")


def synthetic_round(
    rng: np.random.Generator, n_images: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jacquard-like labels and one top-1 prediction per image.

    Returns top1 (M, 5), gt (N, 5) and owner (N,) int, the image of each gt row (sorted).
    Per image: one object (centre, axis angle, length 80–520 px, width 15–200 px); 15–45
    poses on it, mostly across the object, some along it; each pose repeated with 1–6 jaw
    sizes in [12, 94] like Jacquard's files.
    """
    m = n_images
    centre = rng.uniform(300, IMAGE_SIZE - 300, size=(m, 2))
    axis = rng.uniform(-90, 90, size=m)
    length = rng.uniform(80, 520, size=m)
    width = rng.uniform(15, 200, size=m)

    poses = rng.integers(15, 46, size=m)
    pose_img = np.repeat(np.arange(m), poses)
    p = len(pose_img)
    along = rng.uniform(-0.5, 0.5, size=p) * length[pose_img]
    across = rng.normal(0, 1, size=p) * width[pose_img] / 8
    phi = np.deg2rad(axis[pose_img])
    px = centre[pose_img, 0] + along * np.cos(phi) - across * np.sin(phi)
    py = centre[pose_img, 1] + along * np.sin(phi) + across * np.cos(phi)
    lengthwise = rng.random(p) < 0.2
    theta = axis[pose_img] + np.where(lengthwise, 0.0, 90.0) + rng.normal(0, 12, size=p)
    span = np.where(lengthwise, length[pose_img] * rng.uniform(0.3, 0.6, size=p), width[pose_img])
    opening = np.clip(span * rng.uniform(1.0, 1.6, size=p), 6, 270)

    jaws = rng.integers(1, 7, size=p)
    row_pose = np.repeat(np.arange(p), jaws)
    gt = np.column_stack(
        [
            px[row_pose],
            py[row_pose],
            theta[row_pose],
            opening[row_pose],
            rng.uniform(12, 94, size=len(row_pose)),
        ]
    )
    gt[:, THETA] = (gt[:, THETA] + 90) % 180 - 90
    owner = pose_img[row_pose]

    # Top-1: near a random label of the image, elsewhere on the object, or anywhere.
    first = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=m))[:-1]])
    pick = first + (rng.random(m) * np.bincount(owner, minlength=m)).astype(int)
    top1 = gt[pick].copy()
    top1[:, :2] += rng.normal(0, 8, size=(m, 2))
    top1[:, THETA] += rng.normal(0, 12, size=m)
    top1[:, OPENING] = np.clip(top1[:, OPENING] * np.exp(rng.normal(0, 0.25, size=m)), 6, 270)
    kind = rng.random(m)
    on_object = (kind >= 0.5) & (kind < 0.75)
    top1[on_object, THETA] = rng.uniform(-90, 90, size=on_object.sum())
    top1[on_object, :2] = centre[on_object] + rng.normal(0, 60, size=(on_object.sum(), 2))
    anywhere = kind >= 0.75
    top1[anywhere, :2] = rng.uniform(0, IMAGE_SIZE, size=(anywhere.sum(), 2))
    top1[anywhere, THETA] = rng.uniform(-90, 90, size=anywhere.sum())
    top1[:, JAW] = top1[:, OPENING] / 2  # the decoders' default predicted jaw
    return top1, gt, owner


def _baseline(
    top1: np.ndarray, per_image: list[np.ndarray], sample: np.ndarray, canvas: str
) -> np.ndarray:
    """Best gated IoU per sampled image, rasterised pair by pair in Python."""
    best = np.zeros(len(sample))
    for k, i in enumerate(sample):
        pred = top1[i]
        for g in per_image[i]:
            best[k] = max(best[k], _raster_iou(pred, g, canvas))
    return best


def _raster_iou(a: np.ndarray, b: np.ndarray, canvas: str) -> float:
    """GG-CNN-style IoU of two grasps: gate, then count pixels of two drawn polygons."""
    if angle_difference(a[THETA], b[THETA]) >= metrics.ANGLE_GATE:
        return 0.0
    pa, pb = corners(a)[0], corners(b)[0]
    both = np.concatenate([pa, pb])
    lo = (
        np.floor(both.min(axis=0))
        if canvas == "tight"
        else np.minimum(np.floor(both.min(axis=0)), 0)
    )
    hi = np.ceil(both.max(axis=0)) + 1
    w, h = (hi - lo).astype(int)
    mask_a = np.zeros((h, w), np.uint8)
    mask_b = np.zeros((h, w), np.uint8)
    # OpenCV puts pixel j's centre at j, ours is at j + 0.5: move the vertices half a pixel.
    cv2.fillPoly(mask_a, [_fixed(pa - lo - 0.5)], 1, shift=_SHIFT)
    cv2.fillPoly(mask_b, [_fixed(pb - lo - 0.5)], 1, shift=_SHIFT)
    a_, b_ = mask_a.astype(bool), mask_b.astype(bool)
    union = np.count_nonzero(a_ | b_)
    return np.count_nonzero(a_ & b_) / union if union else 0.0


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


if __name__ == "__main__":
    main()
