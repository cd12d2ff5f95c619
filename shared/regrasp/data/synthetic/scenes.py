"""Jacquard-like synthetic scenes: object families with exact grasps, rendered as RGB-D.

Jacquard itself cannot be downloaded here, so the generator renders scenes that look and
measure like it (1024² images, a grey textured table seen from about 1.5 m, one object of
a few centimetres near the centre, 40–150 grasp lines per image with each pose repeated at
2–4 jaw sizes) but whose ground truth is exact: every object is a known outline, and every
ground-truth grasp passes `geometry.grasp_validity` against it.

Families differ in grasp structure, which is what the paper's corruptions act on:

- ``stick``   pens and rods: grasps across the stick only, anywhere along it;
- ``box``     rectangles: across each side that fits the gripper (max opening);
- ``disc``    cylinders seen from the top: any angle through the centre;
- ``ring``    annuli: across the rim, all around it;
- ``lshape``  two perpendicular arms: across each arm;
- ``tshape``  a bar and a stem: across the bar on both sides of the stem and across the stem.

An object is an `ObjectModel` in *reference pixels* (those of a 1024² image), centred on
the origin; `render_scene` places one pose of it (rotation, position) in an image of any
size, scaling outline and grasps with the size, so several images of one object are the
same object seen in different poses, as in Jacquard.

Rendering is vectorised numpy/OpenCV over the object's bounding box (heights from a
distance transform, Lambertian shading from height gradients, a soft shadow) on a
full-image table (low-frequency blotches, grain, a lighting gradient, a tilted plane).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np
import shapely
import shapely.affinity

from regrasp.data.synthetic.geometry import grasp_validity, transform_grasps, transform_shape
from regrasp.grasp.rectangles import JAW, OPENING, X, Y
from regrasp.platform.errors import InvalidInput

#: Object families, in a fixed order (the generator cycles through them).
FAMILIES = ("stick", "box", "disc", "ring", "lshape", "tshape")
#: Image side, pixels, in which object models are expressed (Jacquard's 1024).
REFERENCE_SIZE = 1024
#: Default gripper stroke in reference pixels (Jacquard's largest opening is 271.5 px).
DEFAULT_MAX_OPENING = 260.0
#: Size of one reference pixel on the table, metres (a 1024² image covers about 0.5 m).
PIXEL_M = 0.5e-3
#: Jaw sizes of a pose are multiples of a base of about 13 px, as in Jacquard.
_JAW_MULTIPLES = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
# Free space the fingers keep from the object when the opening is chosen, reference px.
_CLEARANCE = 6.0


@dataclass(frozen=True, eq=False)
class ObjectModel:
    """One synthetic object, in reference pixels, centred on the origin.

    shape: the outline (a shapely Polygon, holes allowed). grasps: (N, 5) ground-truth
    grasps in the same frame, each valid against `shape` (see `geometry.grasp_validity`).
    groups: (N,) int, the orientation group of each grasp (grasps of one group close
    along the same direction: one side of a box, one arm of an L). The rest describes the
    look: `profile` "flat" (a slab `height_m` tall with a bevel) or "round" (a cylinder
    lying down, radius `round_radius` reference px), two colours (RGB in [0, 1]) and a
    pattern ("plain", "stripes", "two_tone").
    """

    family: str
    shape: shapely.Polygon
    grasps: np.ndarray
    groups: np.ndarray
    max_opening: float
    profile: str
    height_m: float
    round_radius: float
    colors: np.ndarray
    pattern: str
    stripe_period: float

    @property
    def reach(self) -> float:
        """Largest distance from the origin of the outline or of any grasp's corners, ref px."""
        xy = shapely.get_coordinates(self.shape)
        outline = float(np.hypot(xy[:, 0], xy[:, 1]).max())
        g = self.grasps
        corner = np.hypot(g[:, X], g[:, Y]) + 0.5 * np.hypot(g[:, OPENING], g[:, JAW])
        return max(outline, float(corner.max()))


@dataclass(frozen=True, eq=False)
class Scene:
    """One rendered image of an object, everything in the image's pixel frame.

    rgb: (S, S, 3) uint8, RGB order. perfect_depth: (S, S) float32 metres from the camera.
    stereo_depth: (S, S) float32 metres, perfect depth plus noise, -1 where invalid.
    mask: (S, S) uint8, 255 on the object, 0 elsewhere. grasps: (N, 5) the exact ground
    truth in pixels (values rounded to 4 decimals, as written). groups: (N,) orientation
    group of each grasp. shape: the object outline in pixels. max_opening: the gripper
    stroke in pixels at this size. angle_deg / center: the pose the object was placed in.
    """

    family: str
    rgb: np.ndarray
    perfect_depth: np.ndarray
    stereo_depth: np.ndarray
    mask: np.ndarray
    grasps: np.ndarray
    groups: np.ndarray
    shape: shapely.Polygon
    max_opening: float
    angle_deg: float
    center: tuple[float, float]

    @property
    def size(self) -> int:
        """Image side in pixels."""
        return int(self.mask.shape[0])


def make_object(family: str, *, seed: int, max_opening: float = DEFAULT_MAX_OPENING) -> ObjectModel:
    """Draw one object of `family` (dimensions, look and exact grasps) from `seed`.

    max_opening: gripper stroke in reference pixels; sides of a box wider than it fits are
    not labelled, as in Jacquard (a phone is grasped across its width only). The same
    family, seed and max_opening always give the same object.
    """
    if family not in FAMILIES:
        raise InvalidInput(f"unknown object family {family!r}; known: {', '.join(FAMILIES)}")
    if not 60.0 <= max_opening <= 600.0:
        raise InvalidInput(f"max_opening must be in [60, 600] reference px, got {max_opening!r}")
    rng = np.random.default_rng(seed)
    shape, poses, groups = _FAMILY_BUILDERS[family](rng, max_opening)
    grasps, groups = _with_jaws(rng, shape, poses, groups, max_opening)
    if len(grasps) == 0:  # pragma: no cover - the dimension ranges always leave grasps
        raise InvalidInput(f"{family} object from seed {seed} has no valid grasp")
    profile = "round" if family in ("stick", "ring") else "flat"
    round_radius = _round_radius(family, shape)
    return ObjectModel(
        family=family,
        shape=shape,
        grasps=grasps,
        groups=groups,
        max_opening=float(max_opening),
        profile=profile,
        height_m=float(rng.uniform(0.012, 0.07)),
        round_radius=round_radius,
        colors=_colors(rng),
        pattern=str(rng.choice(["plain", "plain", "stripes", "two_tone"])),
        stripe_period=float(rng.uniform(10.0, 40.0)),
    )


def render_scene(
    obj: ObjectModel | str | None = None,
    *,
    size: int = REFERENCE_SIZE,
    seed: int = 0,
    max_opening: float = DEFAULT_MAX_OPENING,
) -> Scene:
    """Render one image of an object in a pose drawn from `seed`.

    obj: an `ObjectModel` (several images of one object: same model, different seeds), a
    family name (the object is drawn from `seed` too), or None (family drawn from `seed`).
    size: image side in pixels; outline, grasps and max opening scale with size / 1024.
    max_opening: reference pixels, used only when the object is drawn here. Deterministic:
    the same arguments give the same arrays, bit for bit.
    """
    if not 64 <= int(size) <= 4096:
        raise InvalidInput(f"size must be in [64, 4096] pixels, got {size!r}")
    size = int(size)
    rng = np.random.default_rng(seed)
    if obj is None:
        obj = str(rng.choice(FAMILIES))
    if isinstance(obj, str):
        obj = make_object(obj, seed=int(rng.integers(2**63)), max_opening=max_opening)
    scale = size / REFERENCE_SIZE

    angle = float(rng.uniform(-180.0, 180.0))
    free = size / 2 - obj.reach * scale - 2
    if free < 0:  # pragma: no cover - object dimensions keep reach below 512 ref px
        raise InvalidInput(f"{obj.family} object does not fit a {size}² image")
    off = min(free, 0.18 * size)
    center = (size / 2 + float(rng.uniform(-off, off)), size / 2 + float(rng.uniform(-off, off)))
    shape = transform_shape(obj.shape, angle_deg=angle, scale=scale, offset=center)
    # Rounded like the grasps, so the outline written to the manifest reads back exactly.
    shape = shapely.transform(shape, lambda xy: np.round(xy, 4))
    grasps = np.round(transform_grasps(obj.grasps, angle_deg=angle, scale=scale, offset=center), 4)

    look = _draw_look(rng)
    mask, alpha, height_m, roi = _object_layers(obj, shape, size, scale)
    perfect = _table_depth(rng, size)
    y0, y1, x0, x1 = roi
    perfect[y0:y1, x0:x1] -= height_m
    stereo = _stereo(rng, perfect, mask, roi, scale)
    rgb = _rgb(rng, obj, look, alpha, height_m, roi, size, scale, angle, center)
    return Scene(
        family=obj.family,
        rgb=rgb,
        perfect_depth=perfect,
        stereo_depth=stereo,
        mask=mask,
        grasps=grasps,
        groups=obj.groups.copy(),
        shape=shape,
        max_opening=obj.max_opening * scale,
        angle_deg=angle,
        center=center,
    )


# --------------------------------------------------------------------------- object families
# Each builder returns (outline, poses (P, 4) as x, y, theta, opening, groups (P,)).

_Built = tuple[shapely.Polygon, np.ndarray, np.ndarray]


def _stick(rng: np.random.Generator, max_opening: float) -> _Built:
    length, width = rng.uniform(220, 520), rng.uniform(12, 30)
    shape = shapely.box(-length / 2, -width / 2, length / 2, width / 2)
    n = max(16, int(length / 8))
    xs = np.linspace(-length / 2 + 12, length / 2 - 12, n) + rng.uniform(-3, 3, n)
    dy = rng.uniform(-width / 8, width / 8, n)
    theta = 90.0 + rng.uniform(-2, 2, n)
    opening = _opening(rng, width + 2 * np.abs(dy), max_opening)
    poses = np.column_stack([xs, dy, theta, opening])
    return shape, poses, np.zeros(n, dtype=np.int64)


def _box(rng: np.random.Generator, max_opening: float) -> _Built:
    limit = (max_opening - _CLEARANCE) / 1.2
    a, b = rng.uniform(50, 240), rng.uniform(40, 200)
    if min(a, b) > limit:
        b = rng.uniform(40, limit)
    shape = shapely.box(-a / 2, -b / 2, a / 2, b / 2)
    poses, groups = [], []
    # Across side a (closing along x, positions along y), then across side b.
    for group, (across, along, theta) in enumerate(((a, b, 0.0), (b, a, 90.0))):
        if across > limit:
            continue
        n = int(np.clip(along / 8, 5, 30))
        pos = np.linspace(-along / 2 + 8, along / 2 - 8, n) + rng.uniform(-2, 2, n)
        shift = rng.uniform(-0.08, 0.08, n) * across
        opening = _opening(rng, across + 2 * np.abs(shift), max_opening)
        angle = theta + rng.uniform(-2, 2, n)
        xy = np.column_stack([shift, pos]) if theta == 0.0 else np.column_stack([pos, shift])
        poses.append(np.column_stack([xy, angle, opening]))
        groups.append(np.full(n, group))
    return shape, np.concatenate(poses), np.concatenate(groups)


def _disc(rng: np.random.Generator, max_opening: float) -> _Built:
    radius = rng.uniform(25, min(95.0, (max_opening - _CLEARANCE) / 2.4))
    shape = shapely.Point(0, 0).buffer(radius, quad_segs=16)
    n = int(rng.integers(12, 37))
    theta = rng.uniform(0, 180) + np.arange(n) * 180.0 / n + rng.uniform(-1, 1, n)
    xy = rng.uniform(-1, 1, (n, 2))
    opening = _opening(rng, np.full(n, 2 * radius + 4), max_opening)
    return shape, np.column_stack([xy, theta, opening]), np.arange(n)


def _ring(rng: np.random.Generator, max_opening: float) -> _Built:
    outer = rng.uniform(45, 110)
    rim = rng.uniform(12, max(13.0, 0.35 * outer))
    shape = (
        shapely.Point(0, 0)
        .buffer(outer, quad_segs=16)
        .difference(shapely.Point(0, 0).buffer(outer - rim, quad_segs=16))
    )
    n = int(rng.integers(8, 21)) * 2
    phi = rng.uniform(0, 360) + np.arange(n) * 360.0 / n
    mid = outer - rim / 2
    xy = mid * np.column_stack([np.cos(np.deg2rad(phi)), np.sin(np.deg2rad(phi))])
    opening = np.minimum(rim * rng.uniform(1.2, 1.45, n) + _CLEARANCE, max_opening)
    # Opposite rim positions close along the same direction: one orientation group.
    return shape, np.column_stack([xy, phi, opening]), np.arange(n) % (n // 2)


def _lshape(rng: np.random.Generator, max_opening: float) -> _Built:
    a, wa = rng.uniform(120, 280), rng.uniform(20, 50)
    b, wb = rng.uniform(100, 250), rng.uniform(20, 50)
    shape = shapely.union(shapely.box(0, 0, a, wa), shapely.box(0, 0, wb, b))
    na = int(np.clip((a - wb) / 8, 4, 30))
    nb = int(np.clip((b - wa) / 8, 4, 30))
    xs = np.linspace(wb + 10, a - 8, na)
    ys = np.linspace(wa + 10, b - 8, nb)
    arm_a = np.column_stack(
        [xs, np.full(na, wa / 2), 90 + rng.uniform(-2, 2, na), _opening(rng, wa, max_opening, na)]
    )
    arm_b = np.column_stack(
        [np.full(nb, wb / 2), ys, rng.uniform(-2, 2, nb), _opening(rng, wb, max_opening, nb)]
    )
    return _centred(shape, np.concatenate([arm_a, arm_b]), np.repeat([0, 1], [na, nb]))


def _tshape(rng: np.random.Generator, max_opening: float) -> _Built:
    a, wa = rng.uniform(140, 300), rng.uniform(20, 45)
    b, wb = rng.uniform(90, 220), rng.uniform(20, 45)
    shape = shapely.union(
        shapely.box(-a / 2, 0, a / 2, wa), shapely.box(-wb / 2, wa - 1, wb / 2, wa + b)
    )
    half = int(np.clip((a / 2 - wb / 2) / 8, 3, 15))
    side = np.linspace(wb / 2 + 12, a / 2 - 8, half)
    xs = np.concatenate([-side[::-1], side])
    na = len(xs)
    nb = int(np.clip(b / 8, 4, 30))
    ys = np.linspace(wa + 10, wa + b - 8, nb)
    bar = np.column_stack(
        [xs, np.full(na, wa / 2), 90 + rng.uniform(-2, 2, na), _opening(rng, wa, max_opening, na)]
    )
    stem = np.column_stack(
        [np.zeros(nb), ys, rng.uniform(-2, 2, nb), _opening(rng, wb, max_opening, nb)]
    )
    return _centred(shape, np.concatenate([bar, stem]), np.repeat([0, 1], [na, nb]))


_FAMILY_BUILDERS = {
    "stick": _stick,
    "box": _box,
    "disc": _disc,
    "ring": _ring,
    "lshape": _lshape,
    "tshape": _tshape,
}


def _opening(
    rng: np.random.Generator, width: np.ndarray | float, max_opening: float, n: int | None = None
) -> np.ndarray:
    """Gripper opening for poses across `width` ref px: 1.15–1.45× plus clearance, capped."""
    width = np.broadcast_to(np.asarray(width, dtype=np.float64), (n,) if n else np.shape(width))
    factor = rng.uniform(1.15, 1.45, width.shape)
    return np.minimum(width * factor + _CLEARANCE, max_opening)


def _centred(shape: shapely.Polygon, poses: np.ndarray, groups: np.ndarray) -> _Built:
    """Move outline and poses so that the outline's centroid is the origin."""
    c = shapely.centroid(shape)
    shape = shapely.affinity.translate(shape, -c.x, -c.y)
    poses = poses.copy()
    poses[:, 0] -= c.x
    poses[:, 1] -= c.y
    return shape, poses, groups


def _with_jaws(
    rng: np.random.Generator,
    shape: shapely.Polygon,
    poses: np.ndarray,
    groups: np.ndarray,
    max_opening: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Expand poses (P, 4) into Jacquard rows: 2–4 valid jaw sizes per pose, (N, 5).

    Like Jacquard, a pose is repeated with several jaw sizes, multiples of a base of
    about 13 reference px; only sizes that keep the grasp valid are used.
    """
    base = rng.uniform(12.0, 14.0)
    jaws = base * _JAW_MULTIPLES
    p, k = len(poses), len(jaws)
    cand = np.column_stack([np.repeat(poses, k, axis=0), np.tile(jaws, p)])
    valid = grasp_validity(shape, cand, max_opening=max_opening).reshape(p, k)
    # Poses where fewer than two jaw sizes fit (near an end or a corner) are not labelled.
    valid &= valid.sum(axis=1, keepdims=True) >= 2
    # Per pose: a random 2–4 of its valid jaw sizes, ascending (vectorised by random keys).
    want = rng.integers(2, 5, p)
    keys = np.where(valid, rng.random((p, k)), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    keep = valid & (rank < want[:, None])
    rows = np.flatnonzero(keep.ravel())
    return cand[rows], np.repeat(groups, k)[rows]


def _round_radius(family: str, shape: shapely.Polygon) -> float:
    """Half-width of the round profile (stick: its radius; ring: half the rim), ref px."""
    if family == "stick":
        minx, miny, maxx, maxy = shape.bounds
        return float(min(maxx - minx, maxy - miny) / 2)
    if family == "ring":
        outer = shapely.get_coordinates(shape.exterior)
        inner = shapely.get_coordinates(shape.interiors[0])
        return float((np.hypot(*outer.T).max() - np.hypot(*inner.T).max()) / 2)
    return 0.0


def _colors(rng: np.random.Generator) -> np.ndarray:
    """Two object colours (2, 3) RGB in [0, 1]: saturated plastics or white/grey/black."""
    out = []
    for _ in range(2):
        if rng.random() < 0.3:
            v = float(rng.choice([0.12, 0.55, 0.92])) + rng.uniform(-0.05, 0.05)
            out.append(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 0.08), v))
        else:
            hsv = (rng.random(), rng.uniform(0.35, 0.9), rng.uniform(0.35, 0.95))
            out.append(colorsys.hsv_to_rgb(*hsv))
    return np.asarray(out, dtype=np.float32)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Look:
    """Per-image lighting and sensor draws."""

    light: np.ndarray  # (3,) unit vector towards the light, z up
    ambient: float
    specular: float
    table: np.ndarray  # (3,) table colour, 0–255
    gradient: float  # relative brightness change across the image
    gradient_dir: float  # radians


def _draw_look(rng: np.random.Generator) -> _Look:
    az, el = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(50, 78))
    light = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    grey = rng.uniform(165, 205)
    return _Look(
        light=light,
        ambient=float(rng.uniform(0.35, 0.5)),
        specular=float(rng.uniform(0.05, 0.3)),
        table=grey + rng.uniform(-4, 4, 3),
        gradient=float(rng.uniform(0.08, 0.2)),
        gradient_dir=float(rng.uniform(0, 2 * np.pi)),
    )


def _object_layers(
    obj: ObjectModel, shape: shapely.Polygon, size: int, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Mask (S, S) uint8, and over the region of interest: alpha (float32), height (metres).

    The region (y0, y1, x0, x1) is the outline's bounding box plus room for the shadow;
    everything object-related is computed there only.
    """
    minx, miny, maxx, maxy = shape.bounds
    pad = int(0.05 * size) + 4
    x0, y0 = max(0, int(minx) - pad), max(0, int(miny) - pad)
    x1, y1 = min(size, int(np.ceil(maxx)) + pad + 1), min(size, int(np.ceil(maxy)) + pad + 1)
    roi_mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    origin = np.array([x0, y0])
    # cv2.fillPoly also sets the pixels its edges pass through, which grows a filled area
    # by about half a pixel all round; filling each ring shrunk by that much cancels it
    # (holes are filled with 0, so they are shrunk too).
    for part in shapely.get_parts(shape):
        for value, ring in [(255, part.exterior)] + [(0, r) for r in part.interiors]:
            area = shapely.Polygon(ring)
            inner = area.buffer(-0.5, join_style="mitre")
            for piece in shapely.get_parts(area if inner.is_empty else inner):
                xy = shapely.get_coordinates(piece.exterior) - origin
                pts = np.round(xy * 16).astype(np.int32)
                cv2.fillPoly(roi_mask, [pts], value, lineType=cv2.LINE_8, shift=4)
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[y0:y1, x0:x1] = roi_mask
    alpha = cv2.GaussianBlur(roi_mask.astype(np.float32) / 255.0, (3, 3), 0.6)

    dist = cv2.distanceTransform(roi_mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) - 0.5
    dist = np.maximum(dist, 0.0, out=dist)
    px_m = PIXEL_M / scale
    if obj.profile == "round":
        r = max(obj.round_radius * scale, 0.75)
        q = np.minimum(dist / r, 1.0)
        height = r * px_m * (1.0 + np.sqrt(1.0 - (1.0 - q) ** 2))
    else:
        bevel = max(1.0, 3.0 * scale)
        height = obj.height_m * np.sqrt(np.minimum(dist / bevel, 1.0))
    height = np.where(roi_mask > 0, height, 0.0).astype(np.float32)
    return mask, alpha, height, (y0, y1, x0, x1)


def _table_depth(rng: np.random.Generator, size: int) -> np.ndarray:
    """Perfect depth of the bare table: a plane about 1.5 m away, tilted, (S, S) float32."""
    base = rng.uniform(1.47, 1.51)
    span = rng.uniform(0.06, 0.13)  # metres of depth change across the image
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.arange(size, dtype=np.float32) - size / 2) / size * span
    dx = (ramp * np.cos(direction)).astype(np.float32)
    dy = (ramp * np.sin(direction)).astype(np.float32)
    return (np.float32(base) + dy[:, None] + dx[None, :]).astype(np.float32)


def _stereo(
    rng: np.random.Generator,
    perfect: np.ndarray,
    mask: np.ndarray,
    roi: tuple[int, int, int, int],
    scale: float,
) -> np.ndarray:
    """Stereo depth: perfect + sensor noise, smeared object edges, -1 holes. (S, S) float32.

    Like a real stereo camera (and Jacquard's stereo maps, which hold a few hundred distinct
    values) depth comes from a whole number of disparity steps: about 0.9 mm at 1.5 m in a
    1024² image, coarser in smaller ones. Noise is mostly low-frequency (matching errors
    over patches) with a little per-pixel jitter.
    """
    size = perfect.shape[0]
    low = np.float32(rng.uniform(0.0008, 0.002))
    jitter = np.float32(rng.uniform(0.0002, 0.0006))
    stereo = perfect + low * _smooth_noise(rng, (size, size), max(4, size // 32))
    stereo += jitter * rng.standard_normal((size, size), dtype=np.float32)

    y0, y1, x0, x1 = roi
    m = mask[y0:y1, x0:x1]
    k = max(3, int(round(6 * scale)) | 1)
    kernel = np.ones((k, k), np.uint8)
    band = cv2.dilate(m, kernel) > cv2.erode(m, kernel)
    smeared = cv2.GaussianBlur(perfect[y0:y1, x0:x1], (0, 0), max(1.0, 3 * scale))
    patch = stereo[y0:y1, x0:x1]
    patch[band] = smeared[band]

    steps = np.float32(2500.0 * scale)  # disparity steps times depth, so depth = steps / d
    stereo = steps / np.round(steps / stereo)
    # Holes along the edges (occlusion) and a few blobs elsewhere (texture-less spots).
    patch = stereo[y0:y1, x0:x1]
    edge_noise = _smooth_noise(rng, patch.shape, max(2, min(patch.shape) // 8))
    patch[band & (edge_noise > 0.4)] = -1.0
    blobs = _smooth_noise(rng, (size, size), 24)
    frac = rng.uniform(0.002, 0.008)
    step = max(1, size // 256)
    stereo[blobs > np.quantile(blobs[::step, ::step], 1 - frac)] = -1.0
    return stereo.astype(np.float32, copy=False)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field of `shape` (float32, about unit spread) from a cells² grid."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _rgb(
    rng: np.random.Generator,
    obj: ObjectModel,
    look: _Look,
    alpha: np.ndarray,
    height_m: np.ndarray,
    roi: tuple[int, int, int, int],
    size: int,
    scale: float,
    angle: float,
    center: tuple[float, float],
) -> np.ndarray:
    """Table texture, lighting gradient, soft shadow and the shaded object: (S, S, 3) uint8."""
    # Table brightness: blotches at two scales, grain, and a linear lighting gradient.
    light = 1.0 + 0.03 * _smooth_noise(rng, (size, size), 6)
    light += 0.015 * _smooth_noise(rng, (size, size), max(4, size // 16))
    light += 0.012 * rng.standard_normal((size, size), dtype=np.float32)
    ramp = (np.arange(size, dtype=np.float32) - size / 2) / size * look.gradient
    gradient = (
        1.0 + ramp[:, None] * np.sin(look.gradient_dir) + ramp[None, :] * np.cos(look.gradient_dir)
    ).astype(np.float32)
    light *= gradient

    y0, y1, x0, x1 = roi
    # Soft shadow: the object's silhouette shifted away from the light and blurred.
    shift = (-look.light[:2] / max(look.light[2], 0.2)) * 10.0 * scale
    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    shadow = cv2.warpAffine(alpha, m, (alpha.shape[1], alpha.shape[0]))
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(1.0, 8.0 * scale))
    light[y0:y1, x0:x1] *= 1.0 - 0.35 * shadow

    rgb = cv2.merge([cv2.convertScaleAbs(light, alpha=float(c)) for c in look.table])

    # The object: albedo pattern in object coordinates, Lambert + a little specular.
    hp = height_m / np.float32(PIXEL_M / scale)  # heights in pixels, for normals
    gx = cv2.Sobel(hp, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(hp, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    lx, ly, lz = look.light
    diffuse = np.maximum((-gx * lx - gy * ly + lz) / norm, 0.0) / lz
    half = look.light + np.array([0.0, 0.0, 1.0])
    hx, hy, hz = half / np.linalg.norm(half)
    spec = np.maximum((-gx * hx - gy * hy + hz) / norm, 0.0) ** 40 * look.specular
    shade = (look.ambient + (1.0 - look.ambient) * diffuse) * gradient[y0:y1, x0:x1]

    albedo = _albedo(obj, (y0, y1, x0, x1), scale, angle, center)
    grain = 1.0 + 0.02 * rng.standard_normal(shade.shape, dtype=np.float32)
    color = albedo * (shade * grain)[..., None] + spec[..., None]
    color = np.clip(color * 255.0, 0, 255)
    a = alpha[..., None]
    patch = rgb[y0:y1, x0:x1].astype(np.float32)
    rgb[y0:y1, x0:x1] = np.round(patch * (1.0 - a) + color * a).astype(np.uint8)
    return rgb


def _albedo(
    obj: ObjectModel,
    roi: tuple[int, int, int, int],
    scale: float,
    angle: float,
    center: tuple[float, float],
) -> np.ndarray:
    """Object colour over the region, (h, w, 3) float32, patterned in object coordinates."""
    y0, y1, x0, x1 = roi
    c1, c2 = obj.colors
    if obj.pattern == "plain":
        return np.broadcast_to(c1, (y1 - y0, x1 - x0, 3)).astype(np.float32)
    a = np.deg2rad(angle)
    xs = (np.arange(x0, x1, dtype=np.float32) - center[0]) / scale
    ys = (np.arange(y0, y1, dtype=np.float32) - center[1]) / scale
    # Object-frame x coordinate of every pixel (inverse rotation), reference px.
    ox = np.cos(a) * xs[None, :] + np.sin(a) * ys[:, None]
    if obj.pattern == "two_tone":
        pick = ox > 0
    else:
        pick = np.sin(ox * (2 * np.pi / obj.stripe_period)) > 0.6
    return np.where(pick[..., None], c2, c1).astype(np.float32)
