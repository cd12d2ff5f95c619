"""`rewrite_grasps_file`: an export writes a grasps file in the style of the imported one."""

from __future__ import annotations

import numpy as np

from regrasp.data.formats.jacquard import rewrite_grasps_file
from regrasp.grasp.rectangles import parse_jacquard

CRLF = b"470.14815;253.89551;68.2615;25.5;25.6211\r\n114.0;200.5;0.0;24.0;13.0\r\n"


def test_unchanged_labels_give_the_original_bytes():
    values = parse_jacquard(CRLF.decode())
    assert rewrite_grasps_file(CRLF, values) is CRLF


def test_changed_labels_keep_lines_endings_and_number_style():
    values = parse_jacquard(CRLF.decode())
    added = np.array([[300.0, 301.25, -12.0, 40.0, 20.0]])
    out = rewrite_grasps_file(CRLF, np.vstack([values[1:], added]))
    assert out == b"114.0;200.5;0.0;24.0;13.0\r\n300.0;301.25;-12.0;40.0;20.0\r\n"


def test_lf_file_with_bare_integers_stays_so():
    original = b"10;20;0;30;5\n11.5;21;3;30;5\n"
    out = rewrite_grasps_file(original, np.array([[11.5, 21, 3, 30, 5], [12, 22, 4, 30, 5]]))
    assert out == b"11.5;21;3;30;5\n12;22;4;30;5\n"


def test_duplicate_lines_are_matched_one_for_one():
    original = b"1.0;2.0;3.0;4.0;5.0\r\n1.0;2.0;3.0;4.0;5.0\r\n"
    out = rewrite_grasps_file(original, np.array([[1, 2, 3, 4, 5.0]]))
    assert out == b"1.0;2.0;3.0;4.0;5.0\r\n"
    out = rewrite_grasps_file(original, np.array([[1, 2, 3, 4, 5.0]] * 3))
    assert out == original + b"1.0;2.0;3.0;4.0;5.0\r\n"


def test_a_file_that_is_not_jacquard_gives_plain_jacquard_text():
    cornell = b"1 2\n3 4\n5 6\n7 8\n"
    out = rewrite_grasps_file(cornell, np.array([[10.0, 20.0, 0.0, 30.0, 5.0]]))
    assert out == b"10;20;0;30;5\n"


def test_every_label_removed_gives_an_empty_file():
    assert rewrite_grasps_file(CRLF, np.empty((0, 5))) == b""
