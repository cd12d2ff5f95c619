"""Bad input to the inference and trainer services: refused clearly, nothing changed.

The companion of `test_bad_input.py` (the orchestrator and the CLI) for the two services
that load torch: the inference service through BentoML's real ASGI app (adaptive batching
on, a registered GG-CNN loaded, a robot's API key) and the trainer's FastAPI app, both
over one migrated SQLite database and a `file://` store. Each case sends one bad request
and checks a 4xx whose message says what is wrong, and that every table and every stored
object is unchanged (`tests.harness.state.unchanged`). One column may change on a refused
inference request and is named: `api_keys.last_used_at`, which the robot's key refreshes
(at most once a minute) when it is accepted, before the request is looked at.

Cases by entry point (pytest ids), 39 in all:

- POST /predict (predict-*, 22): corrupt PNG, truncated TIFF, integer depth, three-channel
  depth, a side over the limit, an empty file, no file at all, text in a text/plain part,
  depth in millimetres, a robot naming a model other than production, a JSON body, a body
  over REGRASP_INFERENCE_MAX_REQUEST_BYTES (413), no Content-Length (411), NaN / inf /
  zero depth everywhere, k = 0, NaN min_quality; no key, a wrong key, a malformed key,
  Basic auth (401).
- other inference routes (warm-*, stored-*, forward-*, 5): a robot warming a model (403),
  warming an unknown model (404), stored predictions of a version not made (404) or an
  empty id list, a robot on the internal batch route (403).
- trainer POST /jobs and /jobs/{id} (trainer-*, 12): an annotator submits (403), no token
  (401), unknown dataset and version (404), unknown network, a bad TrainConfig value, an
  unknown field, an unknown kind, evaluation of an unknown model (404), a body over
  REGRASP_MAX_REQUEST_BYTES (413), unknown job read and cancel (404).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from regrasp.learn.training.registry import register_untrained
from regrasp.platform import accounts
from regrasp.platform.auth import issue_token
from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.objects import open_store
from services.inference.service import InferenceService
from services.trainer.app import create_app as create_trainer
from tests.harness.inprocess import forget_bentoml_metrics
from tests.harness.seeders import labelled_dataset
from tests.harness.state import snapshot, unchanged

SERVICE_KEY = "bad-input-ml-service-" + "k" * 30
SECRET = "bad-input-ml-secret-" + "s" * 30
MAX_INFERENCE_BODY = 256 * 1024
MAX_TRAINER_BODY = 32 * 1024
KEY_USE = {"api_keys": ("last_used_at",)}  # refreshed when the robot's key is accepted


def _tiff(depth: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".tiff", depth)
    assert ok
    return data.tobytes()


GOOD_DEPTH = np.full((64, 64), 0.6, np.float32)
GOOD_DEPTH[16:48, 20:44] = 0.55


@dataclass
class World:
    inference: TestClient
    trainer: TestClient
    engine: Any
    store: Any
    credentials: dict[str | None, str | None]
    dataset: int

    def call(self, service: str, who: str | None, method: str, path: str, **kw: Any):  # type: ignore[no-untyped-def]
        client = self.inference if service == "inference" else self.trainer
        headers = dict(kw.pop("headers", {}) or {})
        if who is not None:
            credential = self.credentials[who]
            headers["Authorization"] = credential if " " in credential else f"Bearer {credential}"
        return client.request(method, path, headers=headers, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("bad-input-ml")
    db_url, store_url = f"sqlite:///{root / 'regrasp.db'}", f"file://{root / 'objects'}"
    migrations.upgrade(db_url)
    engine = make_engine(db_url)
    store = open_store(store_url)
    with session_scope(engine) as session:
        decode = {"sigma": 2.0, "min_distance": 20}
        register_untrained(store, "served", decode=decode, session=session)
        robot = accounts.create_user(
            session, username="robot", password="robot-password", role="annotator"
        )
        key = accounts.create_api_key(session, owner_id=robot.id, name="arm").key
        robot_token = issue_token(SECRET, subject=str(robot.id), role="annotator", ttl_seconds=3600)
        dataset, _ = labelled_dataset(
            session,
            name="d",
            image_names=["0_o"],
            object_names=["o"],
            size=64,
            owners=np.zeros(1, np.int64),
            grasps=np.array([[32, 32, 0, 20, 8.0]]),
        )
    env = {
        "REGRASP_DATA_DIR": str(root / "data"),
        "REGRASP_DATABASE_URL": db_url,
        "REGRASP_OBJECT_STORE_URL": store_url,
        "REGRASP_SERVICE_API_KEY": SERVICE_KEY,
        "REGRASP_SECRET_KEY": SECRET,
        "REGRASP_INFERENCE_MODEL_NAME": "served",
        "REGRASP_INFERENCE_DEVICE": "cpu",
        "REGRASP_INFERENCE_MAX_REQUEST_BYTES": str(MAX_INFERENCE_BODY),
    }
    trainer_settings = Settings(
        data_dir=root / "data",
        database_url=db_url,
        object_store_url=store_url,
        secret_key=SECRET,
        service_api_key=SERVICE_KEY,
        max_request_bytes=MAX_TRAINER_BODY,
    )
    forget_bentoml_metrics()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        with (
            TestClient(InferenceService.to_asgi(), raise_server_exceptions=False) as inference,
            TestClient(create_trainer(trainer_settings), raise_server_exceptions=False) as trainer,
        ):
            yield World(
                inference=inference,
                trainer=trainer,
                engine=engine,
                store=store,
                credentials={
                    "robot": key,
                    "robot-token": robot_token,
                    "service": SERVICE_KEY,
                    "wrong-key": "rgk_deadbeef_" + "x" * 43,
                    "malformed": "rgk_nope",
                    "basic": "Basic cm9ib3Q6cm9ib3QtcGFzc3dvcmQ=",
                    None: None,
                },
                dataset=dataset,
            )
    forget_bentoml_metrics()
    engine.dispose()


@dataclass(frozen=True)
class Case:
    service: str
    who: str | None
    method: str
    path: str
    status: int
    says: str  # lower-cased fragment of the error message
    body: Callable[[World], dict[str, Any]]
    ignore_columns: dict[str, tuple[str, ...]] | None = None


def _case(case_id, service, who, method, path, status, says, body=None, *, ignore=None):  # type: ignore[no-untyped-def]
    case = Case(service, who, method, path, status, says, body or (lambda w: {}), ignore)
    return pytest.param(case, id=case_id)


def _upload(data: bytes, content_type: str = "image/tiff", name: str = "depth.tiff", **fields):  # type: ignore[no-untyped-def]
    form = {k: str(v) for k, v in fields.items()}
    return lambda w: {"files": {"depth": (name, data, content_type)}, "data": form}


def _raw(data: bytes, content_type: str, **headers: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"content": data, "headers": {"Content-Type": content_type, **headers}}


def _chunked(w: World) -> dict[str, Any]:
    def chunks() -> Iterator[bytes]:
        yield _tiff(GOOD_DEPTH)

    return {"content": chunks(), "headers": {"Content-Type": "application/octet-stream"}}


def _job(**fields: Any) -> Callable[[World], dict[str, Any]]:
    def body(w: World) -> dict[str, Any]:
        return {"json": {"kind": "train", "dataset": w.dataset, **fields}}

    return body


def _stored(version: int, ids: list[int]) -> Callable[[World], dict[str, Any]]:
    return lambda w: {
        "json": {
            "model_name": "served",
            "dataset_id": w.dataset,
            "version": version,
            "image_ids": ids,
        }
    }


GOOD = _tiff(GOOD_DEPTH)
PNG_HEADER = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x40\0\0\0\x40\x08\x02\0\0\0"
P, INF, TRN = "/predict", "inference", "trainer"

# fmt: off
CASES = [
    # POST /predict with the robot's key
    _case("predict-corrupt-png", INF, "robot", "POST", P, 422, "corrupt",
          _upload(PNG_HEADER + b"\0" * 64, "image/png", "d.png"), ignore=KEY_USE),
    _case("predict-truncated-tiff", INF, "robot", "POST", P, 422, "corrupt",
          _upload(GOOD[: len(GOOD) // 3]), ignore=KEY_USE),
    _case("predict-integer-depth", INF, "robot", "POST", P, 422, "floating-point",
          _upload(_tiff(np.full((64, 64), 600, np.uint16))), ignore=KEY_USE),
    _case("predict-three-channel-depth", INF, "robot", "POST", P, 422, "1 channel",
          _upload(_tiff(np.full((64, 64, 3), 0.6, np.float32))), ignore=KEY_USE),
    _case("predict-side-over-limit", INF, "robot", "POST", P, 422, "exceeds",
          _upload(_tiff(np.full((1, 9000), 0.6, np.float32))), ignore=KEY_USE),
    _case("predict-empty-file", INF, "robot", "POST", P, 422, "empty", _upload(b""),
          ignore=KEY_USE),
    _case("predict-no-file", INF, "robot", "POST", P, 422, "depth image",
          lambda w: {"files": {"": ("", b"", "text/plain")}}, ignore=KEY_USE),
    _case("predict-text-part", INF, "robot", "POST", P, 422, "not a png, jpeg or tiff",
          _upload(b"hello, not an image", "text/plain", "d.txt"), ignore=KEY_USE),
    _case("predict-millimetres", INF, "robot", "POST", P, 422, "looks like millimetres",
          _upload(_tiff(GOOD_DEPTH * 1000.0)), ignore=KEY_USE),
    _case("predict-robot-names-a-model", INF, "robot", "POST", P, 403, "production model only",
          _upload(GOOD, model_name="other"), ignore=KEY_USE),
    _case("predict-model-id-not-a-number", INF, "service", "POST", P, 400, "model_id",
          _upload(GOOD, model_id="served")),
    _case("predict-model-by-id-and-name", INF, "service", "POST", P, 422, "one of the two",
          _upload(GOOD, model_id=1, model_name="served")),
    _case("predict-blank-model-name", INF, "service", "POST", P, 422, "model_name must be",
          _upload(GOOD, model_name=" ")),
    _case("predict-json-body", INF, "robot", "POST", P, 400, "invalid file type",
          lambda w: {"json": {"depth": "aGVsbG8="}}, ignore=KEY_USE),
    _case("predict-body-over-limit", INF, "robot", "POST", P, 413, "request body",
          _upload(b"\0" * (MAX_INFERENCE_BODY + 1)), ignore=KEY_USE),
    _case("predict-no-content-length", INF, "robot", "POST", P, 411, "content-length", _chunked,
          ignore=KEY_USE),
    _case("predict-nan-depth", INF, "robot", "POST", P, 422, "no valid pixel",
          _upload(_tiff(np.full((64, 64), np.nan, np.float32))), ignore=KEY_USE),
    _case("predict-inf-depth", INF, "robot", "POST", P, 422, "no valid pixel",
          _upload(_tiff(np.full((64, 64), np.inf, np.float32))), ignore=KEY_USE),
    _case("predict-zero-depth", INF, "robot", "POST", P, 422, "no valid pixel",
          _upload(_tiff(np.zeros((64, 64), np.float32))), ignore=KEY_USE),
    _case("predict-k-zero", INF, "robot", "POST", P, 400, "k", _upload(GOOD, k=0), ignore=KEY_USE),
    _case("predict-nan-min-quality", INF, "robot", "POST", P, 422, "min_quality",
          _upload(GOOD, min_quality="nan"), ignore=KEY_USE),
    _case("predict-no-key", INF, None, "POST", P, 401, "missing credential", _upload(GOOD)),
    _case("predict-wrong-key", INF, "wrong-key", "POST", P, 401, "invalid api key", _upload(GOOD)),
    _case("predict-malformed-key", INF, "malformed", "POST", P, 401, "malformed", _upload(GOOD)),
    _case("predict-basic-auth", INF, "basic", "POST", P, 401, "missing credential", _upload(GOOD)),
    # the other inference routes
    _case("warm-by-robot", INF, "robot", "POST", "/warm", 403, "robot api key",
          lambda w: {"json": {"model_name": "served"}}, ignore=KEY_USE),
    _case("warm-unknown-model", INF, "service", "POST", "/warm", 404, "no-such-model",
          lambda w: {"json": {"model_name": "no-such-model"}}),
    _case("warm-unknown-model-id", INF, "service", "POST", "/warm", 404, "model 999999",
          lambda w: {"json": {"model_id": 999999}}),
    _case("warm-names-no-model", INF, "service", "POST", "/warm", 422, "model_id or by model_name",
          lambda w: {"json": {}}),
    _case("stored-names-no-model", INF, "service", "POST", "/predict_stored", 422,
          "model_id or by model_name",
          lambda w: {"json": {"dataset_id": w.dataset, "version": 0, "image_ids": [1]}}),
    _case("stored-unknown-version", INF, "service", "POST", "/predict_stored", 404, "version 7",
          _stored(7, [1])),
    _case("stored-no-ids", INF, "service", "POST", "/predict_stored", 400, "image_ids",
          _stored(0, [])),
    _case("forward-batch-by-robot", INF, "robot", "POST", "/forward_batch", 403, "robot api key",
          lambda w: {"json": {"tickets": ["x"]}}, ignore=KEY_USE),
    # the trainer
    _case("trainer-by-annotator", TRN, "robot-token", "POST", "/jobs", 403, "admin", _job()),
    _case("trainer-no-token", TRN, None, "POST", "/jobs", 401, "credential", _job()),
    _case("trainer-unknown-dataset", TRN, "service", "POST", "/jobs", 404, "999999",
          _job(dataset=999999)),
    _case("trainer-unknown-version", TRN, "service", "POST", "/jobs", 404, "no version 9",
          _job(version=9)),
    _case("trainer-unknown-network", TRN, "service", "POST", "/jobs", 422, "nope",
          _job(config={"architecture": "nope"})),
    _case("trainer-bad-config-value", TRN, "service", "POST", "/jobs", 422, "epochs",
          _job(config={"epochs": -1})),
    _case("trainer-unknown-field", TRN, "service", "POST", "/jobs", 422, "extra",
          _job(colour="red")),
    _case("trainer-unknown-kind", TRN, "service", "POST", "/jobs", 422, "kind",
          lambda w: {"json": {"kind": "dream", "dataset": w.dataset}}),
    _case("trainer-evaluate-unknown-model", TRN, "service", "POST", "/jobs", 404, "model 999999",
          lambda w: {"json": {"kind": "evaluate", "model_id": 999999, "dataset": w.dataset}}),
    _case("trainer-body-over-limit", TRN, "service", "POST", "/jobs", 413, "request body",
          _job(config={"notes": "x" * MAX_TRAINER_BODY})),
    _case("trainer-unknown-job", TRN, "service", "GET", "/jobs/999999", 404, "999999"),
    _case("trainer-cancel-unknown-job", TRN, "service", "POST", "/jobs/999999/cancel", 404,
          "999999"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES)
def test_service_refuses(world: World, case: Case) -> None:
    with unchanged(world.engine, world.store, ignore_columns=case.ignore_columns):
        response = world.call(case.service, case.who, case.method, case.path, **case.body(world))
    assert response.status_code == case.status, response.text
    body = response.json()
    message = body["error"] if case.service == INF else body["detail"]
    assert isinstance(message, str) and case.says in message.lower(), body
    assert "traceback" not in response.text.lower()


def test_good_requests_pass_and_snapshots_see_changes(world: World) -> None:
    """The controls: the same routes answer a good request, and a write shows in a snapshot."""
    response = world.call(INF, "robot", "POST", P, **_upload(GOOD, k=2)(world))
    assert response.status_code == 200, response.text
    assert 1 <= len(response.json()["grasps"]) <= 2
    before = snapshot(world.engine, world.store)
    response = world.call(TRN, "service", "POST", "/jobs", **_job(config={"epochs": 1})(world))
    assert response.status_code == 201, response.text
    changed = before.differences(snapshot(world.engine, world.store))
    assert [c.split(":")[0] for c in changed] == ["table jobs"], changed
