"""Physical validity of grasp rectangles against a known object outline.

The synthetic generator knows each object's exact outline (a shapely polygon in image
pixels), so whether a rectangle is a grasp a parallel gripper could execute is a question
of geometry, not of another annotation. `grasp_validity` is that test; the generator keeps
only candidates that pass it, the corruptions build labels that fail it, and the simulated
reviewer uses it as a careful person would look at the image.

A grasp `(x, y, theta, opening, jaw)` is valid when all of these hold:

1. its centre lies on the object;
2. the two fingers (the rectangle's short sides, at centre ± opening/2 along the closing
   direction, each `jaw` long) touch nothing of the object: the gripper opens wider than
   the object is thick there, and closes from free space;
3. the closing line through the centre meets the outline on both sides where the outline
   is within `friction_deg` of perpendicular to it (an antipodal grasp: the fingers squeeze
   two faces, they do not slide off a slanted edge);
4. the jaw fits on the object: the segment centre ± jaw/2 across the closing direction lies
   on the object (up to `tolerance` px at its ends);
5. the opening is at most `max_opening` pixels (the gripper's stroke).

numpy + shapely only, vectorised over grasps: one ray-edge intersection matrix and three
vectorised shapely predicates, no Python loop over grasps.
"""

from __future__ import annotations

import numpy as np
import shapely
import shapely.affinity

from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y, as_grasps, normalize_angle
from regrasp.platform.errors import InvalidInput

#: Default friction cone half-angle of the antipodal test, degrees.
FRICTION_DEG = 15.0


def grasp_validity(
    shape: shapely.Polygon | shapely.MultiPolygon,
    grasps: np.ndarray,
    *,
    max_opening: float,
    friction_deg: float = FRICTION_DEG,
    tolerance: float = 0.5,
) -> np.ndarray:
    """Which grasps are physically valid against the object outline: (N,) bool.

    shape: the object's outline in the grasps' pixel frame (holes allowed, e.g. a ring).
    grasps: (N, 5) rows `(x, y, theta, opening, jaw)` in pixels and degrees.
    max_opening: the gripper's largest opening, pixels. friction_deg: half-angle of the
    friction cone. tolerance: pixels the jaw segment may overhang the outline at each end
    (outlines of round objects are polygons, so a jaw exactly at the rim is not refused).
    The five conditions are listed in the module docstring.
    """
    g = as_grasps(grasps)
    if not isinstance(shape, shapely.Polygon | shapely.MultiPolygon) or shape.is_empty:
        raise InvalidInput("shape must be a non-empty shapely Polygon or MultiPolygon")
    if not max_opening > 0:
        raise InvalidInput(f"max_opening must be positive, got {max_opening!r}")
    if not 0 < friction_deg < 90:
        raise InvalidInput(f"friction_deg must be in (0, 90), got {friction_deg!r}")
    if len(g) == 0:
        return np.zeros(0, dtype=bool)

    shapely.prepare(shape)
    c = g[:, [X, Y]]
    t = np.deg2rad(g[:, THETA])
    u = np.stack([np.cos(t), np.sin(t)], axis=1)
    v = np.stack([-np.sin(t), np.cos(t)], axis=1)
    half_open = g[:, OPENING, None] / 2
    half_jaw = g[:, JAW, None] / 2

    ok = g[:, OPENING] <= max_opening
    ok &= shapely.contains_xy(shape, c[:, 0], c[:, 1])

    # Fingers: the short sides of the rectangle, in free space.
    for sign in (1.0, -1.0):
        mid = c + sign * half_open * u
        fingers = shapely.linestrings(np.stack([mid - half_jaw * v, mid + half_jaw * v], axis=1))
        ok &= ~shapely.intersects(shape, fingers)

    # Jaw on the object: the centre segment across the closing direction is covered.
    reach = np.maximum(half_jaw - tolerance, 0.0)
    pads = shapely.linestrings(np.stack([c - reach * v, c + reach * v], axis=1))
    ok &= shapely.covers(shape, pads) | (reach[:, 0] == 0)

    # Antipodal contacts where the closing line first leaves the object on each side.
    edges = _edges(shape)
    cone = np.sin(np.deg2rad(friction_deg))
    for sign in (1.0, -1.0):
        hit, along = _first_hits(c, sign * u, edges)
        ok &= hit & (along <= cone)
    return ok


def transform_grasps(
    grasps: np.ndarray, *, angle_deg: float, scale: float, offset: tuple[float, float]
) -> np.ndarray:
    """Rotate by `angle_deg` about the origin, scale, then shift: (N, 5) → (N, 5).

    The same similarity as `transform_shape`, so grasps and outline stay together. Angles
    follow the y-down convention of `regrasp.grasp.rectangles` (a positive angle turns x towards y).
    """
    g = as_grasps(grasps).copy()
    a = np.deg2rad(angle_deg)
    cos, sin = np.cos(a), np.sin(a)
    x, y = g[:, X].copy(), g[:, Y].copy()
    g[:, X] = scale * (cos * x - sin * y) + offset[0]
    g[:, Y] = scale * (sin * x + cos * y) + offset[1]
    g[:, THETA] = normalize_angle(g[:, THETA] + angle_deg)
    g[:, [OPENING, JAW]] *= scale
    return g


def transform_shape(
    shape: shapely.Geometry, *, angle_deg: float, scale: float, offset: tuple[float, float]
) -> shapely.Geometry:
    """The similarity of `transform_grasps` applied to a shapely geometry."""
    a = np.deg2rad(angle_deg)
    cos, sin = scale * np.cos(a), scale * np.sin(a)
    return shapely.affinity.affine_transform(shape, [cos, -sin, sin, cos, offset[0], offset[1]])


# --------------------------------------------------------------------------- helpers


def _edges(shape: shapely.Geometry) -> np.ndarray:
    """Every boundary edge of the outline (exterior and holes) as (E, 2, 2) start/end points."""
    rings = shapely.get_rings(shapely.get_parts(shape))
    parts = []
    for ring in rings:
        xy = shapely.get_coordinates(ring)
        parts.append(np.stack([xy[:-1], xy[1:]], axis=1))
    return np.concatenate(parts, axis=0)


def _first_hits(
    origin: np.ndarray, direction: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First boundary edge each ray meets: (hit (N,) bool, |cos| of ray and edge (N,)).

    origin, direction: (N, 2), direction of unit length. `along` is the absolute cosine
    between the ray and the edge it hits first: 0 when the edge is perpendicular to the
    ray (a face the finger squeezes squarely), 1 when the ray runs along the edge.
    """
    p = edges[None, :, 0, :]
    e = edges[None, :, 1, :] - p
    o = origin[:, None, :]
    d = direction[:, None, :]
    denom = _cross(d, e)
    w = p - o
    with np.errstate(divide="ignore", invalid="ignore"):
        t = _cross(w, e) / denom
        s = _cross(w, d) / denom
    valid = (np.abs(denom) > 1e-12) & (t > 1e-9) & (s >= -1e-9) & (s <= 1 + 1e-9)
    t = np.where(valid, t, np.inf)
    first = np.argmin(t, axis=1)
    hit = np.isfinite(t[np.arange(len(t)), first])
    edge = edges[first, 1] - edges[first, 0]
    length = np.linalg.norm(edge, axis=1)
    along = np.abs(np.einsum("ij,ij->i", edge, direction)) / np.where(length > 0, length, 1.0)
    return hit, along


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
