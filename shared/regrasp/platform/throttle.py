"""Login rate limiting, kept in the database so that every replica counts the same failures.

A failed password login records `(username, client address, time)`; once a pair has
`max_failures` failures within `window`, further attempts get 429 until the oldest
failure leaves the window, whatever the password. A successful login clears the pair's
failures. Rows older than the window are pruned on each failure, so the table stays small.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.platform.clock import utcnow
from regrasp.platform.errors import TooManyRequests
from regrasp.platform.store.db.tables import LoginFailure

#: Longest client address stored (IPv6 fits).
_CLIENT_CHARS = 64


class TooManyAttempts(TooManyRequests):
    """Too many failed logins for this username from this client; retry later."""


def check_login_allowed(
    session: Session, username: str, client: str, *, max_failures: int, window: timedelta
) -> None:
    """Raise TooManyAttempts when the pair used up its failures in the last `window`."""
    since = utcnow() - window
    rows = session.scalars(
        sa.select(LoginFailure.failed_at)
        .where(
            LoginFailure.username == username[:128],
            LoginFailure.client == client[:_CLIENT_CHARS],
            LoginFailure.failed_at >= since,
        )
        .order_by(LoginFailure.failed_at.desc())
        .limit(max_failures)
    ).all()
    if len(rows) >= max_failures:
        oldest = rows[-1] if rows[-1].tzinfo else rows[-1].replace(tzinfo=UTC)
        retry = max(1, int((oldest + window - utcnow()).total_seconds()) + 1)
        raise TooManyAttempts(
            f"too many failed logins for {username!r}; retry in {retry} s", retry_after=retry
        )


def record_login_failure(
    session: Session, username: str, client: str, *, window: timedelta
) -> None:
    now = utcnow()
    session.execute(sa.delete(LoginFailure).where(LoginFailure.failed_at < now - window))
    session.add(LoginFailure(username=username[:128], client=client[:_CLIENT_CHARS], failed_at=now))


def clear_login_failures(session: Session, username: str, client: str) -> None:
    session.execute(
        sa.delete(LoginFailure).where(
            LoginFailure.username == username[:128],
            LoginFailure.client == client[:_CLIENT_CHARS],
        )
    )
