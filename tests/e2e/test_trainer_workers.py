"""The trainer as deployed: the API and two worker processes; one worker dies mid-job.

The service and two workers run as real processes on 127.0.0.1 over an SQLite file and a
`file://` store. A short GG-CNN training job is submitted; once its first per-epoch
checkpoint exists the worker running it is SIGKILLed. The other worker must notice the
stale heartbeat, claim the job and resume from that checkpoint (epoch numbering
continues), finish it and register the model. At the end no process is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from regrasp.api.jobs import TrainJobCreate
from regrasp.clients.trainer import TrainerClient
from regrasp.data.ingest import import_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.learn import queue as jobs
from regrasp.learn.worker import Worker, validate_payload
from regrasp.platform.store import keys
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Model, ModelStatus
from regrasp.platform.store.objects import open_store
from tests.harness.processes import start_service

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVICE_KEY = "e2e-service-key-0123456789abcdef"
#: Generous bounds for processes to start or a job to finish on a loaded 2-core machine;
#: they only stop a hung test, nothing is asserted about speed.
WAIT_S = 240.0


@pytest.fixture
def cluster(tmp_path, sqlite_url):
    """A dataset imported as version 0, the trainer API and two workers, all torn down."""
    store_url = f"file://{tmp_path / 'objects'}"
    generate_dataset(tmp_path / "synth", images=12, objects=6, size=128, workers=1, seed=3)
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    store = open_store(store_url)
    with session_scope(engine) as s:
        import_jacquard(s, store, tmp_path / "synth", name="synth")

    env = {
        **os.environ,
        "REGRASP_DATA_DIR": str(tmp_path),
        "REGRASP_DATABASE_URL": sqlite_url,
        "REGRASP_OBJECT_STORE_URL": store_url,
        "REGRASP_SERVICE_API_KEY": SERVICE_KEY,
        "BENTOML_DO_NOT_TRACK": "true",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    logs = tmp_path / "logs"
    api = start_service("trainer", env=env, log=logs / "api.log")
    api.wait_http("/readyz", timeout=WAIT_S)
    base_url = api.url
    services = {"api": api}
    for name in ("w1", "w2"):
        worker_args = ["--worker-id", name, "--device", "cpu", "--poll-interval", "0.3"]
        worker_args += ["--heartbeat-interval", "0.5", "--heartbeat-timeout", "5"]
        services[name] = start_service(
            "worker", env=env, log=logs / f"{name}.log", extra=worker_args
        )
    procs = {name: service.process for name, service in services.items()}
    try:
        yield base_url, engine, store, procs, logs
    finally:
        for service in services.values():
            service.kill()
        engine.dispose()


#: Enough epochs that the job is still running when the first one is seen: on a quiet
#: machine an epoch of these 8 images takes tens of milliseconds, and with 8 epochs the
#: whole job once finished between two polls (the test then had nothing to kill).
EPOCHS = 30


def test_a_killed_workers_job_is_resumed_by_the_other_worker(cluster):
    base_url, engine, store, procs, logs = cluster
    config = {
        "architecture": "ggcnn",
        "epochs": EPOCHS,
        "keep_checkpoints": EPOCHS,  # so epoch 1's checkpoint is still there when we look
        "batch_size": 4,
        "input_size": 96,
        "num_workers": 0,
        "split": {"val_fraction": 0.2, "test_fraction": 0.2},
    }
    with TrainerClient(base_url, credential=SERVICE_KEY) as trainer:
        job = trainer.submit(TrainJobCreate(dataset="synth", config=config))

        # Wait until the first epoch is reported: its checkpoint is written before that.
        first = _poll(
            trainer, job.id, lambda j: len(j.metrics.get("history", [])) >= 1, logs, every=0.05
        )
        assert first.state == "running", first
        victim = first.worker_id
        survivor = {"w1": "w2", "w2": "w1"}[victim]
        model_name = first.result["model_name"]
        assert store.exists(keys.checkpoint_key(model_name, 1))
        epoch_one = first.metrics["history"][0]
        os.killpg(procs[victim].pid, signal.SIGKILL)
        procs[victim].wait()

        done = _poll(trainer, job.id, lambda j: j.finished, logs)
    assert done.state == "succeeded", (done.error, _tail(logs))
    assert done.worker_id == survivor and done.attempts == 2
    result = done.result
    assert result["model_name"] == model_name  # the same model, trained on
    # Resumed, not restarted: the survivor began after the killed worker's checkpoint,
    # the history runs 1..EPOCHS once each, and epoch 1 is the very entry the victim wrote.
    assert result["resumed_from_epoch"] >= 1
    assert [h["epoch"] for h in result["history"]] == list(range(1, EPOCHS + 1))
    assert result["history"][0] == epoch_one
    with session_scope(engine) as s:
        model = s.get(Model, result["model_id"])
        assert model.status == ModelStatus.ready
        assert model.weights_key == keys.weights_key(model_name)
        models = s.scalar(sa.select(sa.func.count(Model.id)))
    assert models == 1  # the retry reused the row made at the first claim
    assert store.exists(keys.weights_key(model_name))
    assert store.exists(keys.metadata_key(model_name))

    # Graceful stop: SIGTERM ends the survivor and the API; nothing is left running.
    for name in ("api", survivor):
        procs[name].send_signal(signal.SIGTERM)
    for name in ("api", survivor):
        assert procs[name].wait(timeout=WAIT_S) is not None
    for proc in procs.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # the whole process group is gone


def _poll(trainer: TrainerClient, job_id: int, condition, logs: Path, every: float = 0.2):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        job = trainer.get(job_id)
        if condition(job) or job.finished:
            return job
        time.sleep(every)
    pytest.fail(f"job {job_id} stuck: {trainer.get(job_id)}\n{_tail(logs)}")


def _tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))


def test_cancel_stops_the_run_and_shutdown_hands_the_job_back(tmp_path, sqlite_url):
    """In-process worker: a cancel stops training; a shutdown requeues without an attempt."""
    store = open_store(f"file://{tmp_path / 'objects'}")
    generate_dataset(tmp_path / "synth", images=8, objects=4, size=96, workers=1, seed=5)
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    payload = {
        "dataset": "synth",
        "config": {"architecture": "ggcnn", "epochs": 50, "input_size": 64, "num_workers": 0},
    }
    with session_scope(engine) as s:
        import_jacquard(s, store, tmp_path / "synth", name="synth")
        cancelled = jobs.submit(s, "train", validate_payload(s, "train", payload)).id
        released = jobs.submit(s, "train", validate_payload(s, "train", payload)).id
    worker = Worker(
        engine, store, worker_id="w", heartbeat_interval=0.2, heartbeat_timeout=30, device="cpu"
    )

    def wait_for_epoch(job_id: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with session_scope(engine) as s:
                if jobs.get(s, job_id).metrics.get("history"):
                    return
            time.sleep(0.1)
        pytest.fail(f"job {job_id} made no epoch")

    outcomes = []
    thread = threading.Thread(target=lambda: outcomes.append(worker.run_once()))
    thread.start()
    wait_for_epoch(cancelled)
    with session_scope(engine) as s:
        jobs.cancel(s, cancelled)
    thread.join(WAIT_S)
    assert outcomes[0].status == "cancelled"

    thread = threading.Thread(target=lambda: outcomes.append(worker.run_once()))
    thread.start()
    wait_for_epoch(released)
    worker.shutdown.set()
    thread.join(WAIT_S)
    assert outcomes[1].status == "released"
    with session_scope(engine) as s:
        first, second = jobs.get(s, cancelled), jobs.get(s, released)
        assert first.state == "cancelled"
        assert s.get(Model, first.result["model_id"]).status == ModelStatus.failed
        assert (second.state, second.attempts, second.worker_id) == ("queued", 0, None)
        assert s.get(Model, second.result["model_id"]).status == ModelStatus.training
    engine.dispose()


def test_regrasp_train_runs_a_job_locally_and_refuses_bad_input(tmp_path, sqlite_url):
    store_url = f"file://{tmp_path / 'objects'}"
    generate_dataset(tmp_path / "synth", images=8, objects=4, size=96, workers=1, seed=7)
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        import_jacquard(s, open_store(store_url), tmp_path / "synth", name="synth")
    env = {
        **os.environ,
        "REGRASP_DATABASE_URL": sqlite_url,
        "REGRASP_OBJECT_STORE_URL": store_url,
        "CUDA_VISIBLE_DEVICES": "",
    }
    base = [sys.executable, "-m", "regrasp.cli", "train", "--arch", "ggcnn", "--num-workers", "0"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*base, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=WAIT_S
        )

    for args, message in [
        (("--dataset", "nope"), "error: dataset 'nope' not found"),
        (("--dataset", "synth", "--epochs", "0"), "epochs"),
        (("--dataset", "synth", "--version", "3"), "has no version 3"),
        (("--dataset", "synth", "--config", "{oops"), "--config is not JSON"),
    ]:
        bad = run(*args)
        assert bad.returncode == 1, bad.stderr
        assert bad.stderr.strip().count("\n") == 0 and message in bad.stderr

    good = run("--dataset", "synth", "--epochs", "1", "--input-size", "64", "--device", "cpu")
    assert good.returncode == 0, good.stderr
    assert "epoch 1/1" in good.stdout and "registered" in good.stdout
    with session_scope(engine) as s:
        (model,) = s.scalars(sa.select(Model)).all()
        assert model.status == ModelStatus.ready and model.architecture == "ggcnn"
        assert (s.scalar(sa.select(jobs.Job.state))) == "succeeded"
    engine.dispose()
