"""Bounded retries of a round's steps against a real trainer service that comes and goes.

The trainer API runs in-process under uvicorn on a fixed 127.0.0.1 port
(`tests.harness.inprocess.InProcessServer`) and is stopped and started again on it, so the
round machine meets a real refused connection; on both databases. The policy is short (a
few tries, tiny delays) so the streak ends quickly:

- a try that fails schedules the next one (attempts, next try and delays on the round);
  before it is due `advance` does nothing; progress ends the streak;
- a streak that reaches its budget fails the round with the trainer's URL in the error;
  resume continues where it failed;
- a round failed by its training job is resumed with a new job (the failed one is set
  aside, never found again).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from regrasp.clients.trainer import TrainerClient
from regrasp.data.ingest import import_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.learn import queue as jobs
from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope
from regrasp.platform.store.db.tables import RoundState
from regrasp.platform.store.objects import open_store
from regrasp.refine.rounds.config import RoundConfig
from regrasp.refine.rounds.run import load_run
from regrasp.workflows.retrying import RetryPolicy
from regrasp.workflows.rounds import machine
from services.trainer.app import create_app as create_trainer
from tests.harness.inprocess import InProcessServer, app_factory

SERVICE_KEY = "retry-service-key-0123456789abcdef"
TRAIN = {"architecture": "ggcnn", "epochs": 1, "input_size": 32, "num_workers": 0}


@pytest.fixture
def world(database_url, file_store_url, tmp_path):
    generate_dataset(tmp_path / "synth", images=6, objects=3, size=64, workers=1, seed=2)
    migrations.upgrade(database_url)
    engine = make_engine(database_url)
    with session_scope(engine) as s:
        dataset_id = import_jacquard(s, open_store(file_store_url), tmp_path / "synth", name="r")
    settings = Settings(
        database_url=database_url,
        object_store_url=file_store_url,
        data_dir=tmp_path / "data",
        service_api_key=SERVICE_KEY,
    )
    # The trainer API on one port, started and stopped at will: a fresh app at each start.
    trainer = InProcessServer(
        app_factory(lambda: create_trainer(settings, engine=engine)),
        "trainer",
        graceful_shutdown=None,
    )
    try:
        yield engine, make_session_factory(engine), trainer, dataset_id
    finally:
        trainer.stop()
        engine.dispose()


def _run(bind, round_id: int) -> tuple[RoundState, dict, str | None]:
    """(state, run state with the retry streak under "retry" while there is one, error)."""
    with session_scope(bind) as s:
        rnd = machine._get(s, round_id)
        run = load_run(rnd).model_dump(mode="json")
        if rnd.retry is not None:
            run["retry"] = rnd.retry
        return rnd.state, run, rnd.error


def _when_due(bind, round_id: int) -> None:
    """Sleep until the round's next try is due (the policy's own delay, never a bound)."""
    _, run, _ = _run(bind, round_id)
    next_at = datetime.fromisoformat(run["retry"]["next_at"])
    time.sleep(max(0.0, (next_at - datetime.now(UTC)).total_seconds()) + 0.01)


def _job_ids(trainer: InProcessServer) -> list[int]:
    with TrainerClient(trainer.url, credential=SERVICE_KEY) as client:
        return sorted(j.id for j in client.list(kind="train").items)


@pytest.mark.slow
def test_an_unreachable_trainer_is_retried_with_backoff_then_fails_and_resumes(world):
    engine, bind, trainer, dataset_id = world
    policy = RetryPolicy(
        budget_seconds=600.0, max_attempts=3, initial_seconds=0.5, max_delay_seconds=2.0
    )
    services = machine.Services(
        trainer_url=trainer.url,
        inference_urls=(),
        credential=SERVICE_KEY,
        poll_seconds=0.05,
        retry=policy,
    )
    once = {"should_stop": lambda: True}  # one pass of the training step, then return
    with session_scope(bind) as s:
        round_id = machine.create_round(
            s, dataset_id=dataset_id, version=0, config=RoundConfig(train=TRAIN)
        ).id
    assert machine.advance(bind, round_id, services) == RoundState.training

    # The trainer is down: the first try fails and schedules the next one.
    assert machine.advance(bind, round_id, services, **once) == RoundState.training
    state, run, error = _run(bind, round_id)
    assert run["retry"]["attempts"] == 1 and run["retry"]["state"] == "training"
    assert run["retry"]["delays"] == [0.5] and trainer.url in error
    # Not due yet: nothing is tried (the attempt count stays).
    machine.advance(bind, round_id, services, **once)
    assert _run(bind, round_id)[1]["retry"]["attempts"] == 1

    # The trainer comes up: the next try submits the job and the streak ends.
    trainer.start()
    _when_due(bind, round_id)
    assert machine.advance(bind, round_id, services, **once) == RoundState.training
    state, run, error = _run(bind, round_id)
    assert "retry" not in run and error is None
    (job_id,) = _job_ids(trainer)
    assert run["units"][0]["job_id"] == job_id

    # Down again while the job is followed: three tries, growing waits, then failed.
    trainer.stop()
    for attempt in (1, 2, 3):
        if attempt > 1:
            _when_due(bind, round_id)
        state = machine.advance(bind, round_id, services, **once)
    state, run, error = _run(bind, round_id)
    assert state == RoundState.failed and run["failed_in"] == "training"
    assert run["retry"]["gave_up"] and run["retry"]["attempts"] == 3
    assert run["retry"]["delays"] == [0.5, 1.0]
    assert "gave up after 3 tries" in error and trainer.url in error

    # Resumed once the trainer is back: the same job is followed, nothing resubmitted.
    trainer.start()
    with session_scope(bind) as s:
        machine.resume_round(s, round_id)
    state, run, error = _run(bind, round_id)
    assert state == RoundState.training and "retry" not in run and error is None
    assert machine.advance(bind, round_id, services, **once) == RoundState.training
    assert _job_ids(trainer) == [job_id]
    assert _run(bind, round_id)[2] is None


def test_a_round_failed_by_its_job_is_resumed_with_a_new_job(world):
    engine, bind, trainer, dataset_id = world
    trainer.start()
    services = machine.Services(
        trainer_url=trainer.url, inference_urls=(), credential=SERVICE_KEY, poll_seconds=0.05
    )
    once = {"should_stop": lambda: True}
    with session_scope(bind) as s:
        round_id = machine.create_round(
            s, dataset_id=dataset_id, version=0, config=RoundConfig(train=TRAIN)
        ).id
    machine.advance(bind, round_id, services)
    machine.advance(bind, round_id, services, **once)
    (first,) = _job_ids(trainer)
    with session_scope(bind) as s:
        jobs.cancel(s, first)
    assert machine.advance(bind, round_id, services, **once) == RoundState.failed
    state, run, error = _run(bind, round_id)
    assert f"training job {first} cancelled" in error
    assert run["units"][0]["job_id"] is None and run["units"][0]["failed_job_ids"] == [first]

    with session_scope(bind) as s:
        machine.resume_round(s, round_id)
    assert machine.advance(bind, round_id, services, **once) == RoundState.training
    first_again, second = _job_ids(trainer)
    assert first_again == first and second != first
    state, run, error = _run(bind, round_id)
    assert run["units"][0]["job_id"] == second and error is None
    with session_scope(bind) as s:
        assert machine._get(s, round_id).train_job_id == second
