"""A train job whose network collapses: the worker restarts it, or fails it with one line.

Through the real queue and `Worker` on SQLite and PostgreSQL, with GG-CNNs made dead on
purpose (`tests.harness.dead_nets`): a job whose first attempt dies succeeds on its
second and says so in its result and metrics; a job that dies at every seed fails with
the collapse in its error, and its model row is marked failed, not left `training`.
"""

from __future__ import annotations

import pytest

from regrasp.data.ingest import import_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.learn import queue as jobs
from regrasp.learn.worker import Worker, validate_payload
from regrasp.platform.store.db.engine import make_session_factory, session_scope
from regrasp.platform.store.db.tables import Model, ModelStatus
from regrasp.platform.store.objects import open_store
from tests.harness.dead_nets import dead_ggcnn, register_dead

CONFIG = {
    "epochs": 2,
    "batch_size": 4,
    "input_size": 32,
    "num_workers": 0,
    "seed": 0,
    "augment": {"enabled": False},
    "split": {"kind": "image", "val_fraction": 0.0, "test_fraction": 0.2},
}


@pytest.fixture
def world(migrated_engine, file_store_url, tmp_path, monkeypatch):
    register_dead(monkeypatch, "dead_first", dead_ggcnn({0}))
    register_dead(monkeypatch, "dead_always", dead_ggcnn(None))
    generate_dataset(tmp_path / "synth", images=10, objects=5, size=64, workers=1, seed=4)
    factory = make_session_factory(migrated_engine)
    store = open_store(file_store_url)
    with session_scope(factory) as s:
        name = f"collapse-{tmp_path.name}"
        import_jacquard(s, store, tmp_path / "synth", name=name)
    return factory, store, name


def _run(world, architecture: str, **config):
    factory, store, name = world
    payload = {"dataset": name, "config": {**CONFIG, "architecture": architecture, **config}}
    with session_scope(factory) as s:
        job_id = jobs.submit(s, "train", validate_payload(s, "train", payload)).id
    outcome = Worker(factory, store, worker_id="w").run_once()
    with session_scope(factory) as s:
        job = jobs.get(s, job_id)
        model_id = (job.result or {}).get("model_id")
        status = s.get(Model, model_id).status if model_id is not None else None
        return outcome, status


def test_a_job_whose_first_attempt_dies_trains_on_its_second(world):
    outcome, status = _run(world, "dead_first")
    assert outcome.status == "succeeded", outcome.error
    restarts = outcome.result["restarts"]
    assert [(r["attempt"], r["seed"], r["epoch"]) for r in restarts] == [(0, 0, 1)]
    assert "same at every pixel" in restarts[0]["reason"]
    assert outcome.result["metrics"]["restarts"] == 1
    assert [h["epoch"] for h in outcome.result["history"]] == [1, 2]
    assert status == ModelStatus.ready


def test_a_job_that_dies_at_every_seed_fails_with_the_reason(world):
    outcome, status = _run(world, "dead_always", max_restarts=1)
    assert outcome.status == "failed"
    assert outcome.error.startswith("training collapsed in all 2 attempts")
    assert "\n" not in outcome.error
    assert status == ModelStatus.failed
