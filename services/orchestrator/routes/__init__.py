"""HTTP routes, one module per resource; every route declares its response model."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from regrasp.api.common import ErrorPublic

AnswerT = TypeVar("AnswerT")

#: Error responses every authenticated route may give, documented once.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (401, 403, 404, 409, 422)
}


class Wakeable(Protocol):
    def wake(self) -> None: ...


def commit_and_wake(session: Session, runner: Wakeable, answer: AnswerT) -> AnswerT:
    """Commit the request's change, wake the background runner, return `answer`.

    `answer` is built before, in the transaction that made the change: nothing may touch
    the database after the wake. On SQLite the woken runner takes the one write lock at
    once (an apply holds it until it commits), and a read after it would wait for that
    lock and could answer 503 for a change that was made.
    """
    session.commit()
    runner.wake()
    return answer
