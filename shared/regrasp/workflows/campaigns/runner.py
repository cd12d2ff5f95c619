"""The orchestrator's background driver of campaigns, safe with several replicas.

`CampaignRunner` polls the `campaigns` table every `poll_seconds` (at once after `wake()`)
and runs one `regrasp.workflows.campaigns.machine.advance` pass for each active campaign (and each
cancelled one whose jobs are not all cancelled yet) under that campaign's lock, so two
replicas never submit the same run's job twice. The locks
(`regrasp.platform.store.db.locks`) die with their holder.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.locks import try_lock
from regrasp.platform.store.db.tables import Campaign, CampaignState
from regrasp.workflows.campaigns.machine import ACTIVE_STATES, advance
from regrasp.workflows.rounds.machine import Services

__all__ = ["LOCK_SPACE", "CampaignRunner", "campaign_lock"]

log = logging.getLogger(__name__)

#: First key of the PostgreSQL advisory locks of campaigns (the second is the campaign id).
LOCK_SPACE = 0x52_47_43  # "RGC"


def campaign_lock(engine: Engine, campaign_id: int) -> contextlib.AbstractContextManager[bool]:
    """Try to take the campaign's lock without waiting; the context yields whether it was taken."""
    return try_lock(engine, space=LOCK_SPACE, name="campaign", key=campaign_id)


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
