"""Synthetic Jacquard-like data: scenes, exact truth, corruption, dataset writing, reviewer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely

from regrasp.data.synthetic.corruption import (
    CATEGORY,
    EXPECTED_DECISION,
    KINDS,
    PAPER_KINDS,
    applicable_kinds,
    choose_corrupted,
    corrupt,
    wrong_rectangles,
)
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.data.synthetic.geometry import grasp_validity
from regrasp.data.synthetic.manifest import read_manifest
from regrasp.data.synthetic.reviewer import SimulatedReviewer, careful_decision
from regrasp.data.synthetic.scenes import FAMILIES, make_object, render_scene
from regrasp.grasp.metrics import iou
from regrasp.grasp.rectangles import JAW, OPENING, THETA, X, Y, angle_difference, read_jacquard
from regrasp.platform.errors import Conflict, InvalidInput

SIZE = 256


@pytest.fixture(scope="module")
def scenes() -> dict[str, list]:
    """Three 512² scenes of every family (large enough for pixel-level checks)."""
    return {f: [render_scene(f, size=512, seed=s) for s in range(3)] for f in FAMILIES}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    manifest = generate_dataset(
        root, images=24, objects=6, size=SIZE, seed=7, corrupt_fraction=0.5, workers=1
    )
    return root, manifest


# --------------------------------------------------------------------------- scenes


def test_every_family_renders_an_object_with_grasps(scenes):
    for family, items in scenes.items():
        for scene in items:
            assert scene.family == family
            assert scene.rgb.shape == (512, 512, 3) and scene.rgb.dtype == np.uint8
            assert set(np.unique(scene.mask)) == {0, 255}
            on = scene.mask > 0
            # The object is visible: its colour differs from the table around it.
            ring = (cv2.dilate(scene.mask, np.ones((15, 15), np.uint8)) > 0) & ~on
            diff = np.abs(scene.rgb[on].mean(0) - scene.rgb[ring].mean(0)).max()
            assert diff > 3 or scene.rgb[on].std() > 10
            # The mask is the outline, rasterised.
            assert abs(on.sum() - scene.shape.area) < 0.1 * scene.shape.area + 50
            # Jacquard-like: each pose repeated with 2-4 jaw sizes.
            _, counts = np.unique(scene.grasps[:, :4], axis=0, return_counts=True)
            assert counts.min() >= 2 and counts.max() <= 4
            assert 30 <= len(scene.grasps) <= 250


def test_family_grasp_structure(scenes):
    for scene in scenes["stick"]:
        axis = _long_axis(scene.shape)
        assert (angle_difference(scene.grasps[:, THETA], axis) > 85).all()
    for scene in scenes["disc"]:
        c = scene.shape.centroid
        assert np.hypot(scene.grasps[:, X] - c.x, scene.grasps[:, Y] - c.y).max() < 1.0
        assert len(np.unique(np.round(scene.grasps[:, THETA]))) >= 8
    for scene in scenes["box"]:
        # Closing directions of different groups are perpendicular sides.
        groups = np.unique(scene.groups)
        means = [np.median(scene.grasps[scene.groups == g, THETA]) for g in groups]
        if len(means) == 2:
            assert 85 < angle_difference(means[0], means[1]) <= 90
    for scene in scenes["ring"]:
        hole = shapely.Polygon(scene.shape.interiors[0])
        assert not shapely.contains_xy(hole, scene.grasps[:, X], scene.grasps[:, Y]).any()
        # Closing radially: along the line from the ring centre to the grasp.
        c = hole.centroid
        radial = np.rad2deg(np.arctan2(scene.grasps[:, Y] - c.y, scene.grasps[:, X] - c.x))
        assert (angle_difference(radial, scene.grasps[:, THETA]) < 3).all()
    for family in ("lshape", "tshape"):
        for scene in scenes[family]:
            assert set(np.unique(scene.groups)) == {0, 1}


def test_ground_truth_is_valid_against_the_object(scenes):
    for items in scenes.values():
        for scene in items:
            assert grasp_validity(scene.shape, scene.grasps, max_opening=scene.max_opening).all()
            _assert_valid_on_mask(scene.mask, scene.grasps)


def test_box_too_wide_for_the_gripper_is_labelled_across_its_width_only():
    for seed in range(40):
        obj = make_object("box", seed=seed, max_opening=120.0)
        minx, miny, maxx, maxy = obj.shape.bounds
        if max(maxx - minx, maxy - miny) > 120:
            assert len(np.unique(obj.groups)) == 1
            assert (obj.grasps[:, OPENING] <= 120).all()
            return
    pytest.fail("no box wider than the gripper in 40 seeds")


def test_depth_is_plausible(scenes):
    for items in scenes.values():
        for scene in items:
            d, s, on = scene.perfect_depth, scene.stereo_depth, scene.mask > 0
            assert d.dtype == np.float32 and s.dtype == np.float32
            assert 1.35 < d.min() and d.max() < 1.65
            # Height above the table plane (fitted on the table pixels): a few cm at most.
            yy, xx = np.nonzero(~on)
            a = np.column_stack([xx, yy, np.ones_like(xx)]).astype(np.float64)
            coef, *_ = np.linalg.lstsq(a, d[~on].astype(np.float64), rcond=None)
            ys, xs = np.nonzero(on)
            height = coef[0] * xs + coef[1] * ys + coef[2] - d[on]
            assert 0.004 < np.median(height) and height.max() < 0.15
            holes = s == -1
            assert 0 < holes.mean() < 0.05
            valid = ~holes
            assert np.median(np.abs(s[valid] - d[valid])) < 0.003
            assert len(np.unique(s)) < 2000  # disparity-quantised, like a stereo camera


def test_render_is_deterministic_and_seed_dependent():
    a = render_scene("ring", size=SIZE, seed=5)
    b = render_scene("ring", size=SIZE, seed=5)
    c = render_scene("ring", size=SIZE, seed=6)
    for name in ("rgb", "perfect_depth", "stereo_depth", "mask", "grasps"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.rgb, c.rgb)


def test_grasps_scale_with_image_size():
    obj = make_object("tshape", seed=3)
    small = render_scene(obj, size=256, seed=1)
    large = render_scene(obj, size=1024, seed=1)
    assert np.allclose(
        large.grasps[:, [OPENING, JAW]], 4 * small.grasps[:, [OPENING, JAW]], atol=1e-3
    )
    assert np.allclose(large.grasps[:, THETA], small.grasps[:, THETA], atol=1e-3)
    assert large.shape.area == pytest.approx(16 * small.shape.area, rel=1e-3)


def test_validity_of_hand_made_grasps_on_a_box():
    box = shapely.box(-50, -20, 50, 20)  # 100 × 40 px
    rows = np.array(
        [
            [0, 0, 90, 60, 20],  # across the 40 px side: valid
            [10, 5, 90, 60, 40],  # off-centre, still across: valid
            [0, 0, 0, 130, 20],  # across the 100 px side, opening 130: valid
            [0, 0, 0, 130, 20],  # same, but the gripper opens only 120 (below)
            [0, 0, 45, 160, 20],  # slanted 45°: fingers slide off the corners' faces
            [0, 0, 90, 30, 20],  # narrower than the box: fingers collide
            [0, 30, 90, 60, 20],  # centre off the box
            [45, 0, 90, 60, 20],  # jaw overhangs the end of the box
        ],
        dtype=float,
    )
    ok = grasp_validity(box, rows, max_opening=200)
    assert ok.tolist() == [True, True, True, True, False, False, False, False]
    assert not grasp_validity(box, rows[3:4], max_opening=120)[0]


# --------------------------------------------------------------------------- corruption


@pytest.mark.parametrize(
    "images, fraction", [(30, 0.0), (30, 0.1), (30, 0.37), (7, 0.5), (12, 1.0)]
)
def test_corrupted_count_is_exact(images, fraction):
    chosen = choose_corrupted(images, fraction, seed=1)
    assert len(chosen) == round(fraction * images)
    assert all(0 <= i < images for i in chosen)
    kinds = list(chosen.values())
    if len(kinds) >= 3:
        assert set(kinds) == set(PAPER_KINDS)
        assert (
            max(kinds.count(k) for k in PAPER_KINDS) - min(kinds.count(k) for k in PAPER_KINDS) <= 1
        )
    assert choose_corrupted(images, fraction, seed=1) == chosen


def test_choice_of_corrupted_images_depends_on_seed():
    assert choose_corrupted(100, 0.3, seed=1) != choose_corrupted(100, 0.3, seed=2)


def test_inapplicable_kinds_fall_back():
    stick = render_scene("stick", size=SIZE, seed=1)
    disc = render_scene("disc", size=SIZE, seed=1)
    assert "one_orientation" not in applicable_kinds(stick.grasps, stick.groups)
    assert "part_only" not in applicable_kinds(disc.grasps, disc.groups)
    for scene, kind in ((stick, "one_orientation"), (disc, "part_only")):
        c = corrupt(
            scene.grasps,
            scene.groups,
            scene.shape,
            kind=kind,
            max_opening=scene.max_opening,
            image_size=SIZE,
            seed=0,
        )
        assert c.kind != kind and c.kind in applicable_kinds(scene.grasps, scene.groups)


def test_dataset_corruption_fraction_and_kinds(dataset):
    root, manifest = dataset
    corrupted = manifest.corrupted()
    assert len(corrupted) == round(0.5 * 24) == manifest.params["corrupted"]
    assert {r.corruption for r in corrupted} >= set(PAPER_KINDS) - {"one_orientation"}
    for record in manifest.records:
        labels = read_jacquard(record.paths(root)["grasps"])
        assert len(labels) == record.labels_written
        if not record.corrupted:
            assert np.array_equal(labels, record.grasps)
            continue
        assert record.category == CATEGORY[record.corruption]
        assert record.expected_decision == EXPECTED_DECISION[record.corruption]
        _assert_kind_as_labelled(record, labels)


def test_every_kind_is_as_labelled_on_every_family():
    for family in FAMILIES:
        scene = render_scene(family, size=SIZE, seed=11)
        for kind in KINDS:
            c = corrupt(
                scene.grasps,
                scene.groups,
                scene.shape,
                kind=kind,
                max_opening=scene.max_opening,
                image_size=SIZE,
                seed=3,
            )
            record = _Record(scene, c)
            _assert_kind_as_labelled(record, c.labels)


# --------------------------------------------------------------------------- dataset files


def test_dataset_layout_reads_back(dataset):
    root, manifest = dataset
    assert len({r.object_id for r in manifest.records}) == 6
    assert {r.family for r in manifest.records} == set(FAMILIES)
    for record in manifest.records:
        paths = record.paths(root)
        assert paths["rgb"].parent.name == record.object_id
        rgb = cv2.imread(str(paths["rgb"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(paths["mask"]), cv2.IMREAD_UNCHANGED)
        perfect = cv2.imread(str(paths["perfect_depth"]), cv2.IMREAD_UNCHANGED)
        stereo = cv2.imread(str(paths["stereo_depth"]), cv2.IMREAD_UNCHANGED)
        assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
        assert mask.shape == (SIZE, SIZE) and set(np.unique(mask)) <= {0, 255}
        assert perfect.dtype == np.float32 and stereo.dtype == np.float32
        assert (stereo == -1).any()
        assert grasp_validity(record.shape, record.grasps, max_opening=record.max_opening).all()
    # Objects hold several images, numbered from 0.
    by_object: dict[str, list[int]] = {}
    for r in manifest.records:
        by_object.setdefault(r.object_id, []).append(r.index)
    assert all(sorted(v) == list(range(len(v))) and len(v) == 4 for v in by_object.values())


def test_manifest_round_trips(dataset):
    root, manifest = dataset
    again = read_manifest(root)
    assert again.params == manifest.params
    assert [r.stem for r in again.records] == [r.stem for r in manifest.records]
    for a, b in zip(again.records, manifest.records, strict=True):
        assert np.array_equal(a.grasps, b.grasps)
        assert shapely.equals_exact(a.shape, b.shape, tolerance=0)
        assert (a.corruption, a.wrong_labels, a.detail) == (b.corruption, b.wrong_labels, b.detail)


def test_refuses_bad_arguments(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(Conflict):
        generate_dataset(tmp_path / "full", images=2, size=128)
    with pytest.raises(InvalidInput):
        generate_dataset(tmp_path / "n", images=2, objects=3, size=128)
    with pytest.raises(InvalidInput):
        generate_dataset(tmp_path / "n", images=2, size=128, corrupt_fraction=1.5)
    with pytest.raises(InvalidInput):
        render_scene("banana", size=128)
    assert not (tmp_path / "n").exists()


# --------------------------------------------------------------------------- reviewer


def test_reviewer_accepts_a_valid_prediction_on_a_missing_label_image():
    scene, truth, c = _box_missing_an_orientation()
    assert len(np.unique(scene.groups)) == 2
    dropped = scene.grasps[scene.groups != c.detail["group"]]
    wrong = _wrong_rows(scene)
    predictions = np.vstack([dropped[:1], wrong[:1]])
    decision = careful_decision(truth, c.labels, predictions)
    assert decision.kind == "missing_label"
    assert decision.accepted_predictions == [0]
    # A manifest line works as well as the record.
    assert SimulatedReviewer(seed=0).review(truth.to_dict(), c.labels, predictions) == decision


def test_reviewer_says_true_negative_when_only_the_model_is_wrong():
    scene = render_scene("stick", size=SIZE, seed=4)
    predictions = _wrong_rows(scene)[:3]
    decision = SimulatedReviewer(seed=0).review(_truth(scene), scene.grasps, predictions)
    assert decision.kind == "true_negative"
    assert decision.accepted_predictions == [] and decision.removed_labels == []
    # A prediction already labelled is not a missing label either.
    decision = careful_decision(_truth(scene), scene.grasps, scene.grasps[:1])
    assert decision.kind == "true_negative"


def test_reviewer_finds_annotation_errors_and_fixes():
    scene = render_scene("stick", size=SIZE, seed=8)
    truth = _truth(scene)
    for kind, expected in (("wrong_action", "annotation_error"), ("stray_rectangles", "fix")):
        c = corrupt(
            scene.grasps,
            scene.groups,
            scene.shape,
            kind=kind,
            max_opening=scene.max_opening,
            image_size=SIZE,
            seed=1,
        )
        decision = careful_decision(truth, c.labels, scene.grasps[:2])
        assert decision.kind == expected == EXPECTED_DECISION[kind]
        if expected == "fix":
            assert decision.removed_labels == c.wrong_labels


def test_reviewer_with_error_rate_one_is_always_wrong():
    reviewer = SimulatedReviewer(error_rate=1.0, seed=3)
    for family in FAMILIES:
        scene = render_scene(family, size=SIZE, seed=1)
        truth = _truth(scene)
        cases = [
            (scene.grasps, _wrong_rows(scene)[:2]),
            (scene.grasps[scene.groups == scene.groups[0]], scene.grasps[-1:]),
            (_wrong_rows(scene), scene.grasps[:1]),
        ]
        for labels, predictions in cases:
            for _ in range(5):
                right = careful_decision(truth, labels, predictions)
                wrong = reviewer.review(truth, labels, predictions)
                assert wrong.kind != right.kind and wrong.simulated_error


def test_reviewer_error_rate_is_respected():
    scene = render_scene("box", size=SIZE, seed=2)
    truth = _truth(scene)
    labels, predictions = scene.grasps, _wrong_rows(scene)[:1]
    right = careful_decision(truth, labels, predictions)
    reviewer = SimulatedReviewer(error_rate=0.2, seed=12)
    decisions = [reviewer.review(truth, labels, predictions) for _ in range(800)]
    wrong = np.mean([d.kind != right.kind for d in decisions])
    assert 0.15 < wrong < 0.25
    assert all((d.kind != right.kind) == d.simulated_error for d in decisions)
    again = SimulatedReviewer(error_rate=0.2, seed=12)
    assert [again.review(truth, labels, predictions) for _ in range(50)] == decisions[:50]


def test_reviewer_refuses_bad_error_rate():
    with pytest.raises(InvalidInput):
        SimulatedReviewer(error_rate=1.5)
    with pytest.raises(InvalidInput):
        SimulatedReviewer(draw=-1)


def test_a_drawing_reviewer_draws_true_grasps_that_no_prediction_shows():
    """The missing-label image whose model shows nothing useful: a reviewer who only
    accepts predictions keeps it as it is; one who draws adds true grasps of the dropped
    orientation, none alike, none already labelled."""
    scene, truth, c = _box_missing_an_orientation()
    wrong = _wrong_rows(scene)[:2]
    assert careful_decision(truth, c.labels, wrong).kind == "true_negative"
    d = SimulatedReviewer(seed=0, draw=3).review(truth, c.labels, wrong)
    drawn = np.asarray(d.drawn_grasps)
    assert d.kind == "missing_label" and d.accepted_predictions == [] and drawn.shape == (3, 5)
    assert (iou(drawn, scene.grasps).max(axis=1) > 0.25).all()  # true grasps
    assert (iou(drawn, c.labels).max(axis=1) <= 0.25).all()  # none already labelled
    alike = iou(drawn, drawn) > 0.25
    assert not alike[~np.eye(3, dtype=bool)].any()
    # Accepted predictions count as covered: a drawing reviewer does not redraw them.
    dropped = scene.grasps[scene.groups != c.detail["group"]]
    d = careful_decision(truth, c.labels, dropped[:1], draw=3)
    assert d.accepted_predictions == [0]
    assert (iou(np.asarray(d.drawn_grasps), dropped[:1]) <= 0.25).all()


def _box_missing_an_orientation():
    """A box scene, its truth, and its labels with one orientation's grasps dropped."""
    scene = render_scene("box", size=SIZE, seed=2)
    c = corrupt(
        scene.grasps,
        scene.groups,
        scene.shape,
        kind="one_orientation",
        max_opening=scene.max_opening,
        image_size=SIZE,
        seed=0,
    )
    return scene, _truth(scene), c


def test_a_confirming_reviewer_keeps_the_valid_proposed_grasps_and_draws_no_others():
    scene, truth, c = _box_missing_an_orientation()
    first = careful_decision(truth, c.labels, np.empty((0, 5)), draw=2)
    second = careful_decision(
        truth, c.labels, np.empty((0, 5)), draw=2, proposed=np.asarray(first.drawn_grasps)
    )
    assert second == first
    bad = _wrong_rows(scene)[:1]
    proposed = np.vstack([np.asarray(first.drawn_grasps)[:1], bad])
    third = careful_decision(truth, c.labels, np.empty((0, 5)), draw=2, proposed=proposed)
    np.testing.assert_array_equal(third.drawn_grasps, proposed[:1])


# --------------------------------------------------------------------------- helpers


class _Record:
    """The fields of a TruthRecord the kind checks read, from a scene and a corruption."""

    def __init__(self, scene, c):
        self.grasps, self.groups, self.shape = scene.grasps, scene.groups, scene.shape
        self.max_opening = scene.max_opening
        self.corruption, self.detail, self.wrong_labels = c.kind, c.detail, tuple(c.wrong_labels)


def _truth(scene):
    from regrasp.data.synthetic.manifest import TruthRecord

    return TruthRecord(
        object_id="obj",
        index=0,
        family=scene.family,
        size=scene.size,
        grasps=scene.grasps,
        groups=scene.groups,
        shape=scene.shape,
        max_opening=scene.max_opening,
        labels_written=len(scene.grasps),
    )


def _wrong_rows(scene) -> np.ndarray:
    """Rectangles that are not grasps of this object and match none of its true grasps."""
    return wrong_rectangles(
        scene.grasps, scene.shape, max_opening=scene.max_opening, image_size=scene.size
    )


def _rows_in(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index into `table` of each row of `rows` (exact match), -1 when absent."""
    eq = (rows[:, None, :] == table[None, :, :]).all(axis=2)
    return np.where(eq.any(axis=1), eq.argmax(axis=1), -1)


def _assert_kind_as_labelled(record, labels: np.ndarray) -> None:
    kind = record.corruption
    if kind in ("one_orientation", "part_only"):
        where = _rows_in(labels, record.grasps)
        assert (where >= 0).all(), "missing-label kinds keep a subset of the truth"
        assert 0 < len(labels) < len(record.grasps)
        assert grasp_validity(record.shape, labels, max_opening=record.max_opening).all()
        if kind == "one_orientation":
            assert len(np.unique(record.groups)) >= 2
            assert set(record.groups[where].tolist()) == {record.detail["group"]}
        else:
            a = np.deg2rad(record.detail["direction_deg"])
            proj = labels[:, [X, Y]] @ np.array([np.cos(a), np.sin(a)])
            cut = record.detail["cut"]
            assert (proj > cut - 1e-3).all() or (proj <= cut + 1e-3).all()
    else:
        wrong = np.zeros(len(labels), dtype=bool)
        wrong[list(record.wrong_labels)] = True
        valid = grasp_validity(record.shape, labels, max_opening=record.max_opening)
        assert not valid[wrong].any() and valid[~wrong].all()
        assert (iou(labels[wrong], record.grasps).max(axis=1) <= 0.25).all()
        if kind == "wrong_action":
            assert wrong.all()
        else:
            assert 0 < wrong.sum() <= len(labels) / 3 + 1
            assert np.array_equal(labels[~wrong], record.grasps)


def _assert_valid_on_mask(mask: np.ndarray, grasps: np.ndarray) -> None:
    """Pixel-level check, independent of the polygon code: centre on the object, fingers
    off it, and the object thinner along the closing line than the opening."""
    kernel = np.ones((3, 3), np.uint8)
    inside, core = cv2.dilate(mask, kernel) > 0, cv2.erode(mask, kernel) > 0
    h, w = mask.shape

    def at(img, pts):
        ix = np.clip(np.round(pts[..., 0]).astype(int), 0, w - 1)
        iy = np.clip(np.round(pts[..., 1]).astype(int), 0, h - 1)
        return img[iy, ix]

    c = grasps[:, [X, Y]]
    t = np.deg2rad(grasps[:, THETA])
    u = np.stack([np.cos(t), np.sin(t)], axis=1)
    v = np.stack([-np.sin(t), np.cos(t)], axis=1)
    assert at(inside, c).all()
    s = np.linspace(-0.5, 0.5, 21)[None, :, None]
    for sign in (1, -1):
        finger = (c + sign * grasps[:, OPENING, None] / 2 * u)[:, None, :] + s * grasps[
            :, JAW, None, None
        ] * v[:, None, :]
        assert not at(core, finger).any()
        # Walking from the centre towards this finger leaves the object before reaching it.
        walk = (
            c[:, None, :]
            + sign
            * np.linspace(0, 0.5, 41)[None, :, None]
            * grasps[:, OPENING, None, None]
            * u[:, None, :]
        )
        assert (~at(mask > 0, walk)).any(axis=1).all()


def _long_axis(shape) -> float:
    rect = shapely.get_coordinates(shape.minimum_rotated_rectangle)
    edges = np.diff(rect, axis=0)
    longest = edges[np.argmax(np.hypot(edges[:, 0], edges[:, 1]))]
    return float(np.rad2deg(np.arctan2(longest[1], longest[0])))


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_the_import_api_names_the_same_corruption_kinds_as_the_generator():
    from typing import get_args

    from regrasp.api.datasets import CorruptionKind, SyntheticSource
    from regrasp.data.synthetic.corruption import KINDS, PAPER_KINDS

    assert get_args(CorruptionKind) == KINDS
    assert tuple(SyntheticSource(images=1).corruption_kinds) == PAPER_KINDS
    with pytest.raises(ValueError, match="corruption_kinds"):
        SyntheticSource(images=1, corruption_kinds=["smudged"])


def test_the_demo_spec_regenerates_the_truth_of_its_corruption_kinds():
    from regrasp.demo.loop import SyntheticSpec, synthetic_truth

    spec = SyntheticSpec(
        images=12, size=64, corrupt_fraction=0.5, corruption_kinds=("wrong_action",)
    )
    truth = synthetic_truth(spec)
    kinds = [r.corruption for r in truth.values() if r.corrupted]
    assert len(kinds) == 6 and set(kinds) == {"wrong_action"}
    assert spec.source().corruption_kinds == ["wrong_action"]
