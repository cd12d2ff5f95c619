"""Augmentation moves pixels and rectangles together: targets line up with the moved image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from regrasp.grasp.maps import encode
from regrasp.grasp.rectangles import corners
from regrasp.learn.training.augment import affine_matrix, augment, warp_grasps, warp_input
from regrasp.learn.training.config import AugmentConfig

SIZE = 120


def _painted(grasp: np.ndarray) -> np.ndarray:
    """(1, S, S) float32 image with the full rectangle of `grasp` painted 1."""
    image = np.zeros((SIZE, SIZE), dtype=np.float32)
    quad = np.round(corners(grasp[None])[0] * 16).astype(np.int32)
    cv2.fillConvexPoly(image, quad, 1.0, lineType=cv2.LINE_8, shift=4)
    return image[None]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize(
    ("angle", "scale"), [(0.0, 1.0), (37.0, 1.0), (-120.0, 1.2), (90.0, 0.8), (171.0, 1.1)]
)
def test_warped_rectangle_matches_warped_image(angle: float, scale: float) -> None:
    grasp = np.array([70.0, 50.0, 20.0, 44.0, 16.0])
    image = _painted(grasp)
    matrix = affine_matrix(SIZE, angle=angle, scale=scale)
    moved_image = warp_input(image, matrix)[0] > 0.5
    moved = warp_grasps(grasp[None], matrix, size=SIZE)
    assert moved.shape == (1, 5)
    target = encode(moved, size=SIZE, centre_fraction=1.0).quality > 0.5
    assert _iou(target, moved_image) > 0.9
    # The unmoved target differs from the moved image whenever the transform does something.
    if angle or scale != 1.0:
        still = encode(grasp[None], size=SIZE, centre_fraction=1.0).quality > 0.5
        assert _iou(still, moved_image) < _iou(target, moved_image)


def test_random_augment_is_consistent_and_seeded() -> None:
    grasp = np.array([60.0, 64.0, -35.0, 40.0, 12.0])
    image = np.concatenate([_painted(grasp), 2 * _painted(grasp)])  # two channels
    config = AugmentConfig(rotation_degrees=180.0, zoom=(0.8, 1.2))
    for seed in range(5):
        x, g = augment(image, grasp[None], np.random.default_rng(seed), config)
        assert x.shape == image.shape and x.dtype == np.float32
        np.testing.assert_allclose(x[1], 2 * x[0], atol=1e-5)  # channels moved alike
        target = encode(g, size=SIZE, centre_fraction=1.0).quality > 0.5
        assert _iou(target, x[0] > 0.5) > 0.9
        x2, g2 = augment(image, grasp[None], np.random.default_rng(seed), config)
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(g, g2)


def test_grasps_whose_centre_leaves_the_image_are_dropped() -> None:
    grasps = np.array([[5.0, 5.0, 0.0, 10.0, 5.0], [60.0, 60.0, 0.0, 10.0, 5.0]])
    matrix = affine_matrix(SIZE, angle=0.0, scale=2.0)  # zoom in: corners leave
    moved = warp_grasps(grasps, matrix, size=SIZE)
    assert len(moved) == 1
    np.testing.assert_allclose(moved[0, 3:], [20.0, 10.0])
