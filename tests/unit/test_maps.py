"""GG-CNN maps: exact painting of a known rectangle, decoding it back, real-sample round trip."""

from __future__ import annotations

import numpy as np
import pytest

from regrasp.data.formats.jacquard import scan_jacquard
from regrasp.grasp.imaging import Letterbox
from regrasp.grasp.maps import INPUT_SIZE, WIDTH_SCALE, GraspMaps, decode, decode_scale, encode
from regrasp.grasp.metrics import is_success
from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y, angle_difference
from regrasp.platform.errors import InvalidInput


def _inside(grasp: np.ndarray, size: int, *, margin: float) -> np.ndarray:
    """(S, S) bool: pixel centres inside the rectangle shrunk (margin > 0) or grown (< 0)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    t = np.deg2rad(grasp[THETA])
    dx, dy = cols - grasp[X], rows - grasp[Y]
    along = dx * np.cos(t) + dy * np.sin(t)
    across = -dx * np.sin(t) + dy * np.cos(t)
    return (np.abs(along) <= grasp[OPENING] / 2 - margin) & (
        np.abs(across) <= grasp[JAW] / 2 - margin
    )


def test_single_rectangle_paints_its_centre_third() -> None:
    grasp = np.array([150.3, 120.7, 30.0, 60.0, 20.0])
    maps = encode(grasp[None], size=INPUT_SIZE)
    third = grasp.copy()
    third[OPENING] /= 3

    assert all(m.shape == (INPUT_SIZE, INPUT_SIZE) and m.dtype == np.float32 for m in maps)
    q = maps.quality
    assert set(np.unique(q)) == {0.0, 1.0}
    # Every pixel well inside the centre third is painted, nothing clearly outside it is.
    assert q[_inside(third, INPUT_SIZE, margin=1.0)].min() == 1.0
    assert q[~_inside(third, INPUT_SIZE, margin=-1.0)].max() == 0.0
    # The painted area is the centre third's area (20 × 20 px) to within its perimeter.
    assert abs(q.sum() - 20.0 * 20.0) < 2 * (20 + 20)
    painted = q == 1
    np.testing.assert_allclose(maps.cos2[painted], np.cos(np.deg2rad(60.0)), rtol=1e-6)
    np.testing.assert_allclose(maps.sin2[painted], np.sin(np.deg2rad(60.0)), rtol=1e-6)
    np.testing.assert_allclose(maps.width[painted], 60.0 / WIDTH_SCALE, rtol=1e-6)
    for m in (maps.cos2, maps.sin2, maps.width):
        assert not m[~painted].any()
    stacked = maps.as_array()
    assert stacked.shape == (4, INPUT_SIZE, INPUT_SIZE)
    np.testing.assert_array_equal(GraspMaps(*stacked).width, maps.width)


@pytest.mark.parametrize("theta", [-89.0, -45.0, 0.0, 30.0, 89.0])
def test_single_rectangle_decodes_back(theta: float) -> None:
    grasp = np.array([140.0, 160.0, theta, 60.0, 24.0])
    pred, scores = decode(*encode(grasp[None]), k=5)

    assert pred.shape == (1, 5) and scores.shape == (1,)
    assert np.hypot(pred[0, X] - grasp[X], pred[0, Y] - grasp[Y]) <= 1.0
    assert angle_difference(pred[0, THETA], theta) < 1e-3
    assert -90.0 <= pred[0, THETA] < 90.0
    assert pred[0, OPENING] == pytest.approx(60.0, rel=1e-6)
    assert pred[0, JAW] == pytest.approx(30.0, rel=1e-6)  # opening / 2 by default
    assert 0.9 < scores[0] <= 1.0


def test_decode_jaw_options() -> None:
    maps = encode(np.array([[100.0, 100.0, 10.0, 45.0, 20.0]]))
    fixed, _ = decode(*maps, jaw=12.5)
    ratio, _ = decode(*maps, jaw_ratio=0.25)
    assert fixed[0, JAW] == 12.5
    assert ratio[0, JAW] == pytest.approx(45.0 * 0.25)


def test_decode_ranks_peaks_and_respects_k_threshold_and_distance() -> None:
    big = [200.0, 200.0, 0.0, 90.0, 40.0]  # larger region: higher smoothed quality
    small = [60.0, 60.0, 45.0, 15.0, 6.0]
    maps = encode(np.array([small, big]))

    pred, scores = decode(*maps, k=5)
    assert len(pred) == 2
    assert scores[0] > scores[1] > 0.1
    np.testing.assert_allclose(pred[0, [X, Y]], big[:2], atol=1.0)
    np.testing.assert_allclose(pred[1, [X, Y]], small[:2], atol=1.0)
    assert angle_difference(pred[1, THETA], 45.0) < 1e-3

    assert len(decode(*maps, k=1)[0]) == 1
    assert len(decode(*maps, k=0)[0]) == 0
    assert len(decode(*maps, threshold=scores[1] + 1e-3)[0]) == 1
    # Peaks closer than min_distance are merged into the better one.
    assert len(decode(*maps, min_distance=200)[0]) == 1


def test_later_rectangle_wins_where_they_overlap() -> None:
    first = [150.0, 150.0, 0.0, 60.0, 30.0]
    second = [150.0, 150.0, 90.0, 60.0, 30.0]
    maps = encode(np.array([first, second]))
    assert maps.cos2[150, 150] == pytest.approx(-1.0)  # cos(2·90°) of the second


def test_width_is_clipped_and_empty_grasps_give_empty_maps() -> None:
    maps = encode(np.array([[150.0, 150.0, 0.0, 240.0, 30.0]]))
    assert maps.width.max() == 1.0
    empty = encode(np.zeros((0, 5)))
    assert not empty.as_array().any()
    pred, scores = decode(*empty)
    assert pred.shape == (0, 5) and scores.shape == (0,)


def test_angle_smoothing_is_wrap_safe() -> None:
    # θ = 89° and −89° are 2° apart; blurring the angle itself would average them to 0°.
    maps = encode(np.array([[150.0, 140.0, 89.0, 60.0, 30.0], [150.0, 160.0, -89.0, 60.0, 30.0]]))
    pred, _ = decode(*maps, angle_sigma=4.0, width_sigma=1.0, k=1)
    assert angle_difference(pred[0, THETA], 90.0) < 2.0


def test_invalid_inputs_are_refused() -> None:
    maps = encode(np.array([[100.0, 100.0, 0.0, 30.0, 10.0]]))
    with pytest.raises(InvalidInput):
        decode(maps.quality, maps.cos2, maps.sin2, maps.width[:10])
    bad = maps.quality.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInput):
        decode(bad, maps.cos2, maps.sin2, maps.width)
    with pytest.raises(InvalidInput):
        decode(*maps, k=-1)
    with pytest.raises(InvalidInput):
        encode(np.array([[1.0, 1.0, 0.0, -3.0, 1.0]]))
    with pytest.raises(InvalidInput):
        encode(np.zeros((0, 5)), size=0)


@pytest.fixture(scope="module")
def real_grasps(jacquard_samples) -> list[tuple[str, np.ndarray]]:
    with scan_jacquard(jacquard_samples) as dataset:
        return [(image.name, image.load_grasps()) for image in dataset]


def test_real_ground_truth_survives_encode_decode(real_grasps) -> None:
    """Ground truth → 300² maps → decoded top-1, mapped back to 1024² px, matches a label."""
    box = Letterbox(1024, 1024, INPUT_SIZE)
    results = []
    for _, gt in real_grasps:
        pred, _ = decode(*encode(box.to_network(gt)), k=1)
        results.append(len(pred) > 0 and is_success(box.to_image(pred), gt))
    rate = float(np.mean(results))
    print(f"encode→decode top-1 success on {len(results)} real images: {rate:.3f}")
    assert len(results) == 33
    assert rate >= 0.9


@pytest.mark.parametrize("size", [64, 96, 128, 224, 300])
def test_real_oracle_round_trip_at_every_input_size(real_grasps, size: int) -> None:
    """Real 1024² labels → maps at the network's size → decoded with the scaled settings.

    With GG-CNN's 300² values at every size (σ 2, min_distance 20) a 64² oracle scored
    0.89; scaled, the labels come back at every size.
    """
    box = Letterbox(1024, 1024, size)
    sigma, min_distance = decode_scale(size)
    hits = []
    for _, gt in real_grasps:
        pred, _ = decode(
            *encode(box.to_network(gt), size=size), sigma=sigma, min_distance=min_distance
        )
        hits.append(len(pred) > 0 and is_success(box.to_image(pred)[:1], gt))
    print(f"oracle at {size}²: {np.mean(hits):.3f} over {len(hits)} real images")
    assert np.mean(hits) >= 0.98


@pytest.mark.parametrize("size", [64, 96, 128])
def test_synthetic_oracle_round_trip_at_every_input_size(size: int) -> None:
    """The synthetic 128² scenes of the demo and the bench survive the round trip at the
    small input sizes a CPU trains at."""
    from regrasp.data.synthetic.scenes import render_scene

    box = Letterbox(128, 128, size)
    sigma, min_distance = decode_scale(size)
    hits = []
    for seed in range(200):
        gt = render_scene(size=128, seed=seed).grasps
        pred, _ = decode(
            *encode(box.to_network(gt), size=size), sigma=sigma, min_distance=min_distance
        )
        hits.append(len(pred) > 0 and is_success(box.to_image(pred)[:1], gt))
    print(f"synthetic oracle at {size}²: {np.mean(hits):.3f}")
    assert np.mean(hits) >= 0.98


def test_decode_scale_follows_the_input_size() -> None:
    assert decode_scale(INPUT_SIZE) == (2.0, 20)
    sigma, min_distance = decode_scale(96)
    assert sigma == pytest.approx(0.7) and min_distance == 6  # σ floor: 2·96/300 = 0.64
    assert decode_scale(150) == (pytest.approx(1.0), 10)
    assert decode_scale(16)[1] == 1  # peaks never merge into one
    with pytest.raises(InvalidInput):
        decode_scale(0)


@pytest.mark.parametrize("size", [64, 96, 300])
def test_top_k_returns_k_distinct_grasps_where_the_object_has_them(size: int) -> None:
    """Five separate grasps on a 64² map: the scaled min_distance returns all five (the
    300² value returned one or two at 64²)."""
    step = size / 6
    gt = np.array([[step * (i + 1), size / 2, 0.0, step / 2, step / 4] for i in range(5)])
    sigma, min_distance = decode_scale(size)
    pred, scores = decode(*encode(gt, size=size), k=5, sigma=sigma, min_distance=min_distance)
    assert len(pred) == 5
    assert len({(round(x), round(y)) for x, y in pred[:, [X, Y]]}) == 5
    assert np.all(np.diff(scores) <= 0)
    matched = {int(np.argmin(np.hypot(*(gt[:, [X, Y]] - p[[X, Y]]).T))) for p in pred}
    assert matched == set(range(5))
