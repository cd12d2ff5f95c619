"""The one source of "now" and the one reading of stored timestamps: aware UTC everywhere.

PostgreSQL hands timestamps back aware; SQLite hands them back naive although they were
written as UTC. Every comparison of a stored time with now (leases, heartbeats, job
timeouts) goes through `as_utc`, so the two databases behave the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

__all__ = ["as_utc", "now_or", "utcnow"]


def utcnow() -> datetime:
    """Timezone-aware now (the default of every timestamp column)."""
    return datetime.now(UTC)


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """`moment` as aware UTC; a naive value is taken as UTC (SQLite's), None stays None."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def now_or(now: datetime | None) -> datetime:
    """`now` as aware UTC, or the current time: the library's functions take an optional
    `now` so tests can move the clock."""
    return utcnow() if now is None else as_utc(now)
