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
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.platform.errors import StorageError
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.locks import try_lock
from regrasp.platform.store.db.tables import Round, RoundState
from regrasp.workflows.rounds.machine import ACTIVE_STATES, Hook, Services, advance

__all__ = ["LOCK_SPACE", "RoundRunner", "round_lock"]

log = logging.getLogger(__name__)

#: First key of the PostgreSQL advisory locks of rounds (the second is the round id).
LOCK_SPACE = 0x52_47_52  # "RGR"


def round_lock(engine: Engine, round_id: int) -> contextlib.AbstractContextManager[bool]:
    """Try to take the round's lock without waiting; the context yields whether it was taken."""
    return try_lock(engine, space=LOCK_SPACE, name="round", key=round_id)


class RoundRunner:
    """Advances active rounds in the background (start in the app's lifespan).

    `hook` (tests) is passed to `advance` (named points in `regrasp.workflows.rounds.machine`).
    """

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
        self._engine = engine
        self._bind = bind
        self.services = services
        self.poll_seconds = poll_seconds
        self.hook = hook
        self._parallel = parallel
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[int, Future[None]] = {}
        self._seen: dict[int, RoundState] = {}  # state after the last advance, per round

    def start(self) -> None:
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self._parallel, thread_name_prefix="round")
        self._thread = threading.Thread(target=self._loop, name="round-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the rounds now instead of at the next poll (after an API change)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except (StorageError, sa.exc.DBAPIError) as exc:  # the database is down
                log.warning("round runner: polling failed: %s", exc)
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("round runner: polling failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _tick(self) -> None:
        with session_scope(self._bind) as session:
            ids = session.scalars(
                sa.select(Round.id).where(Round.state.in_(ACTIVE_STATES)).order_by(Round.id)
            ).all()
        self._running = {k: f for k, f in self._running.items() if not f.done()}
        self._seen = {k: v for k, v in self._seen.items() if k in set(ids)}
        for round_id in ids:
            if round_id in self._running or self._pool is None or self._stop.is_set():
                continue
            self._running[round_id] = self._pool.submit(self._advance, round_id)

    def _advance(self, round_id: int) -> None:
        try:
            with round_lock(self._engine, round_id) as got:
                if not got:
                    return
                state = advance(
                    self._bind,
                    round_id,
                    self.services,
                    hook=self.hook,
                    should_stop=self._stop.is_set,
                )
                log.debug("round %s is %s", round_id, state.value)
            moved = self._seen.get(round_id) != state
            self._seen[round_id] = state
            if moved and state in ACTIVE_STATES and state != RoundState.reviewing:
                self._wake.set()  # a transition: run the next step without waiting
        except (StorageError, sa.exc.DBAPIError) as exc:  # the database is down: next poll
            log.warning("round %s could not advance: %s", round_id, exc)
        except Exception:  # noqa: BLE001 - a background thread has no caller to tell
            log.exception("round %s could not advance", round_id)
