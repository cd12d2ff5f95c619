"""GG-CNN grasp maps: the training targets painted from rectangles, and their decoding.

A GG-CNN-family network sees a square image of `INPUT_SIZE` pixels and outputs four maps of
the same size: grasp quality, cos 2θ, sin 2θ and opening / `WIDTH_SCALE`. `encode` paints
those maps from labelled rectangles (the training targets); `decode` turns predicted maps
back into ranked grasps. Both work in network pixels; `regrasp.grasp.imaging.Letterbox` maps
grasps between image pixels and network pixels.

The angle is encoded as (cos 2θ, sin 2θ) because a grasp is the same under θ ± 180°: the
doubled angle makes the target continuous across that wrap. Decoding reads
θ = ½·atan2(sin 2θ, cos 2θ).

numpy + OpenCV only: painting is one `cv2.fillConvexPoly` per rectangle, peaks come from a
vectorised maximum filter (`cv2.dilate`), never a per-pixel loop.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y, as_grasps, corners
from regrasp.platform.errors import InvalidInput

#: Side of the square network input and output maps, in pixels (GG-CNN's 300).
INPUT_SIZE = 300
#: The width map holds opening / WIDTH_SCALE (network pixels), so it is about in [0, 1].
WIDTH_SCALE = 150.0
#: Fraction of the opening painted as positive quality, centred on the grasp (GG-CNN: 1/3).
CENTRE_FRACTION = 1.0 / 3.0
#: Gaussian sigma applied to the quality map before peak finding, in pixels of the
#: 300² input (GG-CNN: 2); `decode_scale` scales it to other input sizes.
QUALITY_SIGMA = 2.0
#: Smallest distance between two decoded peaks, in pixels of the 300² input (GG-CNN's
#: peak_local_max: 20); `decode_scale` scales it to other input sizes.
MIN_DISTANCE = 20
#: Decoded opening and jaw are at least this many network pixels, so grasps stay valid.
MIN_SIZE_PX = 1.0

# Smallest quality smoothing of `decode_scale`, px: measured on the real samples at 64².
_MIN_SIGMA = 0.7
# Relative tolerance under which smoothed quality values count as one flat top.
_PLATEAU_TOL = 1e-5
# Sub-pixel precision of cv2.fillConvexPoly: coordinates are given in 1/2**_SHIFT pixels.
_SHIFT = 4


def decode_scale(input_size: int) -> tuple[float, int]:
    """(sigma, min_distance) of `decode` for a network of `input_size`² pixels.

    GG-CNN's σ = 2 and min_distance = 20 are 300²-pixel values: applied unchanged to a 64²
    map they blur a 3-pixel grasp away (the ground-truth round trip drops to 0.89) and
    let one peak suppress a third of the image, so "top-5" returns about one grasp. Both
    scale with the input side; σ stays at least `_MIN_SIGMA` px (a narrower Gaussian no
    longer steadies a peak against one pixel of rounding: at 64² the real samples' round
    trip fell from 1.0 to 0.97), and min_distance is at least 1 so neighbouring peaks can
    still be told apart. Training, evaluation, rounds and serving all call this, so a
    model decodes the same wherever it runs.
    """
    if not isinstance(input_size, int | np.integer) or input_size <= 0:
        raise InvalidInput(f"input size must be a positive integer, got {input_size!r}")
    factor = float(input_size) / INPUT_SIZE
    sigma = max(QUALITY_SIGMA * factor, _MIN_SIGMA)
    return sigma, max(1, int(round(MIN_DISTANCE * factor)))


class GraspMaps(NamedTuple):
    """The four GG-CNN maps, each float32 (S, S): `GraspMaps(*net_output)` or `decode(*maps)`."""

    quality: np.ndarray
    """1 where a rectangle's centre third was painted, 0 elsewhere."""
    cos2: np.ndarray
    """cos 2θ of the rectangle painted there (0 outside)."""
    sin2: np.ndarray
    """sin 2θ of the rectangle painted there (0 outside)."""
    width: np.ndarray
    """opening / width_scale of the rectangle painted there, clipped to [0, 1] (0 outside)."""

    def as_array(self) -> np.ndarray:
        """The maps stacked as one (4, S, S) float32 array, in field order (the network's)."""
        return np.stack(self, axis=0).astype(np.float32, copy=False)


def encode(
    grasps: np.ndarray,
    *,
    size: int = INPUT_SIZE,
    width_scale: float = WIDTH_SCALE,
    centre_fraction: float = CENTRE_FRACTION,
) -> GraspMaps:
    """Paint GG-CNN target maps from (N, 5) grasps given in network pixels.

    Each rectangle is shrunk along its opening to `centre_fraction` (GG-CNN's third) and
    kept at its full jaw across, then filled: the target says "a gripper centred here, at
    this angle and opening, would grasp", which is only true near the rectangle's centre
    line. Where rectangles overlap, the later one wins (file order, as GG-CNN paints);
    Jacquard repeats a pose with several jaw sizes, which then paint the same angle and
    opening anyway.

    The width map is opening / `width_scale`, clipped to [0, 1] as GG-CNN does: openings
    beyond `width_scale` network pixels (half the 300² image) are not representable.
    Rectangles partly outside the image are clipped; an empty array gives all-zero maps.
    """
    if not isinstance(size, int | np.integer) or size <= 0:
        raise InvalidInput(f"map size must be a positive integer, got {size!r}")
    if not width_scale > 0:
        raise InvalidInput(f"width_scale must be positive, got {width_scale!r}")
    if not 0 < centre_fraction <= 1:
        raise InvalidInput(f"centre_fraction must be in (0, 1], got {centre_fraction!r}")
    g = as_grasps(grasps)

    # Paint the 1-based index of each rectangle, then read every map by fancy indexing:
    # one fillConvexPoly per rectangle and no per-pixel work in Python.
    index = np.zeros((size, size), dtype=np.int32)
    shrunk = g.copy()
    shrunk[:, OPENING] *= centre_fraction
    quads = np.round(corners(shrunk) * (1 << _SHIFT)).astype(np.int32)
    for i, quad in enumerate(quads, start=1):
        cv2.fillConvexPoly(index, quad, i, lineType=cv2.LINE_8, shift=_SHIFT)

    two_theta = np.deg2rad(2.0 * g[:, THETA])
    inside = index > 0
    pick = index[inside] - 1
    maps = [np.zeros((size, size), dtype=np.float32) for _ in range(4)]
    maps[0][inside] = 1.0
    maps[1][inside] = np.cos(two_theta)[pick]
    maps[2][inside] = np.sin(two_theta)[pick]
    maps[3][inside] = np.clip(g[:, OPENING] / width_scale, 0.0, 1.0)[pick]
    return GraspMaps(*maps)


def decode(
    quality: np.ndarray,
    cos2: np.ndarray,
    sin2: np.ndarray,
    width: np.ndarray,
    *,
    k: int = 5,
    threshold: float = 0.1,
    sigma: float = QUALITY_SIGMA,
    min_distance: int = MIN_DISTANCE,
    jaw: float | None = None,
    jaw_ratio: float = 0.5,
    width_scale: float = WIDTH_SCALE,
    angle_sigma: float = 0.0,
    width_sigma: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked grasps from four (S, S) maps: ((K, 5) float64 in network px, (K,) scores).

    The quality map is smoothed with a Gaussian of `sigma` px (0 disables) and its local
    maxima above `threshold` are the candidates: pixels equal to the maximum of their
    (2·min_distance + 1)² neighbourhood, a flat top counting as one peak at its centre.
    Candidates are taken best first, each suppressing the others within `min_distance` px
    (Chebyshev). At most `k` grasps; K may be 0.

    At each peak: θ = ½·atan2(sin 2θ, cos 2θ) in degrees in [-90, 90), opening =
    width·`width_scale`, jaw = `jaw` px when given, else opening·`jaw_ratio` (GG-CNN's
    opening/2). Opening and jaw are at least `MIN_SIZE_PX`. The score is the smoothed
    quality. GG-CNN also blurs its angle (σ 2) and width (σ 1) maps; `angle_sigma` blurs
    cos 2θ and sin 2θ instead (so the 180° wrap does no harm), `width_sigma` the width map;
    both are off by default.
    """
    q, c, s, w = _check_maps(quality, cos2, sin2, width)
    if not isinstance(k, int | np.integer) or k < 0:
        raise InvalidInput(f"k must be a non-negative integer, got {k!r}")
    if not isinstance(min_distance, int | np.integer) or min_distance < 0:
        raise InvalidInput(f"min_distance must be a non-negative integer, got {min_distance!r}")
    if min(sigma, angle_sigma, width_sigma) < 0:
        raise InvalidInput("smoothing sigmas must be >= 0")
    if not width_scale > 0 or not jaw_ratio > 0 or (jaw is not None and not jaw > 0):
        raise InvalidInput("width_scale, jaw_ratio and jaw must be positive")

    q = _smooth(q, sigma)
    peaks, scores = _peaks(q, k=int(k), threshold=threshold, min_distance=int(min_distance))
    rows, cols = peaks[:, 0], peaks[:, 1]
    c, s, w = _smooth(c, angle_sigma), _smooth(s, angle_sigma), _smooth(w, width_sigma)

    theta = np.rad2deg(0.5 * np.arctan2(s[rows, cols], c[rows, cols]).astype(np.float64))
    opening = np.maximum(w[rows, cols].astype(np.float64) * width_scale, MIN_SIZE_PX)
    jaws = np.full_like(opening, jaw) if jaw is not None else opening * jaw_ratio
    out = np.empty((len(rows), 5), dtype=np.float64)
    out[:, X] = cols
    out[:, Y] = rows
    out[:, THETA] = (theta + 90.0) % 180.0 - 90.0
    out[:, OPENING] = opening
    out[:, JAW] = np.maximum(jaws, MIN_SIZE_PX)
    return out, scores.astype(np.float64)


def _check_maps(*maps: np.ndarray) -> list[np.ndarray]:
    arrays = [np.asarray(m) for m in maps]
    shape = arrays[0].shape
    if len(shape) != 2 or 0 in shape:
        raise InvalidInput(f"grasp maps must be non-empty 2-D arrays, got shape {shape}")
    for name, a in zip(GraspMaps._fields, arrays, strict=True):
        if a.shape != shape:
            raise InvalidInput(f"map {name} has shape {a.shape}, expected {shape}")
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise InvalidInput(f"map {name} must be numeric and finite")
    return [a.astype(np.float32, copy=False) for a in arrays]


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    # Kernel truncated at 4 sigma and edges replicated, like skimage's gaussian(mode='nearest').
    if sigma == 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)


def _peaks(
    q: np.ndarray, *, k: int, threshold: float, min_distance: int
) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) int (row, col) peaks best first and their (K,) values.

    A candidate is a pixel within `_PLATEAU_TOL` (relative) of its neighbourhood maximum.
    Smoothing a painted region wider than the Gaussian leaves a flat top whose pixels
    differ only by rounding; each connected group of candidates is one peak, placed at
    the group's pixel nearest its centroid (the rectangle's centre for a painted target),
    rather than at whichever pixel rounding happened to favour.
    """
    empty = (np.zeros((0, 2), dtype=np.intp), np.zeros(0, dtype=q.dtype))
    if k == 0:
        return empty
    kernel = np.ones((2 * min_distance + 1,) * 2, dtype=np.uint8)
    local_max = cv2.dilate(q, kernel, borderType=cv2.BORDER_REPLICATE)
    candidate = (q >= local_max - _PLATEAU_TOL * np.abs(local_max)) & (q > threshold)
    if not candidate.any():
        return empty
    _, labels, _, centroids = cv2.connectedComponentsWithStats(
        candidate.astype(np.uint8), connectivity=8
    )
    rows, cols = np.nonzero(candidate)
    group = labels[rows, cols]
    d2 = (cols - centroids[group, 0]) ** 2 + (rows - centroids[group, 1]) ** 2
    by_group = np.lexsort((d2, group))
    _, first = np.unique(group[by_group], return_index=True)
    pick = by_group[first]  # one pixel per group: the nearest to its centroid
    cand = np.stack([rows[pick], cols[pick]], axis=1)
    values = q[cand[:, 0], cand[:, 1]]
    order = np.argsort(-values, kind="stable")
    cand, values = cand[order], values[order]

    keep: list[int] = []
    alive = np.ones(len(cand), dtype=bool)
    # At most k rounds, each vectorised over all candidates.
    while len(keep) < k and alive.any():
        best = int(np.argmax(alive))  # first alive = highest value (sorted)
        keep.append(best)
        alive &= np.abs(cand - cand[best]).max(axis=1) > min_distance
    return cand[keep], values[keep]
