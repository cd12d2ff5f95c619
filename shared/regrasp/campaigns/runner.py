"""The orchestrator's background driver of campaigns, safe with several replicas.

`CampaignRunner` polls the `campaigns` table every `poll_seconds` (at once after `wake()`)
and runs one `regrasp.campaigns.machine.advance` pass for each active campaign (and each
cancelled one whose jobs are not all cancelled yet) under that campaign's lock, so two
replicas never submit the same run's job twice. The locks die with their holder:

- PostgreSQL: a session-level advisory lock `pg_try_advisory_lock(LOCK_SPACE, id)` on a
  dedicated connection, held for the pass;
- SQLite (one machine): an exclusive `fcntl` lock on `<db>.campaign-<id>.lock` plus an
  in-process lock (fcntl locks are per process).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.campaigns.machine import ACTIVE_STATES, advance
from regrasp.rounds.machine import Services
from regrasp.store.db.engine import session_scope
from regrasp.store.db.tables import Campaign, CampaignState

__all__ = ["LOCK_SPACE", "CampaignRunner", "campaign_lock"]

log = logging.getLogger(__name__)

#: First key of the PostgreSQL advisory locks of campaigns (the second is the campaign id).
LOCK_SPACE = 0x52_47_43  # "RGC"

_process_locks: dict[tuple[str, int], threading.Lock] = {}
_process_guard = threading.Lock()


@contextlib.contextmanager
def campaign_lock(engine: Engine, campaign_id: int) -> Iterator[bool]:
    """Try to take the campaign's lock without waiting; yields whether it was taken."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(
                conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:space, :id)"),
                    {"space": LOCK_SPACE, "id": campaign_id},
                ).scalar()
            )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:space, :id)"),
                        {"space": LOCK_SPACE, "id": campaign_id},
                    )
                    conn.commit()
        return
    database = engine.url.database or ""
    with _process_guard:
        lock = _process_locks.setdefault((database, campaign_id), threading.Lock())
    if not lock.acquire(blocking=False):
        yield False
        return
    try:
        if not database or database == ":memory:":
            yield True
            return
        fd = os.open(Path(f"{database}.campaign-{campaign_id}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        lock.release()


class CampaignRunner:
    """Advances campaigns in the background (start it in the app's lifespan)."""

    def __init__(
        self,
        engine: Engine,
        bind: sessionmaker[Session],
        services: Services,
        *,
        poll_seconds: float = 3.0,
    ) -> None:
        self._engine = engine
        self._bind = bind
        self.services = services
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="campaign-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the campaigns now instead of at the next poll (after an API change)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("campaign runner: polling failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _tick(self) -> None:
        with session_scope(self._bind) as session:
            ids = session.scalars(
                sa.select(Campaign.id)
                .where(
                    Campaign.state.in_(ACTIVE_STATES)
                    | ((Campaign.state == CampaignState.cancelled) & Campaign.finished_at.is_(None))
                )
                .order_by(Campaign.id)
            ).all()
        for campaign_id in ids:
            if self._stop.is_set():
                return
            try:
                with campaign_lock(self._engine, campaign_id) as got:
                    if got:
                        advance(
                            self._bind, campaign_id, self.services, should_stop=self._stop.is_set
                        )
            except Exception:  # noqa: BLE001 - one campaign must not stop the others
                log.exception("campaign %s could not advance", campaign_id)
