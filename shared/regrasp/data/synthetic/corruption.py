"""Label corruption in the three ways "Jacquard V2" found in Jacquard, with the truth kept.

The paper's review found two kinds of faulty images: *missing labels* (the object is
graspable in places no rectangle covers) and *annotation errors* (rectangles that are not
grasps at all). It names three ways they arise, which are the paper's corruption kinds:

- ``one_orientation`` (missing label): only the grasps of one orientation group are
  labelled (one side of a box, one arm of an L, one angle through a disc);
- ``part_only`` (missing label): only the grasps on one side of a line through the object
  are labelled (one half of a stick, of a rim);
- ``wrong_action`` (annotation error): every rectangle is a wrong action, e.g. a grasp
  along a stick instead of across it, or a rectangle off the object.

A fourth, ``stray_rectangles`` (beyond the paper, category annotation error), adds a few
wrong rectangles to otherwise clean labels: the case the "fix" decision exists for.

Every wrong rectangle is built to be both physically invalid (`geometry.grasp_validity`)
and no match for any true grasp under the rectangle metric, so a careful reviewer can tell
it apart. Kinds that cannot apply to an object (one orientation of a stick, one part of a
disc whose grasps all share the centre) fall back to another applicable kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from regrasp.data.synthetic.geometry import grasp_validity
from regrasp.grasp.metrics import SUCCESS_IOU, iou
from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y, as_grasps
from regrasp.platform.errors import InvalidInput

#: The paper's three kinds, in the order the generator cycles through them.
PAPER_KINDS = ("one_orientation", "part_only", "wrong_action")
#: Every kind this module can apply.
KINDS = (*PAPER_KINDS, "stray_rectangles")
#: Category of each kind: what the paper would call the image.
CATEGORY = {
    "one_orientation": "missing_label",
    "part_only": "missing_label",
    "wrong_action": "annotation_error",
    "stray_rectangles": "annotation_error",
}
#: The decision a careful reviewer makes on a flagged image of each kind.
EXPECTED_DECISION = {
    "one_orientation": "missing_label",
    "part_only": "missing_label",
    "wrong_action": "annotation_error",
    "stray_rectangles": "fix",
}


@dataclass(frozen=True, eq=False)
class Corruption:
    """Corrupted labels of one image and what was done.

    labels: (M, 5) the rectangles to write in place of the truth. wrong_labels: indices
    into `labels` of the rectangles that are not grasps (all of them for wrong_action,
    the inserted ones for stray_rectangles, none for the missing-label kinds). detail:
    what was chosen (kept orientation group, split direction), JSON-serialisable.
    """

    kind: str
    category: str
    labels: np.ndarray
    wrong_labels: list[int] = field(default_factory=list)
    detail: dict = field(default_factory=dict)


def choose_corrupted(
    images: int,
    fraction: float,
    *,
    seed: int,
    kinds: tuple[str, ...] = PAPER_KINDS,
) -> dict[int, str]:
    """Which images to corrupt and how: {image number: kind}, exactly round(fraction × images).

    The images are drawn without replacement from `seed`; the kinds are spread as evenly
    as the count allows (cycled, then shuffled), so every kind appears once the count
    reaches len(kinds).
    """
    if images < 0:
        raise InvalidInput(f"images must be >= 0, got {images}")
    if not 0.0 <= fraction <= 1.0:
        raise InvalidInput(f"corrupt fraction must be in [0, 1], got {fraction!r}")
    _check_kinds(kinds)
    count = round(fraction * images)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(images, size=count, replace=False)
    assigned = [kinds[i % len(kinds)] for i in range(count)]
    order = rng.permutation(count)
    return {int(chosen[i]): assigned[order[i]] for i in range(count)}


def applicable_kinds(grasps: np.ndarray, groups: np.ndarray) -> list[str]:
    """The kinds that can corrupt these true grasps (N, 5) with orientation groups (N,)."""
    g = as_grasps(grasps)
    out = []
    if len(np.unique(groups)) >= 2:
        out.append("one_orientation")
    centres = np.unique(np.round(g[:, [X, Y]], 1), axis=0)
    if len(centres) >= 2 and np.ptp(centres, axis=0).max() > 2.0:
        out.append("part_only")
    out += ["wrong_action", "stray_rectangles"]
    return out


def corrupt(
    grasps: np.ndarray,
    groups: np.ndarray,
    shape: shapely.Polygon,
    *,
    kind: str,
    max_opening: float,
    image_size: int,
    seed: int,
) -> Corruption:
    """Corrupt one image's true grasps (N, 5) the `kind` way, or an applicable fallback.

    groups: (N,) orientation group of each grasp; shape: the object outline (pixels);
    max_opening: gripper stroke in pixels; image_size: side in pixels (wrong rectangles
    stay inside the image). The fallback for an inapplicable kind is the next applicable
    kind in `KINDS` order after it (cyclically). Deterministic in `seed`.
    """
    _check_kinds((kind,))
    g = as_grasps(grasps)
    groups = np.asarray(groups)
    if len(g) == 0 or groups.shape != (len(g),):
        raise InvalidInput("corrupt needs at least one grasp and one group per grasp")
    usable = applicable_kinds(g, groups)
    start = KINDS.index(kind)
    order = [KINDS[(start + i) % len(KINDS)] for i in range(len(KINDS))]
    chosen = next(k for k in order if k in usable)
    rng = np.random.default_rng(seed)
    if chosen == "one_orientation":
        return _one_orientation(rng, g, groups)
    if chosen == "part_only":
        return _part_only(rng, g)
    wrong = wrong_rectangles(g, shape, max_opening=max_opening, image_size=image_size)
    if chosen == "wrong_action":
        return Corruption(
            kind=chosen,
            category=CATEGORY[chosen],
            labels=wrong,
            wrong_labels=list(range(len(wrong))),
            detail={"replaced": len(g)},
        )
    return _stray(rng, g, wrong)


def wrong_rectangles(
    grasps: np.ndarray, shape: shapely.Polygon, *, max_opening: float, image_size: int
) -> np.ndarray:
    """Wrong-action versions of true grasps: (M, 5), each invalid and matching no truth.

    Each true row is turned 90° about its centre (a grasp along a stick), else 45°, else
    moved across the closing direction until its centre leaves the object; the first
    version that fails `grasp_validity`, matches no true grasp under the rectangle metric
    and stays inside the image is kept. Rows with no such version are dropped.
    """
    g = as_grasps(grasps)
    remaining = np.arange(len(g))
    keep_rows = np.zeros(len(g), dtype=bool)
    result = np.zeros_like(g)
    for variant in _variants(g, shape):
        if remaining.size == 0:
            break
        cand = variant[remaining]
        ok = ~grasp_validity(shape, cand, max_opening=max_opening)
        ok &= iou(cand, g).max(axis=1) <= SUCCESS_IOU
        ok &= (cand[:, [X, Y]] >= 0).all(axis=1) & (cand[:, [X, Y]] < image_size).all(axis=1)
        result[remaining[ok]] = cand[ok]
        keep_rows[remaining[ok]] = True
        remaining = remaining[~ok]
    out = result[keep_rows]
    if len(out) == 0:  # pragma: no cover - turning a valid grasp 90° always breaks it here
        raise InvalidInput("no wrong-action rectangle could be built for this object")
    return np.round(out, 4)


# --------------------------------------------------------------------------- helpers


def _check_kinds(kinds: tuple[str, ...]) -> None:
    if not kinds:
        raise InvalidInput("at least one corruption kind is needed")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InvalidInput(f"unknown corruption kind(s) {unknown}; known: {', '.join(KINDS)}")


def _one_orientation(rng: np.random.Generator, g: np.ndarray, groups: np.ndarray) -> Corruption:
    group = int(rng.choice(np.unique(groups)))
    keep = groups == group
    return Corruption(
        kind="one_orientation",
        category=CATEGORY["one_orientation"],
        labels=g[keep],
        detail={"group": group, "dropped": int((~keep).sum())},
    )


def _part_only(rng: np.random.Generator, g: np.ndarray) -> Corruption:
    """Keep the grasps whose centres lie on one side of a line through the object."""
    centres = g[:, [X, Y]]
    for _ in range(32):
        direction = float(rng.uniform(0, 180))
        a = np.deg2rad(direction)
        proj = centres @ np.array([np.cos(a), np.sin(a)])
        cut = float(np.median(proj))
        side = proj > cut if rng.random() < 0.5 else proj <= cut
        if side.any() and not side.all():
            return Corruption(
                kind="part_only",
                category=CATEGORY["part_only"],
                labels=g[side],
                detail={"direction_deg": round(direction, 4), "cut": round(cut, 4)},
            )
    raise InvalidInput("grasps cannot be split into parts")  # pragma: no cover


def _stray(rng: np.random.Generator, g: np.ndarray, wrong: np.ndarray) -> Corruption:
    """Insert 1–3 wrong rectangles (fewer than a third of the labels) among clean labels."""
    n = int(min(rng.integers(1, 4), max(1, len(g) // 3), len(wrong)))
    strays = wrong[rng.choice(len(wrong), size=n, replace=False)]
    total = len(g) + n
    where = np.sort(rng.choice(total, size=n, replace=False))
    labels = np.zeros((total, 5))
    is_stray = np.zeros(total, dtype=bool)
    is_stray[where] = True
    labels[is_stray] = strays
    labels[~is_stray] = g
    return Corruption(
        kind="stray_rectangles",
        category=CATEGORY["stray_rectangles"],
        labels=labels,
        wrong_labels=[int(i) for i in where],
        detail={"added": n},
    )


def _variants(g: np.ndarray, shape: shapely.Polygon) -> list[np.ndarray]:
    """Candidate wrong versions of every row, in order of preference, each (N, 5)."""
    out = []
    for turn in (90.0, 45.0, -45.0):
        v = g.copy()
        v[:, THETA] = (v[:, THETA] + turn + 90.0) % 180.0 - 90.0
        out.append(v)
    # Slide across the closing direction past the object's extent: centre off the object.
    minx, miny, maxx, maxy = shape.bounds
    extent = float(np.hypot(maxx - minx, maxy - miny))
    t = np.deg2rad(g[:, THETA])
    across = np.stack([-np.sin(t), np.cos(t)], axis=1)
    for step in (0.35, 0.6, -0.35, -0.6):
        v = g.copy()
        v[:, [X, Y]] += across * (step * extent + np.sign(step) * g[:, JAW, None] / 2)
        out.append(v)
    # Too narrow to hold anything: fingers inside the object (for what remains).
    v = g.copy()
    v[:, OPENING] *= 0.35
    v[:, THETA] = (v[:, THETA] + 35.0 + 90.0) % 180.0 - 90.0
    out.append(v)
    return out
