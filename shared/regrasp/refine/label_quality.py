"""A grasp label-quality score per image and per grasp, after cleanlab's ObjectLab.

The paper's flag looks at one number per image: does the top-1 prediction overlap a
label? It cannot see an image whose top-1 matches one label however many grasps the
labels miss, and most of the errors left after a few rounds are exactly those. This
module scores every image from the model's top-k predictions and its labels, in the
manner of ObjectLab (Tkachenko et al., "ObjectLab: Automated Diagnosis of Mislabeled
Images in Object Detection Data", 2023; cleanlab's `object_detection/rank.py`), written
for rotated grasp rectangles:

- a *similarity* between a prediction p and a label l mixes overlap and distance, as
  ObjectLab does, and gates it by angle (a grasp at 60° to another is not the same
  grasp however much they overlap):

      sim(p, l) = max(0, cos 2Δθ) · (α · IoU(p, l) + (1 − α) · exp(−d(p, l) / s))

  with IoU the exact rotated-rectangle IoU, d the distance of the centres and s the
  image's median label opening (the grasp scale), α = `ALPHA`;
- *missing grasp* (ObjectLab's "overlooked"), one score per confident prediction
  (quality ≥ `confident`) that no label matches under the rectangle metric and, when the
  object's mask is known and at least `AGREEMENT` of the image's labels pass the same
  test, that could grasp it (`fits_object`): 1 − q · (1 − max_l sim(p, l)). Low when
  the model is sure of a grasp that no label resembles, even when the top-1 matches a
  label. When the object's mask is known the missing kind also weighs how much of the
  object the labels reach (*coverage*: the share of mask pixels within one grasp scale s
  of a label's centre), through `coverage_score`: grasps missing from a whole part of
  the object (the paper's "labels on part of the object only", or a dropped
  orientation) are visible from the labels alone, where an in-sample model has learnt
  not to predict them. The labels' *grasp coverage* does the same for orientations
  (`grasp_coverage`): the share of the object's antipodal grasps, found on its mask, that
  a label matches; a label set that keeps one orientation group of a box reaches its
  whole mask but half its grasps. It speaks only where the image's labels pass the mask
  test (`AGREEMENT`), and the weaker of the two reaches sets the coverage score. Why the
  two gates (`bench/label_quality.py` on the efficacy bench's round-0
  model, 1,020 images; docs/benchmarks.md): a prediction the metric matches to a label
  is no missing grasp however low its similarity (one 20° off scored like a miss); and
  of the 454 unmatched confident predictions on clean images the reviewer accepts 14,
  while the mask test refuses 441 of them (4 of those valid). On corrupted images it
  passes 90 predictions, 89 of them valid: half the valid ones, at 99% precision;
- *badly placed label* ("badly located"), one score per label that has a confident
  prediction within s of its centre: max over those predictions of sim(l, p). Low when
  the model is confident of a different grasp right where the label is (a rectangle
  along a stick where the model grasps across). A label far from every prediction gets
  no score: with five predictions and a hundred labels, distance alone says nothing;
- *wrong action group*, one score per label when the object's mask is known: a
  parallel gripper closes on the object, so the grasp's centre lies on the object and
  its fingertips (centre ± opening/2 along θ) do not both lie on it: 0 when both do
  (the jaws would close through the object, a grasp along a stick), ½ when one
  fingertip is on it or the centre is off it by more than `CENTRE_TOLERANCE` pixels,
  1 otherwise. The tolerance is the outline's rounding to pixels: without it 18 of 761
  clean bench images had a label centre just off the mask and scored as wrong actions.
  These mask terms describe the synthetic objects' grasps; on the real Jacquard samples
  the labels alone queue 19 of 33 images (10 as wrong actions, 9 as missing grasps for
  their reach, 5 of these by the grasp coverage alone; `bench/real_labels.py`), which
  is why `flag: score` is opt-in and the paper's flag the rounds' default.

Each kind is pooled over its grasps by ObjectLab's softmin (temperature `TEMPERATURE`:
close to the minimum, but two bad grasps weigh more than one), and an image's quality is
the weighted product of the three pooled scores (`WEIGHTS` as exponents, like ObjectLab's
aggregation weights); its *kind* is the weighted kind that lowered it most. All in [0, 1], 1
clean; `issue = 1 − quality` is the review priority (at nearly equal issue wrong rectangles
go first: `regrasp.workflows.rounds.predicting`). The badly-placed kind weighs 0 in
the product by default: measured on the efficacy bench's round-0 model (510 images),
ranking by missing × wrong-action put 80% corrupted images in the top 50 and 57% in the
top 100 (the paper's flag: 40% and 40%), while any weight on badly-placed evidence from
five predictions brought clean images to the top (60% and 56%). It is still computed,
and its suspect labels are shown to the reviewer. Pairs are formed
only within an image and all images of a chunk are computed at once.

numpy, OpenCV (mask filtering) and shapely (through `regrasp.grasp.metrics`) only:
no torch, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from regrasp.grasp.metrics import ANGLE_GATE, SUCCESS_IOU, iou_paired
from regrasp.grasp.rectangles import (
    JAW,
    OPENING,
    THETA,
    X,
    Y,
    angle_difference,
    as_grasps,
)
from regrasp.platform.errors import InvalidInput

__all__ = [
    "AGREEMENT",
    "ALPHA",
    "CONFIDENT",
    "COVERAGE_FULL",
    "COVERAGE_NONE",
    "KINDS",
    "CENTRE_TOLERANCE",
    "FRICTION_DEG",
    "TEMPERATURE",
    "WEIGHTS",
    "ImageQuality",
    "action_group_scores",
    "coverage_score",
    "fits_object",
    "grasp_coverage",
    "label_coverage",
    "label_quality",
    "softmin",
]

#: Weight of IoU against centre distance in the similarity (ObjectLab's alpha).
ALPHA = 0.8
#: Predicted quality from which a prediction counts as confident.
CONFIDENT = 0.3
#: Softmin temperature of the pooling (ObjectLab's default 0.1).
TEMPERATURE = 0.1
#: The kinds of issue an image can be scored for, in the order ties are broken.
KINDS = ("missing", "badly_placed", "wrong_action")
#: Exponent of each kind's pooled score in an image's quality (module docstring).
WEIGHTS = {"missing": 1.0, "badly_placed": 0.0, "wrong_action": 1.0}
#: Half-angle of the friction cone of `fits_object`'s contact test, degrees. Wider than
#: the synthetic objects' physical 15° because normals read off a pixel mask are noisy;
#: on the bench's round-0 model 20° kept 99% precision on valid predictions (30°: 98%).
FRICTION_DEG = 20.0
#: Share of an image's labels that must pass `fits_object` for the test to gate its
#: missing-grasp evidence: a majority. On the efficacy bench 699 of 761 clean images
#: reach it (median share 0.94; wrong-action images 0, and ungated, their unmatched
#: predictions add evidence); of the 33 real Jacquard samples 13 (median 0.41), so on
#: real data the test gates a minority of images (bench/label_quality.py).
AGREEMENT = 0.5
#: Label coverage of the object (`label_coverage`) from which it is no evidence at all,
#: and at which it is complete evidence of missing grasps (`coverage_score` is linear in
#: between). Measured with the labels alone (`bench/real_labels.py`,
#: bench/results/real_labels.json): clean synthetic images are at 0.985 or more;
#: part-only and dropped-orientation images have medians 0.66 and 0.70; the 33 real
#: Jacquard samples a median of 1.00 and a 10th percentile of 0.66 (12 below 0.9). So the
#: score's own flag (an issue of 0.5) falls at coverage 0.7: below every clean synthetic
#: image, at the dropped orientations' median and above the part-only one's.
COVERAGE_FULL = 0.9
COVERAGE_NONE = 0.5
#: The same two bounds hold for `grasp_coverage`, measured the same way (labels alone,
#: 600 synthetic images half corrupted, `bench/results/real_labels.json`): clean images
#: at 1.0 from the 10th percentile (9 of 300 below 0.9), dropped orientations a median
#: of 0.38 and part-only labels 0.58 (69 of 82 and 96 of 98 below 0.9).
#: Orientations tried per candidate centre by `grasp_coverage` (every 15°).
CANDIDATE_ANGLES = 12
# When a label matches a candidate grasp in `grasp_coverage`: the IoU of two parallel
# rectangles of the candidate's size, offset as the two centres are, above the metric's
# `SUCCESS_IOU` (`_parallel_iou`: the metric's IoU for two equal rectangles at one
# angle). Along the jaws the offset counts against the jaw, not the opening: with the
# rule before it (a centre within 0.35 of the median opening, one candidate size),
# labels on one half of a box that is small beside its openings matched the other
# half's grasps too. Labels alone, on four seeds of the efficacy bench's data
# (`bench/real_labels.py`, "grasp_match"), flag 87–90% of part-only images (before:
# 78–86%), 83–90% of dropped orientations (86–88%) and 0.2–0.6% of clean images
# (0.1–0.7%).

#: Most candidate centres per image: the grid's step grows on a large mask to keep it.
CANDIDATE_CENTRES = 400
#: Pixels a label's centre may lie off the object mask (`action_group_scores`).
CENTRE_TOLERANCE = 1
#: Points sampled along each finger and along the jaw pad by `fits_object`.
_SAMPLES = 7
#: Step, in pixels, of the walk along the closing line that finds the contacts.
_STEP = 0.5
#: Pixels around the object's box over which `fits_object` finds the outline's normals
#: (the blur's kernel reaches 4, the Sobel's 1 more).
_MARGIN = 6
#: Steps of the first chunk of a walk along closing lines (`_first_off`).
_CHUNK = 64


@dataclass(frozen=True)
class ImageQuality:
    """The score of one image and what set it.

    quality: in [0, 1], 1 clean. kind: the `KINDS` entry that set it (None when clean
    evidence is all there is). missing/badly_placed/wrong_action: the pooled score of each
    kind (1.0 where the kind had nothing to score; the missing kind's includes
    `coverage_score`). coverage: the share of the object the labels reach
    (`label_coverage`; None without a mask). grasp_coverage: the share of the object's
    antipodal grasps a label matches (`grasp_coverage`; None without a mask, where the
    labels fail the mask test, or where no candidate fits). unmatched: indices of the
    confident predictions that match no label under the rectangle metric (the candidates
    for new labels). suspect_labels: indices of the labels whose badly-placed or wrong-action
    score is below ½, worst first.
    """

    quality: float
    kind: str | None
    missing: float
    badly_placed: float
    wrong_action: float
    unmatched: tuple[int, ...]
    suspect_labels: tuple[int, ...]
    coverage: float | None = None
    grasp_coverage: float | None = None

    @property
    def issue(self) -> float:
        """1 − quality: how likely the labels are wrong (the review priority's main part)."""
        return 1.0 - self.quality

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (stored with the round's prediction)."""
        return {
            "quality": self.quality,
            "kind": self.kind,
            "missing": self.missing,
            "badly_placed": self.badly_placed,
            "wrong_action": self.wrong_action,
            "unmatched": list(self.unmatched),
            "suspect_labels": list(self.suspect_labels),
            "coverage": self.coverage,
            "grasp_coverage": self.grasp_coverage,
        }


def label_quality(
    predictions: Sequence[np.ndarray],
    labels: np.ndarray,
    label_index: np.ndarray,
    *,
    masks: Sequence[np.ndarray | None] | None = None,
    confident: float = CONFIDENT,
    alpha: float = ALPHA,
    temperature: float = TEMPERATURE,
) -> list[ImageQuality]:
    """Score M images at once.

    predictions: M arrays (K_i, 6) `(x, y, theta, opening, jaw, quality)`, best first, in
    image pixels. labels: (N, 5) every label of the M images; label_index: (N,) ints in
    [0, M), whose image each label is (labels of one image in their own order).
    masks: optional M boolean (H, W) object masks (None where unknown), for the
    wrong-action kind and the missing-grasp gate. Returns one `ImageQuality` per image.
    """
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise InvalidInput("alpha must be in [0, 1] and temperature > 0")
    m = len(predictions)
    labels = as_grasps(labels)
    index = np.asarray(label_index, dtype=np.int64).reshape(-1)
    if len(index) != len(labels) or (len(index) and (index.min() < 0 or index.max() >= m)):
        raise InvalidInput("label_index must give an image in [0, M) for every label")
    if masks is not None and len(masks) != m:
        raise InvalidInput(f"{len(masks)} masks for {m} images")

    preds = [np.asarray(p, dtype=np.float64).reshape(-1, 6) for p in predictions]
    p_all = np.concatenate(preds) if m else np.zeros((0, 6))
    p_index = np.repeat(np.arange(m), [len(p) for p in preds])
    p_local = np.concatenate([np.arange(len(p)) for p in preds]) if m else np.zeros(0, int)
    order = np.argsort(index, kind="stable")  # labels grouped by image, own order kept
    l_local = np.empty(len(index), dtype=np.int64)
    counts = np.bincount(index, minlength=m)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    l_local[order] = np.arange(len(index)) - np.repeat(starts, counts)
    # Rows of each image, in their own order: slices, so the per-image pooling below costs
    # its own rows rather than a scan of the whole chunk per image.
    p_ends = np.cumsum([len(p) for p in preds])
    p_rows = [np.arange(end - len(p), end) for p, end in zip(preds, p_ends, strict=True)]
    l_rows = [order[a : a + c] for a, c in zip(starts, counts, strict=True)]

    scale = _grasp_scale(labels, index, p_all, p_index, m)
    # Every (prediction, label) pair of the same image, as two index arrays.
    pi, li = _pairs_within_images(p_index, index, m)
    sim = _similarity(p_all[pi, :5], labels[li], scale[p_index[pi]], alpha)
    match = (
        iou_paired(p_all[pi, :5], labels[li], angle_gate=ANGLE_GATE) > SUCCESS_IOU
        if len(pi)
        else np.zeros(0, dtype=bool)
    )

    q = np.clip(p_all[:, 5], 0.0, 1.0)
    sure = q >= confident
    best_sim = np.zeros(len(p_all))
    np.maximum.at(best_sim, pi, sim)
    matched = np.zeros(len(p_all), dtype=bool)
    np.logical_or.at(matched, pi, match)
    fits = np.ones(len(p_all), dtype=bool)  # no mask: every prediction could grasp
    action = np.full(len(labels), np.nan)
    covered = np.full(m, np.nan)
    reach = np.full(m, np.nan)
    if masks is not None:
        for i, mask in enumerate(masks):  # one vectorised pass per image with a mask
            if mask is None:
                continue
            mask = _as_mask(mask)
            mine_p, mine_l = p_rows[i], l_rows[i]
            action[mine_l] = action_group_scores(labels[mine_l], mask)
            both = fits_object(np.vstack([p_all[mine_p, :5], labels[mine_l]]), mask)
            # The test speaks only where the image's own labels pass it: a dataset whose
            # grasps the mask test does not describe (concave objects, jaws wider than
            # the object) keeps its evidence rather than losing half its valid grasps.
            agreed = not len(mine_l) or both[len(mine_p) :].mean() >= AGREEMENT
            if len(mine_l):
                covered[i] = label_coverage(labels[mine_l], mask, scale=scale[i])
                if agreed:
                    reach[i] = grasp_coverage(labels[mine_l], mask)
            if len(mine_p) and agreed:
                fits[mine_p] = both[: len(mine_p)]
    evidence = sure & ~matched & fits
    missing = np.where(evidence, 1.0 - q * (1.0 - best_sim), np.nan)

    # Only a confident prediction that no label matches speaks against the labels near
    # it: one that matches a label may sit beside other valid grasps of another angle
    # (a disc is grasped through its centre at every angle).
    near = (sure & ~matched)[pi] & (_centre_distance(p_all[pi], labels[li]) <= scale[index[li]])
    placed = np.full(len(labels), -np.inf)
    np.maximum.at(placed, li[near], sim[near])
    placed[np.isinf(placed)] = np.nan

    out = []
    for i in range(m):
        mine_p, mine_l = p_rows[i], l_rows[i]
        pooled = {
            "missing": softmin(missing[mine_p], temperature)
            * min(coverage_score(covered[i]), coverage_score(reach[i])),
            "badly_placed": softmin(placed[mine_l], temperature),
            "wrong_action": softmin(action[mine_l], temperature),
        }
        # The kind named is the one that lowered the quality most (weighted kinds only).
        worst = min((k for k in KINDS if WEIGHTS[k] > 0), key=lambda k: pooled[k] ** WEIGHTS[k])
        quality = float(np.prod([pooled[k] ** WEIGHTS[k] for k in KINDS]))
        unmatched = p_local[mine_p][evidence[mine_p]]
        label_score = np.fmin(placed[mine_l], action[mine_l])
        suspects = np.flatnonzero(label_score < 0.5)
        suspects = l_local[mine_l][suspects[np.argsort(label_score[suspects], kind="stable")]]
        out.append(
            ImageQuality(
                quality=float(quality),
                kind=worst if quality < 1.0 else None,
                missing=float(pooled["missing"]),
                badly_placed=float(pooled["badly_placed"]),
                wrong_action=float(pooled["wrong_action"]),
                unmatched=tuple(int(j) for j in unmatched),
                suspect_labels=tuple(int(j) for j in suspects),
                coverage=None if np.isnan(covered[i]) else float(covered[i]),
                grasp_coverage=None if np.isnan(reach[i]) else float(reach[i]),
            )
        )
    return out


def action_group_scores(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: how well each label's geometry agrees with the object mask.

    A parallel-jaw grasp has its centre on the object and its jaws close from outside
    it: each of three faults costs ½ — the centre more than `CENTRE_TOLERANCE` pixels off
    the object, and each fingertip on it — so a rectangle along a stick (both fingertips
    on it) scores 0, one with a fingertip on the object ½, a clean one 1. Points outside
    the image count as off the object.
    """
    labels = as_grasps(labels)
    mask = _as_mask(mask)
    t = np.deg2rad(labels[:, THETA])
    half = labels[:, OPENING] / 2.0
    dx, dy = half * np.cos(t), half * np.sin(t)
    near = cv2.dilate(mask.astype(np.uint8), np.ones((2 * CENTRE_TOLERANCE + 1,) * 2, np.uint8))
    centre_on = _sample(near.astype(bool), labels[:, X], labels[:, Y])
    tips = _sample(
        mask,
        np.stack([labels[:, X] + dx, labels[:, X] - dx], axis=1),
        np.stack([labels[:, Y] + dy, labels[:, Y] - dy], axis=1),
    )
    return np.clip(1.0 - 0.5 * ~centre_on - 0.5 * tips[:, 0] - 0.5 * tips[:, 1], 0.0, 1.0)


def label_coverage(labels: np.ndarray, mask: np.ndarray, *, scale: float) -> float:
    """The share of the object's pixels within `scale` pixels of a label's centre.

    Jacquard's labels (and a careful annotator's) spread over the whole object; labels
    that reach only part of it miss the grasps of the rest. One distance transform of
    the label centres; 1.0 for an empty mask, 0.0 for no label.
    """
    labels = as_grasps(labels)
    mask = _as_mask(mask)
    if not mask.any():
        return 1.0
    if len(labels) == 0:
        return 0.0
    h, w = mask.shape
    seeds = np.ones((h, w), dtype=np.uint8)
    xs = np.clip(np.round(labels[:, X]).astype(np.int64), 0, w - 1)
    ys = np.clip(np.round(labels[:, Y]).astype(np.int64), 0, h - 1)
    seeds[ys, xs] = 0
    distance = cv2.distanceTransform(seeds, cv2.DIST_L2, 3)
    return float((distance[mask] <= scale).mean())


def grasp_coverage(labels: np.ndarray, mask: np.ndarray) -> float:
    """The share of the object's antipodal grasps that a label matches; NaN when none fits.

    Candidates: a grid of centres on the mask (every quarter of the labels' median opening
    s, coarser on a large mask, `CANDIDATE_CENTRES`), each at `CANDIDATE_ANGLES`
    orientations, in two sizes: the labels' median opening, and one sized to the object
    along that line (moved to the middle of the mask's chord through the centre, opened
    as wide as the labels open on their own chords, up to their widest opening), so that
    a box's two faces, or an L's two arms, both get grasps of their own width. Those that
    `fits_object` keeps are the grasps the outline allows. A label matches a candidate
    within the metric's angle gate and at a parallel-rectangle IoU above `SUCCESS_IOU`
    (`_parallel_iou`). Labels that keep one orientation group (one side of a box) reach
    the whole mask yet match half of these, which `label_coverage` cannot see; labels on
    one half of a small box reach all of it and miss the other half's grasps.
    """
    labels = as_grasps(labels)
    mask = _as_mask(mask)
    if len(labels) == 0 or not mask.any():
        return float("nan")
    scale = float(np.median(labels[:, OPENING]))
    widest = float(labels[:, OPENING].max())
    step = max(1, round(scale / 4), int(np.ceil(np.sqrt(mask.sum() / CANDIDATE_CENTRES))))
    rows, cols = np.nonzero(mask[::step, ::step])
    angles = np.arange(CANDIDATE_ANGLES) * 180.0 / CANDIDATE_ANGLES - 90.0
    fixed = np.zeros((len(rows) * CANDIDATE_ANGLES, 5))
    fixed[:, X] = np.repeat(cols * step, CANDIDATE_ANGLES)
    fixed[:, Y] = np.repeat(rows * step, CANDIDATE_ANGLES)
    fixed[:, THETA] = np.tile(angles, len(rows))
    fixed[:, OPENING] = scale
    fixed[:, JAW] = float(np.median(labels[:, JAW]))

    own_chord, _ = _chords(labels, mask, reach=2.0 * widest)
    on = own_chord > 0
    ratio = float(np.median(labels[on, OPENING] / own_chord[on])) if on.any() else 1.0
    # A side longer than widest / ratio makes the candidate too wide whatever the rest.
    chord, middle = _chords(fixed, mask, reach=widest / max(ratio, 1.0))
    sized = fixed.copy()
    sized[:, [X, Y]] = middle
    sized[:, OPENING] = chord * ratio
    sized = sized[(chord > 0) & (sized[:, OPENING] <= widest)]
    candidates = np.vstack([fixed, sized])
    candidates = candidates[fits_object(candidates, mask)]
    if len(candidates) == 0:
        return float("nan")
    iou = _parallel_iou(candidates, labels)
    turn = angle_difference(candidates[:, None, THETA], labels[None, :, THETA])
    return float(((iou > SUCCESS_IOU) & (turn <= ANGLE_GATE)).any(axis=1).mean())


def coverage_score(coverage: float) -> float:
    """Label coverage as a score in [0, 1], 1 clean: 1 from `COVERAGE_FULL` up, 0 at
    `COVERAGE_NONE` and below, linear in between; 1 when unknown (NaN)."""
    if np.isnan(coverage):
        return 1.0
    return float(np.clip((coverage - COVERAGE_NONE) / (COVERAGE_FULL - COVERAGE_NONE), 0.0, 1.0))


def fits_object(
    grasps: np.ndarray, mask: np.ndarray, *, friction_deg: float = FRICTION_DEG
) -> np.ndarray:
    """(N,) bool: could each rectangle grasp the object whose mask is given?

    The mask version of the physical test a reviewer applies: both fingers (the
    rectangle's short sides) lie off the object, the jaw pad (the centre segment across
    the closing direction) lies on it, and where the closing line first leaves the object
    on each side, the outline's outward normal is within `friction_deg` of the closing
    direction (antipodal contacts; normals from the gradient of the slightly blurred
    mask). Sampled at `_SAMPLES` points per segment and every `_STEP` pixels along the
    closing line, all grasps at once.
    """
    g = as_grasps(grasps)
    mask = _as_mask(mask)
    if not 0.0 < friction_deg < 90.0:
        raise InvalidInput(f"friction_deg must be in (0, 90), got {friction_deg!r}")
    if len(g) == 0:
        return np.zeros(0, dtype=bool)
    t = np.deg2rad(g[:, THETA])
    u = np.stack([np.cos(t), np.sin(t)], axis=1)  # closing direction
    v = np.stack([-np.sin(t), np.cos(t)], axis=1)  # along the jaws
    centre = g[:, None, [X, Y]]
    half_open = g[:, OPENING, None, None] / 2.0
    half_jaw = g[:, JAW, None, None] / 2.0
    along = np.linspace(-1.0, 1.0, _SAMPLES)[None, :, None]

    padded = np.pad(mask, 1)
    ok = np.ones(len(g), dtype=bool)
    for sign in (1.0, -1.0):  # fingers off the object
        finger = centre + sign * half_open * u[:, None] + along * half_jaw * v[:, None]
        ok &= ~_read(padded, finger[..., 0], finger[..., 1]).any(axis=1)
    pad = centre + along * np.maximum(half_jaw - 0.5, 0.0) * v[:, None]
    ok &= _read(padded, pad[..., 0], pad[..., 1]).all(axis=1)

    live = np.flatnonzero(ok)  # only these still need their contacts
    if len(live) == 0:
        return ok
    g, u = g[live], u[live]
    starts = g[:, [X, Y]]
    # Normals from the object's box with a margin wider than the blur and Sobel kernels
    # reach: the same values as over the whole image, at a fraction of the cost.
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y0, x0 = max(int(ys.min()) - _MARGIN, 0), max(int(xs.min()) - _MARGIN, 0)
    box = mask[y0 : int(ys.max()) + _MARGIN + 1, x0 : int(xs.max()) + _MARGIN + 1]
    smooth = cv2.GaussianBlur(box.astype(np.float32), (0, 0), 1.0)
    grad_x = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    grad_y = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    steps = np.arange(int(np.ceil(g[:, OPENING].max() / 2.0 / _STEP)) + 1) * _STEP
    # The walk stops at the finger: steps beyond the half opening count as off the object.
    within = np.searchsorted(steps, g[:, OPENING] / 2.0, side="right")
    cone = np.cos(np.deg2rad(friction_deg))
    for sign in (1.0, -1.0):  # antipodal contacts
        off = _first_off(starts, sign * u, padded, steps, limit=within)
        last = np.maximum(off - 1, 0)  # last step still on the object
        contact = np.round(starts + sign * steps[last, None] * u).astype(np.int64)
        cx = np.clip(np.clip(contact[:, 0], 0, w - 1) - x0, 0, box.shape[1] - 1)
        cy = np.clip(np.clip(contact[:, 1], 0, h - 1) - y0, 0, box.shape[0] - 1)
        nx, ny = -grad_x[cy, cx], -grad_y[cy, cx]  # outward: the mask falls off outside
        facing = sign * (nx * u[:, 0] + ny * u[:, 1]) / (np.hypot(nx, ny) + 1e-9)
        ok[live] &= facing >= cone
    return ok


def softmin(scores: np.ndarray, temperature: float = TEMPERATURE) -> float:
    """ObjectLab's softmin pooling of per-grasp scores; NaNs ignored, 1.0 when none."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[~np.isnan(s)]
    if len(s) == 0:
        return 1.0
    w = np.exp(-(s - s.min()) / temperature)
    return float(np.sum(s * w) / np.sum(w))


# --- private ----------------------------------------------------------------------------


def _pairs_within_images(
    p_index: np.ndarray, l_index: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """(P,), (P,) indices of every prediction–label pair that belong to the same image."""
    if len(p_index) == 0 or len(l_index) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    l_order = np.argsort(l_index, kind="stable")
    l_counts = np.bincount(l_index, minlength=m)
    l_starts = np.concatenate([[0], np.cumsum(l_counts)[:-1]])
    per_pred = l_counts[p_index]
    pi = np.repeat(np.arange(len(p_index)), per_pred)
    offsets = np.arange(len(pi)) - np.repeat(np.cumsum(per_pred) - per_pred, per_pred)
    li = l_order[l_starts[p_index[pi]] + offsets]
    return pi, li


def _similarity(p: np.ndarray, lab: np.ndarray, scale: np.ndarray, alpha: float) -> np.ndarray:
    if len(p) == 0:
        return np.zeros(0)
    overlap = iou_paired(p, lab, angle_gate=None)
    closeness = np.exp(-_centre_distance(p, lab) / scale)
    turn = np.deg2rad(angle_difference(p[:, THETA], lab[:, THETA]))
    agree = np.clip(np.cos(2.0 * turn), 0.0, 1.0)
    return agree * (alpha * overlap + (1.0 - alpha) * closeness)


def _centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.hypot(a[:, X] - b[:, X], a[:, Y] - b[:, Y])


def _grasp_scale(
    labels: np.ndarray, l_index: np.ndarray, preds: np.ndarray, p_index: np.ndarray, m: int
) -> np.ndarray:
    """(M,) the median label opening of each image (of its predictions when unlabelled)."""
    scale = np.ones(m)
    for rows, owner in ((preds, p_index), (labels, l_index)):  # labels win where present
        if len(rows):
            order = np.lexsort((rows[:, OPENING], owner))
            sizes = rows[order, OPENING]
            counts = np.bincount(owner, minlength=m)
            ends = np.cumsum(counts)
            has = counts > 0
            lo = (ends - counts + (counts - 1) // 2)[has]
            hi = (ends - counts + counts // 2)[has]
            scale[has] = 0.5 * (sizes[lo] + sizes[hi])
    return np.maximum(scale, 1.0)


def _chords(grasps: np.ndarray, mask: np.ndarray, *, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the length of the mask's chord through each grasp's centre along its closing
    line (0 for a centre off the mask; a walk of `reach` pixels each way, `_STEP` apart),
    and (N, 2) the chord's middle."""
    t = np.deg2rad(grasps[:, THETA])
    u = np.stack([np.cos(t), np.sin(t)], axis=1)
    steps = np.arange(int(np.ceil(reach / _STEP)) + 1) * _STEP
    padded = np.pad(mask, 1)
    starts = grasps[:, [X, Y]]
    ends = []
    for sign in (1.0, -1.0):
        off = _first_off(starts, sign * u, padded, steps)
        ends.append(np.where(off > 0, steps[np.maximum(off - 1, 0)] + _STEP / 2, 0.0))
    length = np.where((ends[0] > 0) & (ends[1] > 0), ends[0] + ends[1], 0.0)
    middle = starts + ((ends[0] - ends[1]) / 2.0)[:, None] * u
    return length, middle


def _first_off(
    starts: np.ndarray,
    direction: np.ndarray,
    padded: np.ndarray,
    steps: np.ndarray,
    limit: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) the index of the first of `steps` along each ray (start + step * direction)
    whose pixel is off the mask (`_read`'s padded mask); len(steps) where the ray stays
    on it. Walked in chunks, `_CHUNK` steps and then twice as many each time, dropping the
    rays already off: on a large image most leave the object long before the longest walk
    ends, and a small image's walk fits in the first chunk. With `limit` ((N,) step
    counts, a finger's reach) the answer is capped at it and a ray stops once it has
    walked its first `limit` steps, so a narrow grasp does not walk as far as the widest
    one."""
    off = np.full(len(starts), len(steps), dtype=np.int64)
    active = np.arange(len(starts))
    first, size = 0, _CHUNK
    while len(active):
        walk = starts[:, None] + steps[None, first : first + size, None] * direction[:, None]
        inside = _read(padded, walk[..., 0], walk[..., 1])
        first_out = np.argmin(inside, axis=1)  # 0 on a ray that stays on the mask
        on = inside[np.arange(len(inside)), first_out]
        off[active] = np.where(on, len(steps), first + first_out)
        first, size = first + size, 2 * size
        if first >= len(steps):
            break
        keep = on if limit is None else on & (limit[active] > first)
        active, starts, direction = active[keep], starts[keep], direction[keep]
    return off if limit is None else np.minimum(off, limit)


def _parallel_iou(candidates: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(C, N) the IoU of each candidate with a parallel copy of itself at each label's
    centre: the offsets along the closing line and along the jaws shrink the overlap as
    fractions of the opening and of the jaw. The rectangle metric's IoU for grasps of one
    size within the angle gate, at the cost of a subtraction."""
    t = np.deg2rad(candidates[:, THETA])[:, None]
    dx = labels[None, :, X] - candidates[:, None, X]
    dy = labels[None, :, Y] - candidates[:, None, Y]
    along = np.abs(dx * np.cos(t) + dy * np.sin(t)) / candidates[:, None, OPENING]
    across = np.abs(dy * np.cos(t) - dx * np.sin(t)) / candidates[:, None, JAW]
    overlap = np.clip(1.0 - along, 0.0, 1.0) * np.clip(1.0 - across, 0.0, 1.0)
    return overlap / (2.0 - overlap)


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise InvalidInput(f"a mask must be 2-D, got shape {mask.shape}")
    return mask


def _sample(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The mask at the nearest pixel of each point; points outside the image read False."""
    return _read(np.pad(mask, 1), xs, ys)


def _read(padded: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """`_sample` on a mask already padded with one pixel of False: points outside the
    image land on that border, cheaper than masking millions of them."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    cols = np.clip(np.round(xs), -1, w).astype(np.intp) + 1
    rows = np.clip(np.round(ys), -1, h).astype(np.intp) + 1
    return padded[rows, cols]
