"""A campaign whose trainer is unreachable backs off, fails after its budget, and resumes.

The same bounded policy as rounds (`regrasp.workflows.retrying`): the campaign machine runs
over PostgreSQL against a port nothing listens on, then against the real trainer API
under uvicorn on 127.0.0.1; in between, the review UI (AppTest, against the real
orchestrator) shows the lead why the campaign failed. No worker runs: reaching the
trainer (jobs submitted) is the progress that ends a streak.
"""

from __future__ import annotations

import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.api.campaigns import CampaignRunPublic
from regrasp.api.rounds import RoundRetry
from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope
from regrasp.platform.store.db.tables import Campaign, CampaignState, Job
from regrasp.refine.campaigns.config import CampaignConfig
from regrasp.workflows.campaigns import machine as campaigns
from regrasp.workflows.retrying import RetryPolicy
from regrasp.workflows.rounds.machine import Services
from services.orchestrator.app import create_app as create_orchestrator
from services.trainer.app import create_app as create_trainer
from tests.harness.inprocess import serve
from tests.harness.ports import closed_port
from tests.harness.seeders import labelled_dataset
from tests.harness.ui import campaign_page

SERVICE_KEY = "campaign-retry-service-key-0123456789"
ADMIN = ("lead", "lead-password-1")
TRAIN = {"epochs": 1, "split": {"kind": "object", "val_fraction": 0.0, "test_fraction": 0.25}}
#: Three tries, a few milliseconds apart, so the budget runs out at once.
POLICY = RetryPolicy(
    budget_seconds=30.0, max_attempts=3, initial_seconds=0.01, max_delay_seconds=0.02
)
#: Bound that only stops a hung test; nothing is timed.
WAIT_S = 30.0


@pytest.mark.slow
def test_unreachable_trainer_fails_the_campaign_after_its_budget_then_resume_continues(
    postgres_url, tmp_path, monkeypatch
):
    migrations.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    bind = make_session_factory(engine)
    try:
        with session_scope(bind) as s:
            dataset_id = _dataset(s)
            campaign_id = campaigns.create_campaign(
                s,
                dataset_id=dataset_id,
                config=CampaignConfig(networks=["ggcnn"], versions=[0], train=TRAIN),
                created_by=None,
            ).id
        down = Services(
            trainer_url=f"http://127.0.0.1:{closed_port()}",
            inference_urls=(),
            credential=SERVICE_KEY,
            retry=POLICY,
        )

        # First pass: nothing reached, the run stays pending, a streak starts.
        assert campaigns.advance(bind, campaign_id, down) == CampaignState.running
        first = _campaign(bind, campaign_id)
        assert first.retry is not None and first.retry.attempts == 1
        assert first.runs[0].state == "pending" and "retrying in" in (first.error or "")
        # Until the backoff has passed, a pass does not even try.
        policy_wait = replace(down, retry=RetryPolicy(initial_seconds=60.0))
        _set_retry(bind, campaign_id, None)
        campaigns.advance(bind, campaign_id, policy_wait)
        campaigns.advance(bind, campaign_id, policy_wait)
        assert _campaign(bind, campaign_id).retry.attempts == 1  # the second pass waited

        _set_retry(bind, campaign_id, None)
        state = _advance_until(bind, campaign_id, down, CampaignState.failed)
        failed = _campaign(bind, campaign_id)
        assert state == CampaignState.failed and failed.retry.gave_up
        assert failed.retry.attempts == POLICY.max_attempts
        assert "could not be reached after 3 tries" in failed.error and "resume" in failed.error
        assert failed.runs[0].state == "pending" and failed.finished_at is not None

        # The lead sees why on the review UI's Campaigns page (a failed campaign is not
        # advanced by the orchestrator's own runner, so serving it here changes nothing).
        settings = Settings(
            database_url=postgres_url,
            object_store_url=f"file://{tmp_path / 'objects'}",
            data_dir=tmp_path / "data",
            service_api_key=SERVICE_KEY,
            admin_username=ADMIN[0],
            admin_password=ADMIN[1],
            trainer_url=down.trainer_url,
        )
        with serve(create_orchestrator(settings), "orchestrator") as url:
            page = campaign_page(url, monkeypatch, campaign_id, ADMIN)
            assert [e.value for e in page.error] == [failed.error], page.error

        with session_scope(bind) as s:
            campaigns.resume_campaign(s, campaign_id)
        resumed = _campaign(bind, campaign_id)
        assert resumed.state == "running" and resumed.retry is None and resumed.error is None

        # One more failure, then the trainer is up: the pass reaches it and ends the streak.
        campaigns.advance(bind, campaign_id, down)
        assert _campaign(bind, campaign_id).retry.attempts == 1
        with serve(create_trainer(settings, engine=engine), "trainer") as url:
            up = replace(down, trainer_url=url)
            state = _advance_until(bind, campaign_id, up, CampaignState.running, run="training")
        after = _campaign(bind, campaign_id)
        assert after.retry is None and after.error is None
        with session_scope(bind) as s:
            jobs = s.scalars(sa.select(Job).where(Job.kind == "train")).all()
        # Exactly one job for the run, although its intent was recorded on every failed pass.
        assert [j.id for j in jobs] == [after.runs[0].train_job_id]
    finally:
        engine.dispose()


def _advance_until(bind, campaign_id, services, state, *, run=None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while True:
        got = campaigns.advance(bind, campaign_id, services)
        campaign = _campaign(bind, campaign_id)
        if got == state and (run is None or campaign.runs[0].state == run):
            return got
        assert time.monotonic() < deadline, campaign
        time.sleep(0.01)


def _campaign(bind, campaign_id: int) -> SimpleNamespace:  # type: ignore[no-untyped-def]
    """The campaign's row, its retry streak and runs read as the API models them."""
    with session_scope(bind) as s:
        row = s.get(Campaign, campaign_id)
        return SimpleNamespace(
            state=row.state.value,
            error=row.error,
            finished_at=row.finished_at,
            retry=RoundRetry(**row.retry) if row.retry else None,
            runs=[CampaignRunPublic(**r) for r in row.runs],
        )


def _set_retry(bind, campaign_id: int, value) -> None:  # type: ignore[no-untyped-def]
    with session_scope(bind) as s:
        s.get(Campaign, campaign_id).retry = value


def _dataset(session) -> int:  # type: ignore[no-untyped-def]
    """Eight images of four objects, one label each: enough for a test split."""
    n = 8
    dataset_id, _ = labelled_dataset(
        session,
        name="retry",
        image_names=[f"{i}_o{i // 2}" for i in range(n)],
        object_names=[f"o{i // 2}" for i in range(n)],
        size=64,
        owners=np.arange(n),
        grasps=[[32, 32, 0, 20, 10]] * n,
    )
    return dataset_id
