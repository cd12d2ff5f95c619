"""The retry policy of round steps (`regrasp.workflows.retrying`), with time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from regrasp.platform.errors import InvalidInput
from regrasp.workflows.retrying import RetryPolicy, due, record_failure

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _fail(record, seconds: float, policy: RetryPolicy, state: str = "predicting"):
    return record_failure(
        record,
        state=state,
        error=f"down at {seconds}",
        now=T0 + timedelta(seconds=seconds),
        policy=policy,
    )


def test_delays_double_up_to_the_cap():
    policy = RetryPolicy(initial_seconds=1.0, max_delay_seconds=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_streak_schedules_each_try_and_is_not_due_before_it():
    policy = RetryPolicy(budget_seconds=100.0, initial_seconds=1.0, max_delay_seconds=8.0)
    record, at = None, 0.0
    for attempt in range(1, 6):
        record = _fail(record, at, policy)
        assert record["attempts"] == attempt and not record["gave_up"]
        next_at = datetime.fromisoformat(record["next_at"])
        assert next_at == T0 + timedelta(seconds=at + policy.delay(attempt))
        assert not due(record, state="predicting", now=next_at - timedelta(milliseconds=1))
        assert due(record, state="predicting", now=next_at)
        at += policy.delay(attempt) + 0.5  # the try itself takes a while
    assert record["delays"] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert record["since"] == T0.isoformat() and record["error"] == f"down at {at - 8.5}"
    # Another state is not held back by this streak.
    assert due(record, state="training", now=T0)


def test_the_last_try_is_at_the_deadline_and_its_failure_gives_up():
    policy = RetryPolicy(budget_seconds=10.0, initial_seconds=4.0, max_delay_seconds=60.0)
    first = _fail(None, 0.0, policy)
    assert first["delays"] == [4.0]
    second = _fail(first, 7.0, policy)  # 3 s of budget left: the next try waits only 3 s
    assert second["delays"] == [4.0, 3.0] and not second["gave_up"]
    assert datetime.fromisoformat(second["next_at"]) == T0 + timedelta(seconds=10.0)
    third = _fail(second, 10.5, policy)
    assert third["gave_up"] and third["next_at"] is None and third["attempts"] == 3
    assert third["elapsed_seconds"] == 10.5 and third["delays"] == [4.0, 3.0]


def test_max_attempts_ends_a_streak_within_the_budget():
    policy = RetryPolicy(budget_seconds=1e6, max_attempts=3, initial_seconds=1.0)
    record = None
    for at in (0.0, 1.0, 3.0):
        record = _fail(record, at, policy)
    assert record["gave_up"] and record["attempts"] == 3


def test_a_failure_of_another_state_or_after_giving_up_starts_a_new_streak():
    policy = RetryPolicy(budget_seconds=0.0, initial_seconds=1.0)
    ended = _fail(None, 0.0, policy)
    assert ended["gave_up"]  # no budget at all: the first failure fails the round
    again = _fail(ended, 50.0, RetryPolicy(), state="predicting")
    assert again["attempts"] == 1 and again["since"] == (T0 + timedelta(seconds=50)).isoformat()
    other = _fail(_fail(None, 0.0, RetryPolicy()), 1.0, RetryPolicy(), state="training")
    assert other["state"] == "training" and other["attempts"] == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"budget_seconds": -1.0},
        {"max_attempts": 0},
        {"initial_seconds": 0.0},
        {"initial_seconds": 10.0, "max_delay_seconds": 5.0},
    ],
)
def test_a_nonsensical_policy_is_refused(kwargs):
    with pytest.raises(InvalidInput):
        RetryPolicy(**kwargs)
