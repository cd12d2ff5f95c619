"""The rectangle metric: exact IoU properties, thresholds, batched forms, real Jacquard labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regrasp.grasp import metrics
from regrasp.grasp.rectangles import THETA, angle_difference, corners, read_jacquard
from regrasp.platform.errors import InvalidInput

PROPERTY = settings(max_examples=100, deadline=None)

# Rectangles in a small area so that many pairs overlap, at every angle.
_coord = st.floats(-40.0, 40.0, allow_nan=False)
_theta = st.floats(-360.0, 360.0, allow_nan=False)
_row = st.tuples(_coord, _coord, _theta, st.floats(1.0, 80.0), st.floats(1.0, 40.0))


def grasp_arrays(min_size: int = 1, max_size: int = 6) -> st.SearchStrategy[np.ndarray]:
    return st.lists(_row, min_size=min_size, max_size=max_size).map(
        lambda rows: np.array(rows, dtype=np.float64).reshape(-1, 5)
    )


def reference_iou(a: np.ndarray, b: np.ndarray, gate: float | None) -> np.ndarray:
    """Pair-by-pair IoU with no prefilter and no shapely: the definition the fast path meets.

    Convex polygon clipping (Sutherland-Hodgman) in plain Python, independent of GEOS.
    """
    out = np.zeros((len(a), len(b)))
    qa, qb = corners(a).tolist(), corners(b).tolist()
    for i, p in enumerate(qa):
        for j, q in enumerate(qb):
            if gate is not None and angle_difference(a[i, THETA], b[j, THETA]) >= gate:
                continue
            inter = _polygon_area(_clip(p, q))
            out[i, j] = inter / (_polygon_area(p) + _polygon_area(q) - inter)
    return out


def _clip(subject: list, clip: list) -> list:
    """Part of convex polygon `subject` inside convex polygon `clip` (both same orientation)."""
    sign = 1.0 if _signed_area(clip) > 0 else -1.0
    poly = subject
    for k in range(len(clip)):
        (ax, ay), (bx, by) = clip[k], clip[(k + 1) % len(clip)]

        def side(pt, ax=ax, ay=ay, bx=bx, by=by):
            return sign * ((bx - ax) * (pt[1] - ay) - (by - ay) * (pt[0] - ax))

        result = []
        for m in range(len(poly)):
            cur, nxt = poly[m], poly[(m + 1) % len(poly)]
            sc, sn = side(cur), side(nxt)
            if sc >= 0:
                result.append(cur)
            if (sc >= 0) != (sn >= 0):
                t = sc / (sc - sn)
                result.append([cur[0] + t * (nxt[0] - cur[0]), cur[1] + t * (nxt[1] - cur[1])])
        poly = result
        if not poly:
            return []
    return poly


def _signed_area(poly: list) -> float:
    return 0.5 * sum(
        x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1], strict=True)
    )


def _polygon_area(poly: list) -> float:
    return abs(_signed_area(poly)) if len(poly) >= 3 else 0.0


def test_reference_clipping_agrees_with_hand_computed_areas():
    square = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]
    diamond = [[1.0, -0.5], [2.5, 1.0], [1.0, 2.5], [-0.5, 1.0]]  # |x-1| + |y-1| <= 1.5
    assert _polygon_area(_clip(square, square)) == 4.0
    assert _polygon_area(_clip(square, [[x + 1, y] for x, y in square])) == 2.0
    assert _polygon_area(_clip(square, [[x + 2, y] for x, y in square])) == 0.0
    # The square loses four corner triangles with legs 0.5.
    assert _polygon_area(_clip(square, diamond)) == pytest.approx(4.0 - 4 * 0.125)


# --------------------------------------------------------------------------- iou properties


@PROPERTY
@given(grasp_arrays(), grasp_arrays(), st.sampled_from([None, 30.0, 10.0]))
def test_iou_equals_pairwise_shapely_reference(a, b, gate):
    assert metrics.iou(a, b, gate) == pytest.approx(reference_iou(a, b, gate), abs=1e-9)


@PROPERTY
@given(grasp_arrays(), grasp_arrays())
def test_iou_is_symmetric_and_within_unit_interval(a, b):
    ab = metrics.iou(a, b, None)
    assert ab.shape == (len(a), len(b))
    assert ab == pytest.approx(metrics.iou(b, a, None).T, abs=1e-9)
    assert ((ab >= 0) & (ab <= 1)).all()


@PROPERTY
@given(grasp_arrays())
def test_iou_of_a_rectangle_with_itself_is_one(a):
    assert np.diag(metrics.iou(a, a)) == pytest.approx(np.ones(len(a)), abs=1e-9)


@PROPERTY
@given(grasp_arrays(), grasp_arrays(), st.lists(st.sampled_from([-180.0, 180.0, 360.0])))
def test_iou_is_invariant_to_theta_plus_minus_180(a, b, turns):
    turned = a.copy()
    turned[:, THETA] += sum(turns)
    assert metrics.iou(turned, b, None) == pytest.approx(metrics.iou(a, b, None), abs=1e-9)
    # Gated values too, away from the gate itself where rounding may fall either side.
    near_gate = np.abs(angle_difference(a[:, None, THETA], b[None, :, THETA]) - 30.0) < 1e-6
    gated = metrics.iou(turned, b)
    assert gated[~near_gate] == pytest.approx(metrics.iou(a, b)[~near_gate], abs=1e-9)


@PROPERTY
@given(grasp_arrays(), grasp_arrays(), st.floats(0.0, 90.0))
def test_angle_gate_zeroes_exactly_the_pairs_at_or_above_it(a, b, gate):
    diff = angle_difference(a[:, None, THETA], b[None, :, THETA])
    expected = np.where(diff < gate, metrics.iou(a, b, None), 0.0)
    assert metrics.iou(a, b, gate) == pytest.approx(expected, abs=1e-12)


@PROPERTY
@given(
    grasp_arrays(),
    grasp_arrays(),
    st.floats(-1000.0, 1000.0, allow_nan=False),
    st.floats(-1000.0, 1000.0, allow_nan=False),
)
def test_iou_is_invariant_to_translating_both(a, b, dx, dy):
    shift = np.array([dx, dy, 0.0, 0.0, 0.0])
    moved = metrics.iou(a + shift, b + shift, None)
    assert moved == pytest.approx(metrics.iou(a, b, None), abs=1e-6)


@PROPERTY
@given(grasp_arrays(max_size=8), st.data())
def test_iou_paired_is_the_diagonal_of_the_matrix(a, data):
    b = data.draw(grasp_arrays(min_size=len(a), max_size=len(a)))
    assert metrics.iou_paired(a, b) == pytest.approx(np.diag(metrics.iou(a, b)), abs=1e-12)


# Many rectangles around one spot, several sharing a pose (Jacquard repeats a pose with
# other jaw sizes), so that the best-IoU search has many overlapping candidates to prune.
_cluster = st.lists(
    st.tuples(
        st.floats(-15.0, 15.0),
        st.floats(-15.0, 15.0),
        _theta,
        st.floats(2.0, 60.0),
        st.lists(st.floats(2.0, 40.0), min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=12,
).map(
    lambda poses: np.array(
        [(x, y, t, o, j) for x, y, t, o, jaws in poses for j in jaws], dtype=np.float64
    )
)


@PROPERTY
@given(grasp_arrays(1, 3), _cluster, st.sampled_from([None, 30.0]))
def test_best_iou_is_the_maximum_of_the_iou_row(pred, gt, gate):
    expected = reference_iou(pred[:1], gt, gate).max()
    assert metrics.best_iou(pred, gt, angle_gate=gate) == pytest.approx(expected, abs=1e-9)
    batched = metrics.best_iou_batch(pred[:1], [gt], angle_gate=gate)
    assert batched == pytest.approx([expected], abs=1e-9)


@PROPERTY
@given(_cluster, st.sampled_from([0.0, 90.0, 180.0, -270.0]))
def test_pairs_at_multiples_of_90_degrees_match_the_reference(gt, turn):
    # Such pairs take the closed form (a box in the other's frame) instead of shapely.
    turned = gt.copy()
    turned[:, THETA] += turn
    assert metrics.iou(gt, turned, None) == pytest.approx(reference_iou(gt, turned, None), abs=1e-9)


# --------------------------------------------------------------------------- known values


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # 10x10 squares overlapping on a 4x10 strip: 40 / 160.
        ((0, 0, 0, 10, 10), (6, 0, 0, 10, 10), 0.25),
        # 6x5 rectangles overlapping on 2x5: 10 / 50.
        ((0, 0, 0, 6, 5), (4, 0, 0, 6, 5), 0.2),
        # 10x4 over [-5, 5]x[-2, 2] and 8x6 over [-1, 7]x[-2, 4]: overlap 6 x 4 = 24.
        ((0, 0, 0, 10, 4), (3, 1, 0, 8, 6), 24 / (40 + 48 - 24)),
        # A rectangle and its left half.
        ((0, 0, 0, 10, 4), (-2.5, 0, 0, 5, 4), 0.5),
        # The same half, described with the opening along y (theta 90, opening 4, jaw 5).
        ((0, 0, 0, 10, 4), (-2.5, 0, 90, 4, 5), 0.5),
        # A square against itself turned 45°: a regular octagon, IoU 1/sqrt(2).
        ((0, 0, 0, 10, 10), (0, 0, 45, 10, 10), 1 / math.sqrt(2)),
        # Touching along an edge: zero area.
        ((0, 0, 0, 10, 10), (10, 0, 0, 10, 10), 0.0),
        # Parallel thin diagonal bars 7 px apart: circles and bounding boxes overlap, bars don't.
        ((0, 0, 45, 100, 2), (10, 0, 45, 100, 2), 0.0),
    ],
)
def test_known_iou_values(a, b, expected):
    assert metrics.iou(a, b, None)[0, 0] == pytest.approx(expected, abs=1e-12)


def test_square_turned_90_degrees_is_identical_without_gate_and_gated_with_it():
    square = np.array([50.0, 60.0, 10.0, 20.0, 20.0])
    turned = square + [0.0, 0.0, 90.0, 0.0, 0.0]
    assert metrics.iou(square, turned, None)[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert metrics.iou(square, turned)[0, 0] == 0.0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # A label and its round trip through corners: equal up to the last digit. Plain
        # GEOS 3.14 overlay gives these pairs a zero-area intersection (shared vertices).
        (
            [
                144.5075036362924,
                774.988016990991,
                20.84848302741507,
                199.48097655543086,
                78.6992090379112,
            ],
            [
                144.50750363629243,
                774.988016990991,
                20.848483027415057,
                199.48097655543083,
                78.69920903791126,
            ],
        ),
        (
            [
                873.6635875225805,
                61.03209766213769,
                80.56472862529824,
                68.13242804847162,
                80.96484051902463,
            ],
            [
                873.6635875225805,
                61.03209766213769,
                -9.43527137470177,
                80.96484051902455,
                68.13242804847162,
            ],
        ),
    ],
)
def test_nearly_coincident_rectangles_have_iou_one(a, b):
    assert metrics.iou_paired(a, b, angle_gate=None) == pytest.approx([1.0], abs=1e-9)
    assert metrics.best_iou(a, b, angle_gate=None) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    ("theta_a", "theta_b", "gated"),
    [(0, 30, True), (0, 29.999, False), (-75, 75, True), (89, -89, False), (0, 180, False)],
)
def test_angle_gate_boundary(theta_a, theta_b, gated):
    a = np.array([0.0, 0.0, theta_a, 20.0, 20.0])
    b = np.array([0.0, 0.0, theta_b, 20.0, 20.0])
    assert bool(metrics.iou(a, b)[0, 0] == 0.0) is gated
    assert metrics.iou(a, b, None)[0, 0] > 0.5


def test_iou_shapes_for_single_rows_and_empty_inputs():
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert metrics.iou(g, g).shape == (1, 1)
    assert metrics.iou(np.zeros((0, 5)), np.tile(g, (3, 1))).shape == (0, 3)
    assert metrics.iou(np.tile(g, (2, 1)), []).shape == (2, 0)


# --------------------------------------------------------------------------- per-image rules

SQUARE = np.array([0.0, 0.0, 0.0, 10.0, 10.0])


def test_iou_of_exactly_the_success_threshold_is_not_a_success():
    at = np.array([6.0, 0.0, 0.0, 10.0, 10.0])  # IoU exactly 0.25
    above = np.array([5.9, 0.0, 0.0, 10.0, 10.0])
    assert metrics.best_iou(SQUARE, at) == 0.25
    assert not metrics.is_success(SQUARE, at)
    assert metrics.is_success(SQUARE, above)


def test_angle_of_exactly_the_gate_is_not_a_success():
    assert not metrics.is_success(SQUARE, SQUARE + [0, 0, 30.0, 0, 0])
    assert metrics.is_success(SQUARE, SQUARE + [0, 0, 29.0, 0, 0])
    assert not metrics.is_success(SQUARE, SQUARE + [0, 0, 150.0, 0, 0])  # 30° mod 180


def test_iou_of_exactly_the_flag_threshold_is_not_flagged():
    a = np.array([0.0, 0.0, 0.0, 6.0, 5.0])
    at = np.array([4.0, 0.0, 0.0, 6.0, 5.0])  # IoU exactly 0.2
    assert metrics.best_iou(a, at) == 0.2
    assert not metrics.is_flagged(a, at)
    assert metrics.is_flagged(a, at + [0.1, 0, 0, 0, 0])
    assert metrics.is_flagged(a, at, threshold=0.21)
    assert metrics.is_flagged(a, at, 0.3)


def test_only_the_top1_prediction_counts():
    far = SQUARE + [500.0, 0, 0, 0, 0]
    gt = np.array([SQUARE])
    assert metrics.is_success(np.array([SQUARE, far]), gt)
    assert not metrics.is_success(np.array([far, SQUARE]), gt)
    assert metrics.is_flagged(np.array([far, SQUARE]), gt)
    assert metrics.best_iou(np.array([far, SQUARE]), gt) == 0.0


def test_best_iou_is_the_best_over_ground_truths_with_gated_pairs_at_zero():
    gt = np.array(
        [
            SQUARE + [0, 0, 45.0, 0, 0],  # large overlap but gated
            SQUARE + [5.0, 0, 0, 0, 0],  # IoU 50/150
            SQUARE + [8.0, 0, 0, 0, 0],  # IoU 20/180
        ]
    )
    assert metrics.best_iou(SQUARE, gt) == pytest.approx(1 / 3)
    assert metrics.best_iou(SQUARE, gt, angle_gate=None) == pytest.approx(1 / math.sqrt(2))


def test_empty_prediction_or_labels():
    empty = np.zeros((0, 5))
    assert metrics.best_iou(empty, SQUARE) == 0.0
    assert metrics.best_iou(SQUARE, empty) == 0.0
    assert not metrics.is_success(empty, SQUARE)
    assert not metrics.is_success(SQUARE, empty)
    assert metrics.is_flagged(empty, SQUARE)
    assert metrics.is_flagged(SQUARE, empty)
    assert metrics.is_flagged([], [])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(4),
        np.zeros((2, 4)),
        np.array([0.0, 0.0, 0.0, np.nan, 1.0]),
        np.array([0.0, np.inf, 0.0, 1.0, 1.0]),
        np.array([0.0, 0.0, 0.0, -1.0, 1.0]),
        np.array([0.0, 0.0, 0.0, 1.0, 0.0]),
    ],
)
def test_malformed_grasps_are_refused(bad):
    with pytest.raises(InvalidInput):
        metrics.iou(bad, SQUARE)
    with pytest.raises(InvalidInput):
        metrics.is_success(SQUARE, bad)
    with pytest.raises(InvalidInput):
        metrics.is_flagged(bad, SQUARE)


@pytest.mark.parametrize("gate", [-1.0, math.nan, math.inf, "wide"])
def test_malformed_angle_gate_is_refused(gate):
    with pytest.raises(InvalidInput, match="angle_gate"):
        metrics.iou(SQUARE, SQUARE, gate)
    with pytest.raises(InvalidInput, match="angle_gate"):
        metrics.best_iou([], SQUARE, angle_gate=gate)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, math.nan, None])
def test_malformed_thresholds_are_refused(threshold):
    with pytest.raises(InvalidInput, match="threshold"):
        metrics.is_flagged(SQUARE, SQUARE, threshold)
    with pytest.raises(InvalidInput, match="threshold"):
        metrics.is_success(SQUARE, SQUARE, iou_threshold=threshold)


def test_iou_paired_needs_equal_lengths():
    with pytest.raises(InvalidInput, match="as many rows"):
        metrics.iou_paired(np.tile(SQUARE, (2, 1)), SQUARE)


# --------------------------------------------------------------------------- batched forms


@PROPERTY
@given(
    st.lists(st.tuples(grasp_arrays(1, 1), grasp_arrays(0, 8), st.booleans()), max_size=8),
    st.floats(0.0, 1.0),
    st.sampled_from([None, 30.0, 15.0]),
)
def test_batched_forms_agree_with_per_image_forms(images, threshold, gate):
    top1 = np.concatenate([p for p, _, _ in images]) if images else np.zeros((0, 5))
    gts = [g for _, g, _ in images]
    predicted = np.array([has for _, _, has in images], dtype=bool)
    preds = [p if has else np.zeros((0, 5)) for p, _, has in images]

    best = metrics.best_iou_batch(top1, gts, predicted=predicted, angle_gate=gate)
    expected = [metrics.best_iou(p, g, angle_gate=gate) for p, g in zip(preds, gts, strict=True)]
    assert best == pytest.approx(np.array(expected), abs=1e-12)

    flagged = metrics.flagged_batch(top1, gts, threshold=threshold, predicted=predicted)
    success = metrics.success_batch(top1, gts, predicted=predicted, iou_threshold=threshold)
    pairs = list(zip(preds, gts, strict=True))
    assert flagged.tolist() == [metrics.is_flagged(p, g, threshold) for p, g in pairs]
    assert success.tolist() == [metrics.is_success(p, g, iou_threshold=threshold) for p, g in pairs]

    # The same labels as one concatenated array with an owner per row.
    owner = np.repeat(np.arange(len(gts)), [len(g) for g in gts]).astype(np.int64)
    flat = np.concatenate(gts) if gts else np.zeros((0, 5))
    assert metrics.best_iou_batch(
        top1, flat, image_index=owner, predicted=predicted, angle_gate=gate
    ) == pytest.approx(best, abs=1e-12)
    if images:
        assert metrics.accuracy(
            top1, gts, predicted=predicted, iou_threshold=threshold
        ) == pytest.approx(success.mean())


def test_batch_rows_without_a_prediction_may_be_nan_and_are_flagged():
    top1 = np.array([SQUARE, [np.nan] * 5])
    gts = [np.array([SQUARE]), np.array([SQUARE])]
    predicted = np.array([True, False])
    assert metrics.flagged_batch(top1, gts, predicted=predicted).tolist() == [False, True]
    assert metrics.success_batch(top1, gts, predicted=predicted).tolist() == [True, False]
    assert metrics.accuracy(top1, gts, predicted=predicted) == 0.5
    with pytest.raises(InvalidInput, match="top1"):
        metrics.flagged_batch(top1, gts)


def test_batch_input_errors():
    top1 = np.array([SQUARE, SQUARE])
    with pytest.raises(InvalidInput, match="2 predictions"):
        metrics.best_iou_batch(top1, [np.array([SQUARE])])
    with pytest.raises(InvalidInput, match="image_index"):
        metrics.best_iou_batch(top1, np.array([SQUARE, SQUARE]))
    with pytest.raises(InvalidInput, match=r"\[0, 2\)"):
        metrics.best_iou_batch(top1, np.array([SQUARE]), image_index=np.array([2]))
    with pytest.raises(InvalidInput, match="image_index"):
        metrics.best_iou_batch(top1, np.array([SQUARE]), image_index=np.array([0, 1]))
    with pytest.raises(InvalidInput, match="image_index"):
        metrics.best_iou_batch(top1, np.array([SQUARE]), image_index=np.array([0.0]))
    with pytest.raises(InvalidInput, match=r"gts\[1\]"):
        metrics.best_iou_batch(top1, [np.array([SQUARE]), np.zeros((1, 4))])
    with pytest.raises(InvalidInput, match="predicted"):
        metrics.best_iou_batch(top1, [SQUARE, SQUARE], predicted=np.array([1, 0]))
    with pytest.raises(InvalidInput, match=r"\(M, 5\)"):
        metrics.best_iou_batch(SQUARE, [SQUARE])
    with pytest.raises(InvalidInput, match="zero images"):
        metrics.accuracy(np.zeros((0, 5)), [])


# --------------------------------------------------------------------------- real Jacquard labels


def _sample_labels(folder) -> list[np.ndarray]:
    files = sorted(folder.glob("*/*_grasps.txt"))
    assert files, f"no grasp files under {folder}"
    return [read_jacquard(f) for f in files]


def test_jacquard_labels_against_themselves(jacquard_samples):
    labels = _sample_labels(jacquard_samples)
    far = np.array([5000.0, 5000.0, 0.0, 0.0, 0.0])
    for gt in labels:
        assert metrics.best_iou(gt[0], gt) == pytest.approx(1.0)
        assert metrics.is_success(gt[0], gt)
        assert not metrics.is_flagged(gt[0], gt)
        assert metrics.is_flagged(gt[0] + far, gt)
        assert not metrics.is_success(gt[0] + far, gt)

    top1 = np.array([gt[0] for gt in labels])
    assert not metrics.flagged_batch(top1, labels).any()
    assert metrics.flagged_batch(top1 + far, labels).all()
    assert metrics.accuracy(top1, labels) == 1.0
    assert metrics.accuracy(top1 + far, labels) == 0.0


def test_jacquard_label_overlaps_match_the_pairwise_reference(jacquard_samples):
    # Real labels repeat poses with several jaw sizes and cluster on the object: the
    # prefilters must keep every overlapping pair.
    for gt in _sample_labels(jacquard_samples)[::12]:
        for gate in (None, 30.0):
            fast = metrics.iou(gt, gt, gate)
            assert fast == pytest.approx(reference_iou(gt, gt, gate), abs=1e-9)
        assert (fast > 0).sum() > len(gt)  # many real overlaps, not just the diagonal
