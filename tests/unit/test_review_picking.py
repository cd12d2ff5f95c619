"""The review screen's picking pieces: typed numbers, the clickable figure, its events."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from regrasp.grasp import drawing as viz
from regrasp.platform.errors import InvalidInput
from services.review_ui.session import Picture, parse_label_numbers
from services.review_ui.widgets import label_picker_figure, picked_numbers, picked_stroke


def test_typed_numbers_are_exact_never_substrings():
    assert parse_label_numbers("2", 136) == [2]  # not 12, 20-29, 32 ... (the old multiselect)
    assert parse_label_numbers(" 3 7,40; 3 ", 136) == [3, 7, 40]
    assert parse_label_numbers("10-12 2", 136) == [10, 11, 12, 2]
    assert parse_label_numbers("", 136) == []
    for text, says in (
        ("137", "does not exist"),
        ("0", "does not exist"),
        ("2x", "not a label number"),
        ("-3", "not a label number"),
        ("9-4", "runs backwards"),
    ):
        with pytest.raises(InvalidInput, match=says):
            parse_label_numbers(text, 136)


def test_figure_has_the_picture_behind_one_marker_per_label():
    png = viz.to_png(np.zeros((30, 40, 3), np.uint8))
    handles = np.array([[5.0, 6.0], [20.0, 25.0], [35.0, 2.0]])
    wrong = np.array([False, True, False])
    figure = label_picker_figure(
        Picture(png=png, size=(40, 30), handles=handles, wrong=wrong), height=300
    )
    (image,) = figure.layout.images
    assert base64.b64decode(image.source.split(",", 1)[1]) == png
    assert (image.sizex, image.sizey, image.x, image.y) == (40, 30, 0, 0)
    (markers,) = figure.data
    np.testing.assert_allclose(np.c_[markers.x, markers.y], handles)
    assert list(markers.customdata) == [1, 2, 3]
    colours = list(markers.marker.color)
    assert colours[1] == "#ff9600" and colours[0] == colours[2] == "#28c83c"  # orange, green
    assert list(figure.layout.yaxis.range) == [30, 0]  # y down, as in the image
    assert figure.layout.dragmode is None  # clicks stay point selections (see the docstring)


def test_selection_events_give_label_numbers():
    event = {"selection": {"points": [{"point_index": 4}, {"point_index": 0}, {"x": 1}]}}
    assert picked_numbers(event) == [1, 5]
    assert picked_numbers(None) == [] and picked_numbers({}) == []
    assert picked_numbers({"selection": {"points": []}}) == []


def test_a_lasso_event_gives_the_strokes_ends():
    event = {"selection": {"points": [], "lasso": [{"x": [1.0, 5.0, 9.0], "y": [2, 4, 8]}]}}
    assert picked_stroke(event) == ((1.0, 2.0), (9.0, 8.0))
    assert picked_stroke({"selection": {"points": [], "lasso": []}}) is None
    assert picked_stroke({"selection": {"lasso": [{"x": [1.0], "y": [2.0]}]}}) is None
    assert picked_stroke(None) is None


def test_why_this_image_names_the_labels_reach_and_grasp_coverage_when_they_queued_it():
    from regrasp.api.review import LabelQualityPublic, ReviewItemPublic
    from services.review_ui.widgets import quality_reason

    def item(**quality) -> ReviewItemPublic:
        base = {"quality": 0.3, "kind": "missing", "unmatched": [], "suspect_grasp_ids": []}
        return ReviewItemPublic.model_construct(
            labels=[], quality=LabelQualityPublic(**(base | quality))
        )

    assert quality_reason(item(coverage=0.55)).startswith("the labels reach only 55% of the object")
    assert quality_reason(item(coverage=0.55, unmatched=[1])).startswith(
        "the model is sure of grasps no label covers (★ 2); the labels reach only 55%"
    )
    assert quality_reason(item(coverage=1.0)).startswith("the model's confident grasps disagree")
    assert quality_reason(item(coverage=None)).startswith("the model's confident grasps disagree")
    assert quality_reason(item(coverage=1.0, grasp_coverage=0.4)).startswith(
        "the labels match only 40% of the grasps its outline allows"
    )
    assert quality_reason(item(coverage=0.55, grasp_coverage=0.4)).startswith(
        "the labels reach only 55% of the object; they match only 40% of the grasps"
    )
