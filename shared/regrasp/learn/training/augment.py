"""Random rotation and zoom, applied identically to a network input and to its grasps.

One 2×3 affine matrix (rotation about the image centre plus uniform scale) moves the
pixels (`cv2.warpAffine`) and the rectangles: centres go through the matrix, the angle
turns with it (read from the transformed opening direction, so no sign convention can
drift between image and labels), opening and jaw scale with it. The targets are then
painted from the moved rectangles by `regrasp.grasp.maps.encode`, so they line up with the moved
pixels by construction. Working on the cached network-size input (not the 1024² source)
keeps this cheap: one warp of a 300² float image per sample.

Arrays: inputs (C, S, S) float32, grasps (N, 5) in network pixels and degrees.
"""

from __future__ import annotations

import cv2
import numpy as np

from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y, as_grasps, normalize_angle
from regrasp.learn.training.config import AugmentConfig
from regrasp.platform.errors import InvalidInput


def draw(rng: np.random.Generator, config: AugmentConfig) -> tuple[float, float]:
    """(angle in degrees, scale) drawn uniformly from the config's ranges."""
    angle = float(rng.uniform(-config.rotation_degrees, config.rotation_degrees))
    low, high = config.zoom
    return angle, float(rng.uniform(low, high))


def affine_matrix(size: int, *, angle: float, scale: float) -> np.ndarray:
    """(2, 3) float64 matrix rotating by `angle` degrees and scaling about the centre.

    OpenCV's convention: a positive angle turns the picture counter-clockwise as displayed
    (y down). The centre is ((S−1)/2, (S−1)/2), pixel centres at integer coordinates.
    """
    if not scale > 0:
        raise InvalidInput(f"scale must be positive, got {scale}")
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    return cv2.getRotationMatrix2D(centre, float(angle), float(scale))


def warp_input(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(C, S, S) float32 → (C, S, S): bilinear warp, uncovered pixels 0 (the input's mean)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[1] != image.shape[2]:
        raise InvalidInput(f"expected a (C, S, S) input, got shape {image.shape}")
    size = image.shape[-1]
    # OpenCV warps up to 4 channels at once in (S, S, C) layout.
    planes = np.ascontiguousarray(np.moveaxis(image, 0, 2))
    out = cv2.warpAffine(
        planes,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    if out.ndim == 2:
        out = out[:, :, None]
    return np.ascontiguousarray(np.moveaxis(out, 2, 0))


def warp_grasps(grasps: np.ndarray, matrix: np.ndarray, *, size: int) -> np.ndarray:
    """(N, 5) network-px grasps moved by `matrix`; those whose centre leaves the image dropped.

    A rectangle whose centre left the picture cannot be predicted there; one partly
    outside is kept (`maps.encode` clips what it paints).
    """
    g = as_grasps(grasps).copy()
    if len(g) == 0:
        return g
    linear, shift = matrix[:, :2], matrix[:, 2]
    g[:, [X, Y]] = g[:, [X, Y]] @ linear.T + shift
    t = np.deg2rad(g[:, THETA])
    direction = np.stack([np.cos(t), np.sin(t)], axis=1) @ linear.T
    g[:, THETA] = normalize_angle(np.rad2deg(np.arctan2(direction[:, 1], direction[:, 0])))
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    g[:, [OPENING, JAW]] *= scale
    inside = (g[:, X] >= -0.5) & (g[:, X] < size - 0.5) & (g[:, Y] >= -0.5) & (g[:, Y] < size - 0.5)
    return g[inside]


def augment(
    image: np.ndarray, grasps: np.ndarray, rng: np.random.Generator, config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate and zoom an input (C, S, S) and its (N, 5) grasps by one random transform."""
    angle, scale = draw(rng, config)
    matrix = affine_matrix(image.shape[-1], angle=angle, scale=scale)
    return warp_input(image, matrix), warp_grasps(grasps, matrix, size=image.shape[-1])
