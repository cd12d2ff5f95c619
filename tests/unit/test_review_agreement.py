"""Two reviewers' drawn grasps agree when they are the same grasps, not the same pixels."""

from __future__ import annotations

from regrasp.refine.review._common import drawn_match

A = [[300.0, 400.0, 30.0, 40.0, 12.0], [600.0, 610.0, -60.0, 50.0, 15.0]]


def test_drawn_grasps_match_one_to_one_whatever_the_order_and_hand():
    hand = [[603.0, 608.0, -55.0, 47.0, 14.0], [298.0, 402.0, 33.0, 42.0, 12.0]]
    assert drawn_match(A, hand) and drawn_match(hand, A)
    assert drawn_match([], [])


def test_drawn_grasps_differ_in_count_place_or_angle():
    assert not drawn_match(A, A[:1])
    assert not drawn_match(A, [])
    assert not drawn_match(A, [A[0], [660.0, 610.0, -60.0, 50.0, 15.0]])  # 60 px away
    assert not drawn_match(A, [A[0], [600.0, 610.0, 0.0, 50.0, 15.0]])  # 60° turned
    # Both of one person's grasps on the same spot do not match two different ones.
    assert not drawn_match(A, [A[0], A[0]])
