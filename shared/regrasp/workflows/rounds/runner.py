"""A background driver that advances every active round, safe with several replicas.

`RoundRunner` polls the `rounds` table every `poll_seconds` (and at once when `wake()` is
called) and runs `regrasp.workflows.rounds.machine.advance` for each active round on a small thread
pool. A round is advanced only under its lock (`round_lock`), so two orchestrator replicas
never run the same step at once; a replica that finds the lock taken skips the round until
the next poll. The locks (`regrasp.platform.store.db.locks`) die with their holder, so a killed
replica frees its rounds at once and another (or the restarted one) resumes them.

After a transition the runner looks again at once (the next step need not wait for the
poll); a round that stayed in its state (backing off after a transient failure, waiting on
its jobs or its reviewers) is looked at again at the next poll.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.platform.store.db.locks import try_lock
from regrasp.platform.store.db.tables import Round, RoundState
from regrasp.workflows.engine import PolledRunner
from regrasp.workflows.rounds.machine import ACTIVE_STATES, Hook, Services, advance

__all__ = ["LOCK_SPACE", "RoundRunner", "round_lock"]

#: First key of the PostgreSQL advisory locks of rounds (the second is the round id).
LOCK_SPACE = 0x52_47_52  # "RGR"


def round_lock(engine: Engine, round_id: int) -> contextlib.AbstractContextManager[bool]:
    """Try to take the round's lock without waiting; the context yields whether it was taken."""
    return try_lock(engine, space=LOCK_SPACE, name="round", key=round_id)


class RoundRunner(PolledRunner):
    """Advances active rounds in the background, up to `parallel` at once.

    `hook` (tests) is passed to `advance` (named points in `regrasp.workflows.rounds.machine`).
    """

    noun = "round"

    def __init__(
        self,
        engine: Engine,
        bind: sessionmaker[Session],
        services: Services,
        *,
        poll_seconds: float = 2.0,
        parallel: int = 4,
        hook: Hook | None = None,
    ) -> None:
        super().__init__(engine, bind, poll_seconds=poll_seconds, parallel=parallel)
        self.services = services
        self.hook = hook

    def active_ids(self, session: Session) -> Sequence[int]:
        return session.scalars(
            sa.select(Round.id).where(Round.state.in_(ACTIVE_STATES)).order_by(Round.id)
        ).all()

    def lock(self, row_id: int) -> contextlib.AbstractContextManager[bool]:
        return round_lock(self._engine, row_id)

    def step(self, row_id: int, should_stop: Callable[[], bool]) -> RoundState:
        return advance(self._bind, row_id, self.services, hook=self.hook, should_stop=should_stop)

    def next_at_once(self, state: RoundState) -> bool:
        # A round waiting for people (reviewing) is looked at on the next poll.
        return state in ACTIVE_STATES and state != RoundState.reviewing
