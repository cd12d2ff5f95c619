"""How long a round keeps retrying a transient failure before it fails for a person to see.

A step that fails because something it needs is unreachable (the trainer, an inference
replica, the object store behind them, the database) is not wrong, only early: it runs
again after a delay that doubles each time, `initial_seconds · 2^(n−1)` capped at
`max_delay_seconds`. A streak of failures ends the first time the step makes progress
(a chunk stored, a job polled, the step done) or the round changes state. When a streak
has lasted `budget_seconds`, or reached `max_attempts`, the round is failed with the last
error, so that an admin sees what is down; `POST /rounds/{id}/resume` then starts a fresh
streak in the state it failed in.

The streak is a plain JSON record on the row (`Round.retry`, `Campaign.retry`), so a
restarted or another orchestrator replica continues it where it was:

    {"state": "predicting", "attempts": 3, "since": ISO, "last_at": ISO, "next_at": ISO,
     "error": "...", "delays": [1.0, 2.0, 4.0], "gave_up": false}

`record_failure` is pure (time comes in as `now`), so the policy is tested without clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from regrasp.platform.errors import InvalidInput

__all__ = ["RetryPolicy", "describe", "due", "record_failure"]

#: Delays kept in the record (the newest), enough to show the backoff.
_KEPT_DELAYS = 20


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff (built from `regrasp.platform.settings`, `round_retry_*`)."""

    budget_seconds: float = 600.0
    max_attempts: int = 100
    initial_seconds: float = 2.0
    max_delay_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.budget_seconds < 0 or self.max_attempts < 1:
            raise InvalidInput("retry budget must be >= 0 s and max attempts >= 1")
        if not 0 < self.initial_seconds <= self.max_delay_seconds:
            raise InvalidInput("retry delays must satisfy 0 < initial <= max delay")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1, 2, ...)."""
        return min(self.initial_seconds * 2.0 ** (max(attempt, 1) - 1), self.max_delay_seconds)


def record_failure(
    record: dict[str, Any] | None,
    *,
    state: str,
    error: str,
    now: datetime,
    policy: RetryPolicy,
) -> dict[str, Any]:
    """The streak after one more failure of `state`'s step; `gave_up` says to fail the round.

    A record of another state (or none) starts a new streak. The next try is scheduled
    after the policy's delay, but never past the end of the budget, so the last try runs
    at the deadline and its failure ends the streak.
    """
    if record is None or record.get("state") != state or record.get("gave_up"):
        record = {"state": state, "attempts": 0, "since": now.isoformat(), "delays": []}
    attempts = int(record["attempts"]) + 1
    since = datetime.fromisoformat(record["since"])
    elapsed = (now - since).total_seconds()
    remaining = policy.budget_seconds - elapsed
    gave_up = attempts >= policy.max_attempts or remaining <= 0
    delay = 0.0 if gave_up else min(policy.delay(attempts), remaining)
    return {
        "state": state,
        "attempts": attempts,
        "since": record["since"],
        "last_at": now.isoformat(),
        "next_at": None if gave_up else (now + timedelta(seconds=delay)).isoformat(),
        "error": error,
        "delays": [*list(record.get("delays") or []), *([] if gave_up else [delay])][
            -_KEPT_DELAYS:
        ],
        "gave_up": gave_up,
        "elapsed_seconds": elapsed,
    }


def due(record: dict[str, Any] | None, *, state: str, now: datetime) -> bool:
    """Whether `state`'s step may run now (no streak of it, or its next try has come)."""
    if record is None or record.get("state") != state or record.get("gave_up"):
        return True
    next_at = record.get("next_at")
    return next_at is None or datetime.fromisoformat(next_at) <= now


def describe(streak: dict[str, Any], policy: RetryPolicy, message: str) -> str:
    """The streak as people read it next to the failure `message`: when the next try comes,
    or, once given up, how long and how often it was tried (rounds and campaigns say this
    the same way; the caller adds what failed and what to do)."""
    tries = streak["attempts"]
    if not streak["gave_up"]:
        return f"{message} (try {tries} failed; retrying in {streak['delays'][-1]:.1f} s)"
    return (
        f"after {tries} tries over {streak['elapsed_seconds']:.0f} s (retry budget "
        f"{policy.budget_seconds:g} s, at most {policy.max_attempts} tries): {message}"
    )
