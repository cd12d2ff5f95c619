"""The rectangle metric of Jacquard / GG-CNN and the paper's human-in-the-loop flag.

A predicted grasp matches a ground-truth grasp when their angles differ by less than
`ANGLE_GATE` degrees (mod 180°) and the IoU of the two rotated rectangles is above
`SUCCESS_IOU`. An image is a success when its top-1 prediction matches any of its ground
truths; accuracy is successes / images. The HIL rule of "Jacquard V2" flags an image for
review when the top-1 prediction's best IoU over the ground truths (IoU taken as 0 where
the angle gate fails) is below `FLAG_IOU`.

The IoU is exact polygon geometry (shapely 2, vectorised), not the rasterised estimate of
the reference code, which is both slow and biased by pixelisation for thin rectangles.
Most pairs of an image do not overlap, so pairs are filtered cheaply first (angle gate,
bounding circles, then a separating-axis test that is exact for rectangles) and only pairs
that truly intersect go on. Pairs whose angles differ by a multiple of 90° (Jacquard
repeats each pose with several jaw sizes) have a closed form; the rest go to shapely in
one call. Where only an image's best IoU is wanted (flagging, success), a cheap upper
bound per pair lets each image skip the pairs that cannot beat its best so far.

Grasps are (N, 5) float64 rows `(x, y, theta, opening, jaw)` in pixels and degrees, see
`regrasp.grasp.rectangles`. numpy and shapely only: no I/O, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely

from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y, angle_difference, as_grasps, corners
from regrasp.platform.errors import InvalidInput

#: Angle gate of the rectangle metric, degrees: a match needs a difference strictly below it.
ANGLE_GATE = 30.0
#: IoU a match must strictly exceed (Jacquard / GG-CNN rectangle metric).
SUCCESS_IOU = 0.25
#: The paper's HIL rule: an image whose top-1 best gated IoU is below this is flagged.
FLAG_IOU = 0.2

GroundTruths = np.ndarray | Sequence[np.ndarray]

# Slack on the IoU bound before a pair is dropped, far above rounding, far below any use.
_BOUND_MARGIN = 1e-9
# Snap grid (px) for the rare shapely retry on nearly coincident rectangles.
_SNAP_GRID = 1e-9


def iou(a: np.ndarray, b: np.ndarray, angle_gate: float | None = ANGLE_GATE) -> np.ndarray:
    """Gated IoU of every rectangle of `a` against every rectangle of `b`.

    a: (Na, 5) grasps (or one (5,) grasp), b: (Nb, 5). Returns (Na, Nb) float64 in [0, 1]:
    the exact polygon IoU, set to 0 where the angle difference mod 180° is at or above
    `angle_gate` degrees. `angle_gate=None` gives the plain, ungated IoU.
    """
    a, b = as_grasps(a), as_grasps(b)
    gate = _check_gate(angle_gate)
    out = np.zeros((len(a), len(b)))
    if out.size == 0:
        return out
    # Cheap whole-matrix tests first; the exact ones only on the survivors.
    mask = _circles_meet(a[:, None, :], b[None, :, :])
    if gate is not None:
        mask &= angle_difference(a[:, None, THETA], b[None, :, THETA]) < gate
    ia, ib = np.nonzero(mask)
    out[ia, ib] = _candidate_iou(a, b, ia, ib)
    return out


def iou_paired(
    a: np.ndarray, b: np.ndarray, *, angle_gate: float | None = ANGLE_GATE
) -> np.ndarray:
    """Gated IoU of row k of `a` with row k of `b`: (N, 5) and (N, 5) → (N,) in [0, 1].

    The element-wise form of `iou`, for callers that already know which pairs they need
    (one prediction per image against its own labels, a corrupted label against its
    original) and must not pay for the full matrix.
    """
    a, b = as_grasps(a), as_grasps(b)
    if len(a) != len(b):
        raise InvalidInput(f"iou_paired needs as many rows in a as in b, got {len(a)} and {len(b)}")
    idx = np.arange(len(a))
    return _gated_pair_iou(a, b, idx, idx, _check_gate(angle_gate))


def best_iou(pred: np.ndarray, gt: np.ndarray, *, angle_gate: float | None = ANGLE_GATE) -> float:
    """Best gated IoU of the top-1 prediction over the ground truths of one image.

    pred: (5,) or (K, 5) grasps ranked best first (only `pred[0]` counts); gt: (N, 5).
    Returns 0.0 when either is empty: no prediction overlaps nothing, and nothing
    overlaps an image without labels.
    """
    top1 = _top1(pred)
    gt = as_grasps(gt)
    gate = _check_gate(angle_gate)
    if top1 is None or len(gt) == 0:
        return 0.0
    zeros = np.zeros(len(gt), dtype=np.intp)
    return float(_best_gated_iou(top1, gt, zeros, np.arange(len(gt)), zeros, 1, gate)[0])


def is_success(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    iou_threshold: float = SUCCESS_IOU,
    angle_gate: float | None = ANGLE_GATE,
) -> bool:
    """The rectangle metric for one image: does the top-1 prediction match a ground truth?

    pred: (5,) or (K, 5) ranked best first (only `pred[0]` counts); gt: (N, 5). A match
    needs angle difference < `angle_gate` and IoU > `iou_threshold`, both strict, so an
    IoU of exactly 0.25 or an angle difference of exactly 30° is not a match. An empty
    `pred` or `gt` is not a success.
    """
    threshold = _check_threshold(iou_threshold, "iou_threshold")
    # best_iou is 0 for an empty pred or gt, never above a threshold >= 0.
    return best_iou(pred, gt, angle_gate=angle_gate) > threshold


def is_flagged(
    pred: np.ndarray,
    gt: np.ndarray,
    threshold: float = FLAG_IOU,
    *,
    angle_gate: float | None = ANGLE_GATE,
) -> bool:
    """The paper's HIL rule for one image: top-1 best gated IoU strictly below `threshold`.

    pred: (5,) or (K, 5) ranked best first (only `pred[0]` counts); gt: (N, 5). An image
    without a prediction is flagged (the model found no grasp where labels exist, or
    nothing at all: a person should look), and so is an image without labels (its best
    IoU is 0).
    """
    threshold = _check_threshold(threshold, "threshold")
    return best_iou(pred, gt, angle_gate=angle_gate) < threshold


def best_iou_batch(
    top1: np.ndarray,
    gts: GroundTruths,
    *,
    image_index: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    angle_gate: float | None = ANGLE_GATE,
) -> np.ndarray:
    """`best_iou` for M images at once: all images' pairs together, no loop over images.

    top1: (M, 5), the top-1 prediction of each image. gts: either a sequence of M arrays
    (N_i, 5), the labels of image i, or one (N, 5) array of every image's labels with
    `image_index` (N,) ints in [0, M) saying whose each row is. predicted: optional (M,)
    bool, False for images without a prediction (their `top1` row is ignored and may be
    NaN; their best IoU is 0). Returns (M,) float64 in [0, 1].
    """
    top1, gt, owner, has_pred = _batch_inputs(top1, gts, image_index, predicted)
    gate = _check_gate(angle_gate)
    rows = np.flatnonzero(has_pred[owner])
    return _best_gated_iou(top1, gt, owner[rows], rows, owner[rows], len(top1), gate)


def success_batch(
    top1: np.ndarray,
    gts: GroundTruths,
    *,
    image_index: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    iou_threshold: float = SUCCESS_IOU,
    angle_gate: float | None = ANGLE_GATE,
) -> np.ndarray:
    """`is_success` for M images at once: (M,) bool. Arguments as in `best_iou_batch`.

    A match is angle difference < gate and IoU > threshold; with the gate applied the
    gated IoU is 0 exactly where the angle fails, so "any match" is "best gated IoU >
    threshold" (the threshold is never negative).
    """
    threshold = _check_threshold(iou_threshold, "iou_threshold")
    best = best_iou_batch(
        top1, gts, image_index=image_index, predicted=predicted, angle_gate=angle_gate
    )
    return best > threshold


def flagged_batch(
    top1: np.ndarray,
    gts: GroundTruths,
    *,
    threshold: float = FLAG_IOU,
    image_index: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    angle_gate: float | None = ANGLE_GATE,
) -> np.ndarray:
    """`is_flagged` for M images at once: (M,) bool. Arguments as in `best_iou_batch`.

    Images without a prediction (`predicted` False) or without labels are flagged.
    """
    threshold = _check_threshold(threshold, "threshold")
    best = best_iou_batch(
        top1, gts, image_index=image_index, predicted=predicted, angle_gate=angle_gate
    )
    return best < threshold


def accuracy(
    top1: np.ndarray,
    gts: GroundTruths,
    *,
    image_index: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    iou_threshold: float = SUCCESS_IOU,
    angle_gate: float | None = ANGLE_GATE,
) -> float:
    """Rectangle-metric accuracy: successes / images, arguments as in `success_batch`.

    Images without a prediction count as failures. Zero images raise InvalidInput rather
    than return a number that means nothing.
    """
    ok = success_batch(
        top1,
        gts,
        image_index=image_index,
        predicted=predicted,
        iou_threshold=iou_threshold,
        angle_gate=angle_gate,
    )
    if ok.size == 0:
        raise InvalidInput("accuracy over zero images is undefined")
    return float(ok.mean())


# --------------------------------------------------------------------------- helpers


def _top1(pred: np.ndarray) -> np.ndarray | None:
    """The first row of a ranked prediction array as (1, 5), or None when it is empty."""
    p = as_grasps(pred)
    return p[:1] if len(p) else None


def _check_gate(angle_gate: float | None) -> float | None:
    if angle_gate is None:
        return None
    try:
        gate = float(angle_gate)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"angle_gate must be a number of degrees or None, got {angle_gate!r}"
        ) from exc
    if not math.isfinite(gate) or gate < 0:
        raise InvalidInput(
            f"angle_gate must be a finite number of degrees >= 0, got {angle_gate!r}"
        )
    return gate


def _check_threshold(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a number in [0, 1], got {value!r}") from exc
    if not 0.0 <= v <= 1.0:
        raise InvalidInput(f"{name} must be a number in [0, 1], got {value!r}")
    return v


def _batch_inputs(
    top1: np.ndarray,
    gts: GroundTruths,
    image_index: np.ndarray | None,
    predicted: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate batched inputs → (top1 (M, 5), gt (N, 5), owner (N,) int, has_pred (M,) bool)."""
    raw = np.asarray(top1, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != 5:
        if not (raw.size == 0 and raw.ndim <= 2):
            raise InvalidInput(
                f"top1 must have shape (M, 5), one prediction per image, got {raw.shape}"
            )
        raw = raw.reshape(0, 5)
    m = len(raw)
    if predicted is None:
        has_pred = np.ones(m, dtype=bool)
    else:
        has_pred = np.asarray(predicted)
        if has_pred.dtype != bool or has_pred.shape != (m,):
            raise InvalidInput(
                f"predicted must be a bool array of shape ({m},), "
                f"got {has_pred.dtype} {has_pred.shape}"
            )
    # Rows of images without a prediction are never read; a unit square keeps them valid.
    filled = np.where(has_pred[:, None], raw, np.array([0.0, 0.0, 0.0, 1.0, 1.0]))
    try:
        top1 = as_grasps(filled)
    except InvalidInput as exc:
        raise InvalidInput(f"top1: {exc}") from exc

    if image_index is None:
        if isinstance(gts, np.ndarray) and gts.ndim == 2:
            raise InvalidInput(
                "gts is one (N, 5) array: pass image_index (N,) saying which image each row is of, "
                "or pass a sequence of one (N_i, 5) array per image"
            )
        per_image = list(gts)
        if len(per_image) != m:
            raise InvalidInput(f"gts has {len(per_image)} images but top1 has {m} predictions")
        arrays = []
        for i, g in enumerate(per_image):
            try:
                arrays.append(as_grasps(g))
            except InvalidInput as exc:
                raise InvalidInput(f"gts[{i}]: {exc}") from exc
        counts = np.array([len(g) for g in arrays], dtype=np.intp)
        gt = np.concatenate(arrays) if arrays else np.zeros((0, 5))
        owner = np.repeat(np.arange(m), counts)
        return top1, gt, owner, has_pred

    try:
        gt = as_grasps(gts)
    except InvalidInput as exc:
        raise InvalidInput(f"gts: {exc}") from exc
    owner = np.asarray(image_index)
    if owner.shape != (len(gt),) or (owner.size and not np.issubdtype(owner.dtype, np.integer)):
        raise InvalidInput(
            f"image_index must be ints of shape ({len(gt)},), one per gts row, "
            f"got {owner.dtype} {owner.shape}"
        )
    owner = owner.astype(np.intp, copy=False)
    if owner.size and (owner.min() < 0 or owner.max() >= m):
        raise InvalidInput(f"image_index values must be in [0, {m}) for {m} predictions")
    return top1, gt, owner, has_pred


def _gated_pair_iou(
    a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, gate: float | None
) -> np.ndarray:
    """Gated IoU of the pairs (a[ia[k]], b[ib[k]]): (P,), zero where gated or apart."""
    out = np.zeros(len(ia))
    k = _candidates(a, b, ia, ib, gate)
    out[k] = _candidate_iou(a, b, ia[k], ib[k])
    return out


def _best_gated_iou(
    a: np.ndarray,
    b: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    gate: float | None,
) -> np.ndarray:
    """Largest gated IoU of the pairs (a[ia[k]], b[ib[k]]) in each group: (n_groups,).

    Only the maximum is needed, so not every overlapping pair goes to shapely: each pair
    gets a cheap upper bound of its IoU, every group's most promising pairs are measured
    first (all groups in one shapely call per round), and pairs whose bound cannot beat
    their group's best so far are dropped. Rounds take 1, 4, 16, ... pairs per group.
    The result is the same maximum as measuring every pair.
    """
    best = np.zeros(n_groups)
    k = _candidates(a, b, ia, ib, gate)
    ia, ib, group = ia[k], ib[k], group[k]
    overlap, inter_ub, aligned = _overlap_bound(a[ia], b[ib])
    ia, ib, group, inter_ub, aligned = (v[overlap] for v in (ia, ib, group, inter_ub, aligned))
    area_a = a[ia, OPENING] * a[ia, JAW]
    area_b = b[ib, OPENING] * b[ib, JAW]
    bound = inter_ub / (area_a + area_b - inter_ub)
    # Aligned pairs need no shapely: their bound is their IoU.
    np.maximum.at(best, group[aligned], np.clip(bound[aligned], 0.0, 1.0))
    rest = np.flatnonzero(~aligned)
    per_round = 1
    while rest.size:
        # Rounding can put a bound a hair under the true IoU; the margin keeps such pairs.
        rest = rest[bound[rest] + _BOUND_MARGIN > best[group[rest]]]
        if rest.size == 0:
            break
        order = rest[np.lexsort((-bound[rest], group[rest]))]
        g = group[order]
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        now, rest = order[rank < per_round], order[rank >= per_round]
        inter = _shapely_intersection(a, b, ia[now], ib[now])
        iou = np.clip(inter / (area_a[now] + area_b[now] - inter), 0.0, 1.0)
        np.maximum.at(best, group[now], iou)
        per_round *= 4
    return best


def _candidates(
    a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, gate: float | None
) -> np.ndarray:
    """Indices k of the pairs that pass the angle gate and whose bounding circles meet."""
    if len(ia) == 0:
        return np.zeros(0, dtype=np.intp)
    ga, gb = a[ia], b[ib]
    keep = _circles_meet(ga, gb)
    if gate is not None:
        keep &= angle_difference(ga[:, THETA], gb[:, THETA]) < gate
    return np.flatnonzero(keep)


def _candidate_iou(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Exact IoU of the pairs (a[ia[k]], b[ib[k]]) that passed the cheap filters: (P,)."""
    out = np.zeros(len(ia))
    if len(ia) == 0:
        return out
    overlap, inter, aligned = _overlap_bound(a[ia], b[ib])
    rotated = overlap & ~aligned
    inter[rotated] = _shapely_intersection(a, b, ia[rotated], ib[rotated])
    area_a = a[ia, OPENING] * a[ia, JAW]
    area_b = b[ib, OPENING] * b[ib, JAW]
    out[overlap] = np.clip(
        inter[overlap] / (area_a[overlap] + area_b[overlap] - inter[overlap]), 0.0, 1.0
    )
    return out


def _shapely_intersection(
    a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray
) -> np.ndarray:
    """Intersection areas of the pairs (a[ia[k]], b[ib[k]]) by shapely, one call: (P,)."""
    if len(ia) == 0:
        return np.zeros(0)
    # One polygon per distinct rectangle, shared by every pair it appears in.
    ua, inv_a = np.unique(ia, return_inverse=True)
    ub, inv_b = np.unique(ib, return_inverse=True)
    pa = shapely.polygons(corners(a[ua]))[inv_a]
    pb = shapely.polygons(corners(b[ub]))[inv_b]
    inter = shapely.area(shapely.intersection(pa, pb))
    # GEOS (3.14) sometimes returns the shared vertices of two nearly coincident rectangles
    # (corners equal up to rounding, e.g. theta vs theta + 180) instead of the polygon.
    # Callers only ask here for pairs known to overlap, so a zero area is that failure:
    # redo those few with snap rounding, which settles coincident vertices.
    redo = np.flatnonzero(inter <= 0)
    if redo.size:
        inter[redo] = shapely.area(shapely.intersection(pa[redo], pb[redo], grid_size=_SNAP_GRID))
    return inter


def _circles_meet(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether the circumscribed circles of broadcastable grasp arrays overlap (…,) bool.

    Disjoint (or merely touching) circles mean a zero-area intersection, the common case.
    """
    reach = 0.5 * (np.hypot(a[..., OPENING], a[..., JAW]) + np.hypot(b[..., OPENING], b[..., JAW]))
    return np.hypot(a[..., X] - b[..., X], a[..., Y] - b[..., Y]) < reach


def _overlap_bound(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Separating-axis test and intersection bound of rectangle pairs (P, 5) × (P, 5).

    Returns `overlap` (P,) bool, `inter_ub` (P,) px² and `aligned` (P,) bool. In A's own
    frame, A is an axis-aligned box and B lies inside its bounding box there; A ∩ that box
    is a box whose area bounds the intersection from above, and the same holds the other
    way round. Two rectangles have a positive-area intersection exactly when both boxes
    are non-empty (projections overlap on all four edge normals; touching counts as
    apart). When the angles differ by an exact multiple of 90° (Jacquard repeats a pose
    with several jaw sizes) B's box is B itself and `inter_ub` is the exact intersection.
    """
    delta = b[:, THETA] - a[:, THETA]
    quarter = np.mod(delta, 180.0)
    aligned = (quarter == 0.0) | (quarter == 90.0)
    rad = np.deg2rad(delta)
    c = np.where(aligned, quarter == 0.0, np.abs(np.cos(rad)))
    s = np.where(aligned, quarter == 90.0, np.abs(np.sin(rad)))
    ta, tb = np.deg2rad(a[:, THETA]), np.deg2rad(b[:, THETA])
    dx, dy = b[:, X] - a[:, X], b[:, Y] - a[:, Y]
    oa, ja = a[:, OPENING] / 2, a[:, JAW] / 2
    ob, jb = b[:, OPENING] / 2, b[:, JAW] / 2
    # B seen from A's frame, and A from B's.
    in_a = _box_overlap(dx * np.cos(ta) + dy * np.sin(ta), oa, ob * c + jb * s)
    in_a *= _box_overlap(-dx * np.sin(ta) + dy * np.cos(ta), ja, ob * s + jb * c)
    in_b = _box_overlap(dx * np.cos(tb) + dy * np.sin(tb), ob, oa * c + ja * s)
    in_b *= _box_overlap(-dx * np.sin(tb) + dy * np.cos(tb), jb, oa * s + ja * c)
    inter_ub = np.minimum(in_a, in_b)
    return inter_ub > 0, inter_ub, aligned


def _box_overlap(offset: np.ndarray, half: np.ndarray, other_half: np.ndarray) -> np.ndarray:
    """Length of [-half, half] ∩ [offset - other_half, offset + other_half], 0 if apart."""
    return np.maximum(
        np.minimum(half, offset + other_half) - np.maximum(-half, offset - other_half), 0.0
    )
