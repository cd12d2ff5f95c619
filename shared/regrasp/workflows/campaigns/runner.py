"""The orchestrator's background driver of campaigns, safe with several replicas.

`CampaignRunner` polls the `campaigns` table every `poll_seconds` (at once after `wake()`)
and runs one `regrasp.workflows.campaigns.machine.advance` pass for each active campaign (and each
cancelled one whose jobs are not all cancelled yet) under that campaign's lock, so two
replicas never submit the same run's job twice. The locks
(`regrasp.platform.store.db.locks`) die with their holder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.platform.store.db.locks import try_lock
from regrasp.platform.store.db.tables import Campaign, CampaignState
from regrasp.workflows.campaigns.machine import ACTIVE_STATES, advance
from regrasp.workflows.engine import PolledRunner, Services

__all__ = ["LOCK_SPACE", "CampaignRunner", "campaign_lock"]

#: First key of the PostgreSQL advisory locks of campaigns (the second is the campaign id).
LOCK_SPACE = 0x52_47_43  # "RGC"


def campaign_lock(engine: Engine, campaign_id: int) -> contextlib.AbstractContextManager[bool]:
    """Try to take the campaign's lock without waiting; the context yields whether it was taken."""
    return try_lock(engine, space=LOCK_SPACE, name="campaign", key=campaign_id)


class CampaignRunner(PolledRunner):
    """Advances campaigns in the background, one at a time (start it in the app's lifespan)."""

    noun = "campaign"

    def __init__(
        self,
        engine: Engine,
        bind: sessionmaker[Session],
        services: Services,
        *,
        poll_seconds: float = 3.0,
    ) -> None:
        super().__init__(engine, bind, poll_seconds=poll_seconds, parallel=1)
        self.services = services

    def active_ids(self, session: Session) -> Sequence[int]:
        # Cancelled campaigns too, until every open job of theirs is cancelled.
        return session.scalars(
            sa.select(Campaign.id)
            .where(
                Campaign.state.in_(ACTIVE_STATES)
                | ((Campaign.state == CampaignState.cancelled) & Campaign.finished_at.is_(None))
            )
            .order_by(Campaign.id)
        ).all()

    def lock(self, row_id: int) -> contextlib.AbstractContextManager[bool]:
        return campaign_lock(self._engine, row_id)

    def step(self, row_id: int, should_stop: Callable[[], bool]) -> CampaignState:
        return advance(self._bind, row_id, self.services, should_stop=should_stop)
