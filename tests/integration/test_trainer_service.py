"""The trainer API over a real migrated database: job lifecycle, auth, errors, the client."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from regrasp.api.jobs import EvaluateJobCreate, TrainJobCreate
from regrasp.clients.trainer import TrainerClient
from regrasp.learn import queue as jobs
from regrasp.platform.accounts import create_api_key, create_user, login_token
from regrasp.platform.errors import InvalidInput, NotFound, Unauthenticated
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Model, ModelStatus
from services.trainer.app import create_app
from tests.harness.seeders import labelled_dataset

SERVICE_KEY = "service-key-for-tests-0123456789"


@dataclass
class Api:
    http: TestClient
    engine: object
    admin: dict[str, str]
    ci: dict[str, str]
    annotator: dict[str, str]
    service: dict[str, str]
    dataset_id: int
    model_id: int
    pending_model_id: int


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture
def api(database_url, file_store_url, tmp_path):
    settings = Settings(
        database_url=database_url,
        object_store_url=file_store_url,
        data_dir=tmp_path,
        service_api_key=SERVICE_KEY,
    )
    engine = make_engine(database_url)
    with TestClient(create_app(settings, engine=engine)) as http:  # runs the migrations
        with session_scope(engine) as s:
            admin = create_user(s, username="lead", password="password-1", role="admin")
            annotator = create_user(s, username="ann", password="password-2", role="annotator")
            ci_key = create_api_key(s, owner_id=admin.id, name="ci", scope="service").key
            secret = settings.secret_key.get_secret_value()
            admin_token = login_token(admin, secret=secret, ttl_seconds=600)
            annotator_token = login_token(annotator, secret=secret, ttl_seconds=600)
            dataset_id, _ = labelled_dataset(
                s,
                name="toy",
                image_names=["0_a", "1_b"],
                object_names=["a", "b"],
                size=128,
                owners=[0, 1],
                grasps=[[64, 64, 0, 40, 20]] * 2,
            )
            ready = Model(architecture="ggcnn", in_channels=1, status=ModelStatus.ready)
            pending = Model(architecture="ggcnn", in_channels=1, status=ModelStatus.training)
            s.add_all([ready, pending])
            s.flush()
            ids = (ready.id, pending.id)
        yield Api(
            http=http,
            engine=engine,
            admin=_bearer(admin_token),
            ci=_bearer(ci_key),
            annotator=_bearer(annotator_token),
            service=_bearer(SERVICE_KEY),
            dataset_id=dataset_id,
            model_id=ids[0],
            pending_model_id=ids[1],
        )
    engine.dispose()


TRAIN = {"kind": "train", "dataset": "toy", "config": {"architecture": "ggcnn", "epochs": 2}}


def test_health_and_readiness_need_no_auth(api):
    assert api.http.get("/healthz").json() == {"status": "ok"}
    ready = api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_submit_list_get_cancel_lifecycle(api):
    made = api.http.post("/jobs", json=TRAIN, headers=api.service)
    assert made.status_code == 201, made.text
    job = made.json()
    assert job["state"] == "queued" and job["kind"] == "train" and job["attempts"] == 0
    # The stored payload is resolved and complete: ids, version, every config field.
    assert job["payload"]["dataset_id"] == api.dataset_id and job["payload"]["version"] == 0
    assert job["payload"]["config"]["epochs"] == 2
    assert job["payload"]["config"]["batch_size"] == 32  # the paper's default filled in

    second = api.http.post(
        "/jobs",
        json={"kind": "evaluate", "model_id": api.model_id, "dataset": api.dataset_id},
        headers=api.ci,
    )
    assert second.status_code == 201, second.text
    assert second.json()["payload"]["split"] == "test"

    listed = api.http.get("/jobs", headers=api.annotator).json()
    assert listed["total"] == 2
    assert [j["id"] for j in listed["items"]] == [second.json()["id"], job["id"]]
    only_train = api.http.get("/jobs", params={"kind": "train"}, headers=api.admin).json()
    assert [j["id"] for j in only_train["items"]] == [job["id"]]

    got = api.http.get(f"/jobs/{job['id']}", headers=api.admin).json()
    assert got["id"] == job["id"] and got["eta_seconds"] is None

    cancelled = api.http.post(f"/jobs/{job['id']}/cancel", headers=api.admin)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = api.http.post(f"/jobs/{job['id']}/cancel", headers=api.admin)
    assert again.json()["state"] == "cancelled"
    queued = api.http.get("/jobs", params={"state": "queued"}, headers=api.admin).json()
    assert [j["id"] for j in queued["items"]] == [second.json()["id"]]


def test_running_job_reports_progress_metrics_and_eta(api):
    job_id = api.http.post("/jobs", json=TRAIN, headers=api.admin).json()["id"]
    with session_scope(api.engine) as s:
        jobs.claim(s, "gpu-0")
    with session_scope(api.engine) as s:
        jobs.heartbeat(s, job_id, "gpu-0", progress=0.5, metrics={"epoch": 1, "loss": 0.1})
    got = api.http.get(f"/jobs/{job_id}", headers=api.admin).json()
    assert got["state"] == "running" and got["worker_id"] == "gpu-0" and got["attempts"] == 1
    assert got["progress"] == 0.5 and got["metrics"]["epoch"] == 1
    assert got["eta_seconds"] is not None and got["eta_seconds"] >= 0
    with session_scope(api.engine) as s:
        jobs.finish(s, job_id, "gpu-0", {"model_id": 9})
    done = api.http.get(f"/jobs/{job_id}", headers=api.admin).json()
    assert done["state"] == "succeeded" and done["result"] == {"model_id": 9}
    refused = api.http.post(f"/jobs/{job_id}/cancel", headers=api.admin)
    assert refused.status_code == 409 and "succeeded" in refused.json()["detail"]


@pytest.mark.parametrize("method, path", [("post", "/jobs"), ("post", "/jobs/1/cancel")])
def test_mutations_need_an_admin_credential(api, method, path):
    kwargs = {"json": TRAIN} if path == "/jobs" else {}
    missing = getattr(api.http, method)(path, **kwargs)
    assert missing.status_code == 401
    assert missing.json()["detail"] == "missing bearer credential"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = getattr(api.http, method)(path, headers=_bearer("rgk_deadbeef_nope"), **kwargs)
    assert wrong.status_code == 401
    annotator = getattr(api.http, method)(path, headers=api.annotator, **kwargs)
    assert annotator.status_code == 403 and "admin" in annotator.json()["detail"]


def test_reads_need_a_credential(api):
    assert api.http.get("/jobs").status_code == 401
    assert api.http.get("/jobs/1").status_code == 401


@pytest.mark.parametrize(
    "body, message",
    [
        ({"kind": "train"}, "dataset: Field required"),
        ({"kind": "paint", "dataset": "toy"}, "does not match any of the expected tags"),
        ({**TRAIN, "config": {"epochs": 0}}, "epochs"),
        ({**TRAIN, "config": {"architecture": "alexnet"}}, "unknown architecture 'alexnet'"),
        ({**TRAIN, "config": {"epochz": 3}}, "epochz"),
        ({**TRAIN, "colour": "red"}, "colour"),
        ({**TRAIN, "version": -1}, "version"),
        ({"kind": "evaluate", "dataset": "toy"}, "model_id: Field required"),
    ],
)
def test_bad_payloads_are_422_with_a_message(api, body, message):
    response = api.http.post("/jobs", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_unknown_things_are_404(api):
    assert api.http.get("/jobs/999", headers=api.admin).status_code == 404
    assert api.http.post("/jobs/999/cancel", headers=api.admin).status_code == 404
    unknown = api.http.post("/jobs", json={**TRAIN, "dataset": "nope"}, headers=api.admin)
    message = "dataset 'nope' not found"
    assert unknown.json() == {"error": message, "detail": message}  # every service's shape
    missing_version = api.http.post("/jobs", json={**TRAIN, "version": 4}, headers=api.admin)
    assert missing_version.status_code == 404
    evaluate = {"kind": "evaluate", "dataset": "toy", "model_id": 999}
    assert api.http.post("/jobs", json=evaluate, headers=api.admin).status_code == 404
    not_ready = {**evaluate, "model_id": api.pending_model_id}
    response = api.http.post("/jobs", json=not_ready, headers=api.admin)
    assert response.status_code == 422 and "not ready" in response.json()["detail"]


def test_typed_client_round_trip(api):
    transport = api.http._transport  # the in-process ASGI transport of the TestClient
    with TrainerClient(
        "http://testserver", credential=SERVICE_KEY, transport=transport, retries=0
    ) as client:
        job = client.submit(TrainJobCreate(dataset="toy", config={"architecture": "ggcnn"}))
        assert client.get(job.id).state == "queued"
        assert [j.id for j in client.list(kind="train").items] == [job.id]
        assert client.cancel(job.id).finished
        with pytest.raises(NotFound):
            client.get(job.id + 100)
        with pytest.raises(InvalidInput, match="not ready"):
            client.submit(EvaluateJobCreate(model_id=api.pending_model_id, dataset="toy"))
    with TrainerClient("http://testserver", transport=transport, retries=0) as anonymous:
        with pytest.raises(Unauthenticated):
            anonymous.submit(TrainJobCreate(dataset="toy"))
