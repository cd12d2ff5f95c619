"""Grasp formats and geometry, on hand-made cases and on every real Jacquard sample."""

from __future__ import annotations

import numpy as np
import pytest

from regrasp.grasp.rectangles import (
    angle_difference,
    as_grasps,
    corners,
    format_jacquard,
    from_corners,
    from_stroke,
    normalize_angle,
    parse_jacquard,
    read_cornell,
    read_jacquard,
    write_jacquard,
)
from regrasp.platform.errors import FormatError, InvalidInput

JACQUARD_SIZE = 1024


def _sample_grasp_files(root):
    files = sorted(root.glob("*/*_grasps.txt"))
    assert len(files) == 33, f"expected the 33 real sample files, found {len(files)}"
    return files


def test_every_real_sample_reads_round_trips_and_lies_in_the_image(jacquard_samples, tmp_path):
    for path in _sample_grasp_files(jacquard_samples):
        grasps = read_jacquard(path)
        assert grasps.dtype == np.float64 and grasps.shape[1] == 5 and len(grasps) >= 38
        # Values exactly as in the file.
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        expected = np.array([[float(v) for v in ln.split(";")] for ln in lines])
        np.testing.assert_array_equal(grasps, expected)
        # Round trip.
        out = tmp_path / path.name
        write_jacquard(out, grasps)
        np.testing.assert_array_equal(read_jacquard(out), grasps)
        # Every corner inside the image.
        c = corners(grasps)
        assert c.min() >= 0 and c.max() <= JACQUARD_SIZE, path.name


def test_corners_follow_the_design_convention():
    # theta = 90 in the y-down frame: the opening runs down the image.
    c = corners(np.array([[100.0, 50.0, 90.0, 40.0, 10.0]]))[0]
    opening_edge = c[1] - c[0]
    jaw_edge = c[2] - c[1]
    np.testing.assert_allclose(opening_edge, [0.0, 40.0], atol=1e-9)
    np.testing.assert_allclose(np.abs(jaw_edge), [10.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(c.mean(axis=0), [100.0, 50.0])


def test_from_corners_inverts_corners():
    rng = np.random.default_rng(0)
    g = np.column_stack(
        [
            rng.uniform(0, 1024, 200),
            rng.uniform(0, 1024, 200),
            rng.uniform(-90, 90, 200),
            rng.uniform(5, 270, 200),
            rng.uniform(10, 90, 200),
        ]
    )
    back = from_corners(corners(g))
    np.testing.assert_allclose(back[:, [0, 1, 3, 4]], g[:, [0, 1, 3, 4]], atol=1e-9)
    assert np.all(angle_difference(back[:, 2], g[:, 2]) < 1e-9)


def test_angles_are_equal_mod_180():
    assert normalize_angle(90.0) == -90.0
    assert normalize_angle(-270.0) == -90.0
    np.testing.assert_allclose(
        angle_difference([10.0, 170.0, -89.0], [190.0, -10.0, 91.0]), 0, atol=1e-9
    )
    assert angle_difference(-89.0, 89.0) == pytest.approx(2.0)
    assert angle_difference(0.0, 90.0) == 90.0


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("1;2;3;4;5\n1;2;3;4\n", 2),
        ("1;2;3;4;5\n\n1;2;x;4;5\n", 3),
        ("1;2;3;4;nan\n", 1),
        ("1;2;3;inf;5\n", 1),
        ("1;2;3;-4;5\n", 1),
        ("1;2;3;4;0\n", 1),
    ],
)
def test_malformed_jacquard_line_names_file_and_line(tmp_path, content, line):
    path = tmp_path / "0_obj_grasps.txt"
    path.write_text(content)
    with pytest.raises(FormatError, match=rf"0_obj_grasps.txt:{line}:"):
        read_jacquard(path)


def test_binary_file_is_a_format_error(tmp_path):
    path = tmp_path / "0_obj_grasps.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(FormatError, match="0_obj_grasps.txt"):
        read_jacquard(path)


def test_empty_file_gives_no_grasps(tmp_path):
    path = tmp_path / "e_grasps.txt"
    path.write_text("")
    assert read_jacquard(path).shape == (0, 5)


def test_format_writes_shortest_exact_decimals():
    text = format_jacquard(np.array([[470.14815, 253.89551, 68.2615, 25.0, 0.1 + 0.2]]))
    assert text == "470.14815;253.89551;68.2615;25;0.30000000000000004\n"
    np.testing.assert_array_equal(parse_jacquard(text)[0, 4], 0.1 + 0.2)


def test_read_cornell_skips_nan_rectangles_and_recovers_geometry(tmp_path):
    g = np.array([[320.0, 240.0, 30.0, 60.0, 20.0], [100.0, 80.0, -45.0, 40.0, 15.0]])
    quads = corners(g)
    lines = []
    for q in quads:
        lines += [f"{x:.6f} {y:.6f}" for x, y in q]
    lines += ["NaN NaN"] * 4  # a NaN rectangle, as in some Cornell files
    path = tmp_path / "pcd0100cpos.txt"
    path.write_text("\n".join(lines) + "\n")
    got = read_cornell(path)
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got[:, [0, 1, 3, 4]], g[:, [0, 1, 3, 4]], atol=1e-4)
    assert np.all(angle_difference(got[:, 2], g[:, 2]) < 1e-4)


def test_read_cornell_rejects_partial_rectangles(tmp_path):
    path = tmp_path / "pcd0101cpos.txt"
    path.write_text("1 2\n3 4\n5 6\n")
    with pytest.raises(FormatError, match="pcd0101cpos.txt"):
        read_cornell(path)
    path.write_text("1 2\n3 x\n5 6\n7 8\n")
    with pytest.raises(FormatError, match="pcd0101cpos.txt:2"):
        read_cornell(path)


def test_as_grasps_validates():
    assert as_grasps([1, 2, 3, 4, 5]).shape == (1, 5)
    assert as_grasps(np.empty((0, 5))).shape == (0, 5)
    with pytest.raises(InvalidInput, match="shape"):
        as_grasps(np.zeros((3, 4)))
    with pytest.raises(InvalidInput, match="NaN"):
        as_grasps([[1, 2, 3, np.nan, 5]])
    with pytest.raises(InvalidInput, match="positive"):
        as_grasps([[1, 2, 3, 4, -5]])


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="nope_grasps.txt"):
        read_jacquard(tmp_path / "nope_grasps.txt")
    with pytest.raises(FormatError, match="pcd9999cpos.txt"):
        read_cornell(tmp_path / "pcd9999cpos.txt")


def test_a_stroke_from_jaw_to_jaw_is_the_grasp_between_them():
    g = from_stroke((10.0, 20.0), (40.0, 60.0), jaw=8.0)
    np.testing.assert_allclose(g, [25.0, 40.0, np.rad2deg(np.arctan2(40, 30)), 50.0, 8.0])
    # Drawn the other way it is the same grasp (angles are equal mod 180°).
    np.testing.assert_allclose(from_stroke((40.0, 60.0), (10.0, 20.0), jaw=8.0), g)
    # Straight up in the y-down frame: -90° (the normalised range is [-90, 90)).
    assert from_stroke((5.0, 30.0), (5.0, 10.0), jaw=4.0)[2] == -90.0
    corners_ = corners(g[None])[0]
    np.testing.assert_allclose((corners_[0] + corners_[3]) / 2, [10.0, 20.0])  # one jaw


@pytest.mark.parametrize(
    ("start", "end", "jaw", "message"),
    [
        ((1.0, 1.0), (1.2, 1.1), 5.0, "shorter than a pixel"),
        ((1.0, float("nan")), (9.0, 9.0), 5.0, "finite"),
        ((1.0, 1.0, 1.0), (9.0, 9.0), 5.0, "finite start and end"),
        ((1.0, 1.0), (9.0, 9.0), 0.0, "jaw must be"),
    ],
)
def test_a_stroke_that_is_no_grasp_is_refused(start, end, jaw, message):
    with pytest.raises(InvalidInput, match=message):
        from_stroke(start, end, jaw=jaw)
