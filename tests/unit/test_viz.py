"""regrasp.grasp.drawing: overlays draw where the rectangles are, in their colours;
charts are PNGs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from regrasp.grasp import drawing as viz
from regrasp.platform.errors import InvalidInput

GT = np.array([[50.0, 50.0, 0.0, 40.0, 10.0]])
PRED = np.array([[120.0, 120.0, 90.0, 30.0, 10.0]])


def _grey(size: int = 200) -> np.ndarray:
    return np.full((size, size, 3), 128, dtype=np.uint8)


def _has(picture: np.ndarray, colour, region) -> bool:
    """Whether a pixel near `colour` lies in `region` = (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = region
    assert y1 > y0 and x1 > x0, f"empty region {region}"
    patch = picture[y0:y1, x0:x1].astype(int)
    return bool((np.abs(patch - np.array(colour)).sum(axis=2) < 30).any())


def test_overlay_draws_labels_green_predictions_red_and_leaves_input_alone():
    image = _grey()
    out = viz.review_overlay(image, labels=GT, predictions=PRED)
    assert out.shape == image.shape and (image == 128).all()
    # The label's jaws sit at x = 50 ± 20; the prediction's at y = 120 ± 15.
    assert _has(out, viz.LABEL, (40, 60, 25, 35)) and not _has(
        out, viz.PREDICTION, (40, 60, 25, 35)
    )
    assert _has(out, viz.PREDICTION, (100, 110, 110, 130))
    # Nothing is drawn far from both rectangles.
    assert (out[170:, :40] == 128).all()


def test_wrong_rectangles_are_orange_and_accepted_predictions_tagged():
    out = viz.review_overlay(_grey(), labels=GT, predictions=PRED, wrong=[0], accepted=[0])
    assert _has(out, viz.WRONG, (40, 60, 25, 75)) and not _has(out, viz.LABEL, (40, 60, 25, 75))
    assert _has(out, viz.ACCEPTED, (80, 115, 100, 140))
    with pytest.raises(InvalidInput):
        viz.review_overlay(_grey(), labels=GT, predictions=PRED, wrong=[3])


def test_zoom_box_is_a_square_around_the_rectangles_inside_the_image():
    x0, y0, x1, y1 = viz.zoom_box(np.concatenate([GT, PRED]), shape=(200, 300), margin=0.1)
    assert x1 - x0 == y1 - y0
    assert x0 <= 30 and y0 <= 45 and x1 >= 125 and y1 >= 135
    assert 0 <= x0 and 0 <= y0 and x1 <= 300 and y1 <= 200
    assert viz.zoom_box(np.zeros((0, 5)), shape=(20, 30)) == (0, 0, 30, 20)
    zoomed = viz.review_overlay(_grey(), labels=GT, predictions=PRED, zoom=True, size=256)
    assert max(zoomed.shape[:2]) == 256


def test_depth_is_grey_near_bright_and_invalid_pixels_black():
    depth = np.linspace(0.5, 1.0, 100 * 100, dtype=np.float32).reshape(100, 100)
    depth[0, 0] = -1.0
    rgb = viz.depth_to_rgb(depth)
    assert rgb.shape == (100, 100, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # grey
    assert (rgb[0, 0] == 0).all() and rgb[0, 1, 0] > rgb[99, 99, 0] > 0  # near is brighter
    # Green labels keep their contrast on depth: no grey pixel is close to the label colour.
    drawn = viz.review_overlay(depth, labels=np.array([[50.0, 50.0, 0.0, 40.0, 10.0]]))
    assert _has(drawn, viz.LABEL, (40, 60, 25, 35))
    assert not _has(rgb, viz.LABEL, (0, 100, 0, 100))


def test_only_wrong_labels_are_numbered_unless_all_numbers_are_asked_for():
    labels = np.array([[40.0, 60.0, 0.0, 30.0, 10.0], [140.0, 60.0, 0.0, 30.0, 10.0]])
    plain = viz.review_overlay(_grey(), labels=labels)
    marked = viz.review_overlay(_grey(), labels=labels, wrong=[1])
    numbered = viz.review_overlay(_grey(), labels=labels, number_labels=True)
    above_second = (30, 52, 125, 160)  # the second rectangle's number tag
    # Numbers sit above each rectangle: none without a mark, the wrong one's in orange.
    assert not _has(plain, viz.WRONG, above_second) and (plain[30:50, 25:60] == 128).all()
    assert _has(marked, viz.WRONG, above_second) and (marked[30:50, 25:60] == 128).all()
    assert not (numbered[30:50, 25:60] == 128).all()  # every label numbered on request


def test_handles_lie_on_each_rectangles_edge_and_follow_the_frame():
    # One pose with two jaw sizes: same centre, different handles.
    pose = np.array([[100.0, 80.0, 90.0, 40.0, 10.0], [100.0, 80.0, 90.0, 40.0, 30.0]])
    handles = viz.label_handles(pose)
    # theta 90: the opening runs along y, the jaw along -x; handles at x = 100 - jaw/2.
    np.testing.assert_allclose(handles, [[95.0, 80.0], [85.0, 80.0]], atol=1e-9)
    frame = viz.review_frame((200, 400, 3), labels=pose, zoom=True, size=256)
    x0, y0, x1, y1 = frame.box
    assert max(frame.size) == 256 and frame.scale == pytest.approx(256 / (x1 - x0))
    moved = frame.grasps(pose)
    np.testing.assert_allclose(moved[:, :2], (pose[:, :2] - [x0, y0]) * frame.scale)
    np.testing.assert_allclose(moved[:, 3:], pose[:, 3:] * frame.scale)
    picture = viz.review_overlay(
        np.full((200, 400, 3), 128, np.uint8), labels=pose, zoom=True, size=256
    )
    assert picture.shape[:2] == frame.size[::-1]
    # A point on the picture maps back to the image pixel it shows (a drawn stroke's ends).
    np.testing.assert_allclose(frame.to_image(moved[:, :2]), pose[:, :2])


def test_drawn_grasps_are_cyan_and_do_not_move_the_zoom():
    drawn = np.array([[60.0, 40.0, 0.0, 30.0, 10.0]])
    plain = viz.review_overlay(_grey(), labels=GT, zoom=True, size=200)
    with_drawn = viz.review_overlay(_grey(), labels=GT, drawn=drawn, zoom=True, size=200)
    assert plain.shape == with_drawn.shape  # same crop: the stroke's pixels keep their meaning
    assert not _has(plain, viz.DRAWN, (0, 200, 0, 200))
    assert _has(with_drawn, viz.DRAWN, (0, 200, 0, 200))


def test_before_after_marks_removed_and_added():
    before = np.concatenate([GT, PRED])
    after = np.concatenate([GT, [[150.0, 60.0, 45.0, 30.0, 10.0]]])
    pair = viz.before_after(_grey(), before=before, after=after, size=200, gap=8)
    assert pair.shape == (200, 408, 3)
    left, right = pair[:, :200], pair[:, 208:]
    assert _has(left, viz.WRONG, (100, 140, 100, 140))  # PRED removed
    assert not _has(right, viz.WRONG, (100, 140, 100, 140))
    assert _has(right, viz.LABEL, (40, 80, 130, 170))  # the added one: a label, green
    assert not _has(pair, viz.PREDICTION, (0, 200, 0, 408))  # red is for predictions only


def test_png_and_charts_round_trip():
    png = viz.to_png(_grey(10))
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (10, 10, 3)
    mix = {
        "true_negative": [3, 1],
        "missing_label": [2, 0],
        "annotation_error": [1, 1],
        "fix": [0, 2],
    }
    for chart in (
        viz.chart_flagged([1, 2], flagged=[10, 6], reviewed=[10, 4]),
        viz.chart_decision_mix([1, 2], mix=mix),
        viz.chart_metrics([1, 2], series={"accuracy": [0.7, None]}, ylabel="acc", title="t"),
    ):
        assert chart.startswith(b"\x89PNG")
    with pytest.raises(InvalidInput):
        viz.chart_flagged([1, 2], flagged=[1])


def test_empty_and_zero_charts_have_no_negative_axis():
    from matplotlib.figure import Figure

    for draw in (
        lambda ax: ax.bar([0, 1], [0, 0]),
        lambda ax: ax.plot([0, 1], [np.nan, np.nan]),
        lambda ax: None,
        lambda ax: ax.bar([0, 1], [3, 7]),
    ):
        ax = Figure().add_subplot()
        draw(ax)
        viz._counts_axis(ax)
        low, high = ax.get_ylim()
        assert low == 0 and high >= 1
    ax = Figure().add_subplot()
    ax.bar([0, 1], [3, 7])
    viz._counts_axis(ax)
    assert ax.get_ylim()[1] >= 7  # real data keeps its range


def test_decision_mix_chart_draws_no_red():
    # Red means the model's predictions everywhere: no decision is drawn red in a chart.
    mix = {name: [4, 2] for name in ("true_negative", "missing_label", "annotation_error", "fix")}
    png = viz.chart_decision_mix([1, 2], mix=mix)
    hsv = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2HSV
    )
    h, s, v = (hsv[..., i].astype(int) for i in range(3))
    coloured = (s > 100) & (v > 80)
    red = coloured & ((h <= 8) | (h >= 172))
    assert coloured.sum() > 1000  # the bars are drawn
    assert red.sum() == 0, f"{red.sum()} red pixels in the decision-mix chart"
