"""Refinement rounds that meet faults, with every service a real process (issue 10).

The trainer API, trainer workers, the BentoML inference service and the orchestrator run
as processes on 127.0.0.1 over a throwaway PostgreSQL cluster of this module (so it can be
restarted) and S3 on moto reached through a TCP proxy (so the object store can be cut off).
Data: 24 synthetic 64² images with corrupted labels; decisions come from the simulated
reviewer. The faults, in order:

1. a trainer worker SIGKILLed after the first epoch of the round's training: another
   worker resumes the job from its checkpoint, and the model equals the one an
   uninterrupted job trains (same weights, same losses);
2. the inference service SIGKILLed while the round predicts: the round retries with
   backoff until the service is started again, then goes on;
3. PostgreSQL stopped and started again while the round predicts: no service is
   restarted, the round goes on;
4. the object store unreachable from the start of predicting: the round retries with
   growing waits, then fails naming the store; once the store is back, `resume` finishes it.

Every round ends `done` with the labels of an uninterrupted reference round (2-4, which
reuse the model of 1) or as its decisions say (1), with one prediction per image, one job
per model, one new version, and `regrasp gc` finding nothing orphaned. Killing the
orchestrator in each state is `test_round_processes.py`'s part.
"""

from __future__ import annotations

import time
import uuid

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
import torch

from regrasp.api.jobs import TrainJobCreate
from regrasp.api.rounds import RoundCreate
from regrasp.clients.trainer import TrainerClient
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.learn.training.registry import load_registered
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import DatasetVersion, Job, Model, ModelStatus, Prediction
from tests.harness.cluster import SERVICE_KEY, WAIT_S, Cluster, TcpProxy
from tests.harness.postgres import PostgresServer
from tests.harness.rounds import check_version, finish, import_dataset, labels_by_name

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

TRAIN = {
    "architecture": "ggcnn",
    "epochs": 2,
    "batch_size": 4,
    "input_size": 32,
    "num_workers": 0,
    "augment": {"enabled": False},
    "decode": {"threshold": 0.0},
    "split": {"kind": "image", "val_fraction": 0.1, "test_fraction": 0.1},
}
#: Retries for faults that heal (a restarted service): a long budget, short waits.
PATIENT = {
    "REGRASP_ROUND_RETRY_SECONDS": "600",
    "REGRASP_ROUND_RETRY_INITIAL_SECONDS": "0.5",
    "REGRASP_ROUND_RETRY_MAX_DELAY_SECONDS": "2",
}
#: Retries for the outage that outlasts them: three tries (0.5 s, then 1 s apart).
# Each of the round's 3 tries sends a chunk once (no chunk retries), so the outage is
# found in seconds per try rather than half a minute.
IMPATIENT = {
    **PATIENT,
    "REGRASP_ROUND_RETRY_MAX_ATTEMPTS": "3",
    "REGRASP_ROUND_CHUNK_RETRIES": "0",
}


class Faults:
    def __init__(self, cluster: Cluster, postgres: PostgresServer, proxy: TcpProxy) -> None:
        self.cluster, self.postgres, self.proxy = cluster, postgres, proxy


@pytest.fixture(scope="module")
def faults(tmp_path_factory, s3_server):
    from minio import Minio

    tmp = tmp_path_factory.mktemp("faults")
    postgres = PostgresServer()
    proxy = cluster = None
    try:
        postgres.start()
        db_url = postgres.create_database("regrasp")
        bucket = f"regrasp-faults-{uuid.uuid4().hex[:8]}"
        Minio(
            s3_server.endpoint,
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
            secure=False,
            region=s3_server.region,
        ).make_bucket(bucket)
        host, port = s3_server.endpoint.split(":")
        proxy = TcpProxy((host, int(port)))
        cluster = Cluster(
            tmp,
            db_url=db_url,
            store_env={
                "REGRASP_OBJECT_STORE_URL": f"s3://{bucket}",
                "REGRASP_S3_ENDPOINT": proxy.endpoint,
                "REGRASP_S3_ACCESS_KEY": s3_server.access_key,
                "REGRASP_S3_SECRET_KEY": s3_server.secret_key,
            },
        )
        generate_dataset(
            tmp / "synth", images=24, objects=6, size=64, workers=1, seed=5, corrupt_fraction=0.4
        )
        migrations.upgrade(db_url)
        cluster.start_trainer()
        cluster.start_inference()
        cluster.wait_ready()
        yield Faults(cluster, postgres, proxy)
    finally:
        if cluster is not None:
            cluster.close()
        if proxy is not None:
            proxy.cut()
        postgres.close()


# --- 1. a trainer worker killed mid-training ---------------------------------------------


@pytest.fixture(scope="module")
def trained(faults):
    """A training round whose worker is SIGKILLed after epoch 1, then an uninterrupted job
    with the same payload (the reference the resumed training must equal)."""
    c = faults.cluster
    dataset_id = import_dataset(c, "trained")
    c.start_worker("victim", heartbeat_interval=0.5, pause_after_epoch=1)
    api = c.start_orchestrator(**PATIENT)
    rnd = api.create_round(RoundCreate(dataset_id=dataset_id, train=TRAIN, chunk_size=8))
    assert c.wait_marker().startswith("victim after epoch 1")
    c.kill("victim")
    c.start_worker("survivor", heartbeat_interval=0.5, heartbeat_timeout=3.0)
    decisions = finish(c, api, dataset_id, rnd.id)
    final = api.get_round(rnd.id)
    c.kill("orchestrator")
    with TrainerClient(c.trainer_url, credential=SERVICE_KEY) as trainer:
        job = trainer.get(final.train_job_id)
        jobs_of_round = sorted(j.id for j in trainer.list(kind="train").items)
        again = trainer.submit(
            TrainJobCreate(dataset=dataset_id, version=0, config=job.payload["config"])
        )
        reference = trainer.wait(again.id, timeout=WAIT_S, poll=0.3)
    return {
        "dataset_id": dataset_id,
        "round": final,
        "decisions": decisions,
        "job": job,
        "jobs_of_round": jobs_of_round,
        "reference": reference,
    }


def test_a_worker_killed_mid_training_is_resumed_to_the_uninterrupted_model(faults, trained):
    c, final, job, reference = (
        faults.cluster,
        trained["round"],
        trained["job"],
        trained["reference"],
    )
    assert final.state == "done" and final.retry is None
    assert trained["jobs_of_round"] == [final.train_job_id] == final.train_job_ids  # one job
    # Resumed by the survivor from the victim's checkpoint, not restarted.
    assert job.state == "succeeded" and job.attempts == 2 and job.worker_id == "survivor"
    assert job.result["resumed_from_epoch"] == 1 and job.result["model_id"] == final.model_id
    assert [h["epoch"] for h in job.result["history"]] == [1, 2]
    # ... to exactly what an uninterrupted job with the same payload computes.
    assert reference.state == "succeeded", reference.error
    assert reference.result["resumed_from_epoch"] == 0  # ran both epochs itself
    losses = [[h["train_loss"] for h in j.result["history"]] for j in (job, reference)]
    assert losses[0] == losses[1]
    store = c.store()
    resumed, _ = load_registered(store, str(final.model_id), device="cpu")
    uninterrupted, _ = load_registered(store, str(reference.result["model_id"]), device="cpu")
    for (name, a), b in zip(
        resumed.state_dict().items(), uninterrupted.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    kinds = {d["decision"] for d in trained["decisions"].values()}
    assert kinds - {"true_negative"}, "the reviewer changed nothing: the check would be empty"
    check_version(c, trained["dataset_id"], final.id, trained["decisions"])
    _assert_no_duplicates(c, trained["dataset_id"], final.id)
    with session_scope(engine := make_engine(c.db_url)) as s:
        statuses = s.scalars(sa.select(Model.status)).all()
    engine.dispose()
    assert statuses == [ModelStatus.ready, ModelStatus.ready]  # the round's, the reference's
    _assert_gc_clean(c)


# --- the reference for 2-4: an uninterrupted round reusing that model --------------------


@pytest.fixture(scope="module")
def reference(faults, trained):
    c = faults.cluster
    dataset_id = import_dataset(c, "reference")
    api = c.start_orchestrator(**PATIENT)
    request = RoundCreate(dataset_id=dataset_id, model_id=trained["round"].model_id, chunk_size=8)
    rnd = api.create_round(request)
    finish(c, api, dataset_id, rnd.id)
    c.kill("orchestrator")
    return labels_by_name(c, dataset_id, 1)


def _start_round(c: Cluster, trained: dict, name: str, pause_at: str, env: dict):  # type: ignore[no-untyped-def]
    dataset_id = import_dataset(c, name)
    api = c.start_orchestrator(pause_at, release=True, **env)
    request = RoundCreate(dataset_id=dataset_id, model_id=trained["round"].model_id, chunk_size=8)
    return api, dataset_id, api.create_round(request).id


# --- 2. the inference service killed while predicting ------------------------------------


def test_inference_killed_while_predicting_is_retried_until_it_is_back(faults, trained, reference):
    c = faults.cluster
    jobs_before = _count(c, Job)
    api, dataset_id, round_id = _start_round(
        c, trained, "inference-killed", "predicting:chunk", PATIENT
    )
    c.wait_marker()  # one chunk of three stored, the next in flight
    c.kill("inference")
    with httpx.Client(timeout=5.0) as http, pytest.raises(httpx.ConnectError):
        http.get(f"{c.inference_url}/healthz")  # gone at once, its workers too
    c.release_runner()
    seen = _wait(lambda: api.get_round(round_id).retry, c, "the round never met the dead service")
    assert seen.state == "predicting" and c.inference_url in seen.error
    assert api.get_round(round_id).counts.images_predicted < 24
    c.start_inference()
    c.wait_ready("inference")
    finish(c, api, dataset_id, round_id)
    _assert_like_reference(c, api, dataset_id, round_id, reference)
    assert _count(c, Job) == jobs_before  # the reused model: nothing trained


# --- 3. PostgreSQL restarted while predicting --------------------------------------------


def test_postgres_restarted_while_predicting_the_round_goes_on(faults, trained, reference):
    c, postgres = faults.cluster, faults.postgres
    api, dataset_id, round_id = _start_round(
        c, trained, "postgres-restart", "predicting:chunk", PATIENT
    )
    c.wait_marker()
    postgres.stop()
    c.release_runner()
    log = c.logs / "orchestrator.log"
    _wait(lambda: "database unavailable" in log.read_text(errors="replace"), c, "no outage seen")
    postgres.start()
    finish(c, api, dataset_id, round_id)
    for name in ("trainer", "survivor", "inference", "orchestrator"):
        assert c.alive(name), f"{name} did not survive the database restart\n{c.tail()}"
    _assert_like_reference(c, api, dataset_id, round_id, reference)


# --- 4. the object store unreachable, longer than the retry budget -----------------------


def test_an_object_store_outage_fails_the_round_clearly_and_resume_finishes_it(
    faults, trained, reference
):
    c, proxy = faults.cluster, faults.proxy
    api, dataset_id, round_id = _start_round(c, trained, "store-outage", "created", IMPATIENT)
    c.wait_marker()
    proxy.cut()
    c.release_runner()
    failed = api.wait_round(round_id, until=("failed", "done", "cancelled"), timeout=WAIT_S)
    assert failed.state == "failed" and failed.failed_in == "predicting", failed
    assert failed.retry.gave_up and failed.retry.attempts == 3
    assert failed.retry.delays == [0.5, 1.0]  # waits doubled between the tries
    assert "gave up after 3 tries" in failed.error
    assert "S3 store" in failed.error and proxy.endpoint in failed.error  # what was down
    assert failed.counts.images_predicted == 0
    proxy.restore()
    resumed = api.resume_round(round_id)
    assert resumed.state == "predicting" and resumed.retry is None and resumed.error is None
    finish(c, api, dataset_id, round_id)
    _assert_like_reference(c, api, dataset_id, round_id, reference)


# --- checks --------------------------------------------------------------------------------


def _assert_like_reference(c: Cluster, api, dataset_id: int, round_id: int, reference) -> None:  # type: ignore[no-untyped-def]
    final = api.get_round(round_id)
    c.kill("orchestrator")
    assert final.state == "done" and final.result_version == 1 and final.retry is None
    assert final.error is None
    got = labels_by_name(c, dataset_id, 1)
    assert got.keys() == reference.keys()
    for name, labels in reference.items():
        np.testing.assert_allclose(got[name], labels, atol=1e-3, err_msg=name)
    _assert_no_duplicates(c, dataset_id, round_id)
    _assert_gc_clean(c)


def _assert_no_duplicates(c: Cluster, dataset_id: int, round_id: int) -> None:
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            rows, images = s.execute(
                sa.select(
                    sa.func.count(Prediction.id), sa.func.count(Prediction.image_id.distinct())
                ).where(Prediction.round_id == round_id)
            ).one()
            numbers = s.scalars(
                sa.select(DatasetVersion.number)
                .where(DatasetVersion.dataset_id == dataset_id)
                .order_by(DatasetVersion.number)
            ).all()
    finally:
        engine.dispose()
    assert rows == images == 24  # one prediction per image, none twice
    assert numbers == [0, 1]  # one new version


def _assert_gc_clean(c: Cluster) -> None:
    report = c.gc()
    assert report["clean"] and report["young"] == 0, report
    assert report["scanned"] > 0


def _count(c: Cluster, table) -> int:  # type: ignore[no-untyped-def]
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            return int(s.scalar(sa.select(sa.func.count()).select_from(table)))
    finally:
        engine.dispose()


def _wait(probe, c: Cluster, what: str):  # type: ignore[no-untyped-def]
    """Poll `probe()` until it is truthy; fails after WAIT_S (a hang, not a timing check)."""
    deadline = time.monotonic() + WAIT_S
    while not (value := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}\n{c.tail()}")
        time.sleep(0.3)
    return value
