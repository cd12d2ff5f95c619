"""No secret ever reaches a log: the real processes, every kind of credential, then a grep.

The orchestrator, the trainer API, a trainer worker and the BentoML inference service run
as processes, launched as `regrasp up` launches them (`tests.harness.stack.LoadStack`:
`regrasp.demo.local_stack` under `regrasp.platform.supervisor`, each process's stdout and stderr
captured in
`<data>/logs/<name>.log`), on PostgreSQL (a URL with a password in it) and an S3 bucket
(moto's server; the services sign with their own secret key). The test then does what
people, robots and services do with credentials:

- logins (an admin and an annotator) and a failed login with a wrong password;
- API keys created by the admin: a `robot` key used at the inference service (`/predict`
  on a depth frame fetched through the orchestrator, once the round's model is promoted)
  and refused by the orchestrator, an `admin` key used at the orchestrator and the trainer,
  and an unknown key refused at both;
- service-to-service calls: a round that trains its model (the orchestrator submits a
  job to the trainer API with the services' key, the worker trains it, reading and
  writing S3) and then predicts (the orchestrator calls the inference service's `/predict_stored`
  naming the round's model); the admin's token and the admin key at the trainer API too;
- image bytes over HTTP: refused (401) anonymous and with a forged token, served with a
  token.

After stopping the processes (so everything is flushed), every captured log is searched
for every secret used: passwords (the wrong one too), bearer tokens and their signatures,
the API key and its secret part, the services' key, the token-signing key, the S3 keys
and the database password. None may appear.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from regrasp.api.accounts import ApiKeyCreate, UserCreate
from regrasp.api.rounds import RoundCreate
from regrasp.clients.inference import InferenceClient
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.clients.trainer import TrainerClient
from regrasp.platform.auth import issue_token, new_api_key
from regrasp.platform.errors import PermissionDenied, Unauthenticated
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Image
from tests.harness.seeders import import_synthetic
from tests.harness.stack import LoadStack

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

WAIT_S = 300.0
#: Every process that handles a credential (the review UI holds none of its own).
PROCESSES = ("orchestrator", "trainer", "worker", "inference")
#: A round that trains a small model (the worker's log then shows a real training).
TRAIN = {
    "epochs": 1,
    "batch_size": 4,
    "input_size": 64,
    "num_workers": 0,
    "augment": {"enabled": False},
    "split": {"kind": "image", "val_fraction": 0.0, "test_fraction": 0.0},
    # A one-epoch model's quality map may lie below the default threshold everywhere;
    # decode every peak so the robot's call returns ranked grasps whatever the init drew.
    "decode": {"threshold": -1e6},
}
REPO = Path(__file__).resolve().parents[2]


def _with_password(url: str) -> tuple[str, str]:
    """The URL with a password (the server trusts 127.0.0.1, so a new one is accepted
    and only tests that it never leaks); the URL's own when it has one."""
    parsed = make_url(url)
    if parsed.password:
        return url, str(parsed.password)
    password = "db-pw-" + secrets.token_hex(12)
    return parsed.set(password=password).render_as_string(hide_password=False), password


def _token(api: OrchestratorClient) -> str:
    return api._http.headers["Authorization"].removeprefix("Bearer ")


def test_no_secret_appears_in_any_service_log(postgres_url, s3_server, s3_bucket, tmp_path):
    db_url, db_password = _with_password(postgres_url)
    s3_secret = "s3-secret-" + secrets.token_hex(12)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        object_store_url=f"s3://{s3_bucket}",
        s3_endpoint=s3_server.endpoint,
        s3_access_key="s3-access-" + secrets.token_hex(6),
        s3_secret_key=s3_secret,
        s3_region=s3_server.region,
    )
    admin = ("lead", "admin-pw-" + secrets.token_hex(12))
    annotator_pw = "ana-pw-" + secrets.token_hex(12)
    wrong_pw = "wrong-pw-" + secrets.token_hex(12)
    used: dict[str, str] = {
        "admin password": admin[1],
        "annotator password": annotator_pw,
        "wrong password": wrong_pw,
        "database password": db_password,
        "S3 secret key": s3_secret,
        "S3 access key": settings.s3_access_key.get_secret_value(),
    }
    stack = LoadStack(settings, env={"OMP_NUM_THREADS": "1"}, admin=admin, processes=PROCESSES)
    used["service key"] = stack.stack.service_key
    used["token signing key"] = stack.stack.env["REGRASP_SECRET_KEY"]
    with stack:
        url, inference_url = stack.url, stack.stack.url("inference")
        assert stack.api is not None
        used["admin token"] = _token(stack.api)
        with OrchestratorClient(url) as failed, pytest.raises(Unauthenticated):
            failed.login(admin[0], wrong_pw)

        stack.api.create_user(UserCreate(username="ana", password=annotator_pw))
        ana = OrchestratorClient(url)
        ana.login("ana", annotator_pw)
        used["annotator token"] = _token(ana)

        key = stack.api.create_api_key(ApiKeyCreate(name="arm")).key  # scope robot
        used["API key"] = key
        ops = stack.api.create_api_key(ApiKeyCreate(name="ops", scope="admin")).key
        used["admin API key"] = ops

        # Service-to-service calls: the round's training step (a trainer job, trained by
        # the worker) and its predicting step (reload, predict_stored).
        dataset = import_synthetic(stack.api, name="secrets", images=8, size=64)
        rnd = stack.api.create_round(RoundCreate(dataset_id=dataset, train=TRAIN))
        done = stack.api.wait_round(rnd.id, until=("reviewing", "failed"), timeout=WAIT_S)
        assert done.state == "reviewing", (done.state, done.error)
        assert done.counts.images_predicted == 8
        model = done.model_id
        trainer_url = stack.stack.url("trainer")
        for credential in (used["admin token"], ops):
            with TrainerClient(trainer_url, credential=credential) as trainer:
                assert [j.state for j in trainer.list(kind="train").items] == ["succeeded"]

        # Images over HTTP: only for signed-in users.
        with session_scope(stack.engine) as session:
            image = session.scalar(sa.select(Image.id).where(Image.dataset_id == dataset))
        forged = issue_token("not-the-key" + "x" * 20, subject="lead", role="admin", ttl_seconds=9)
        for headers in ({}, {"Authorization": f"Bearer {forged}"}):
            for kind in ("rgb", "depth"):
                r = httpx.get(f"{url}/images/{image}/{kind}", headers=headers, timeout=30)
                assert r.status_code == 401, (kind, headers, r.status_code)
        depth = ana.image_bytes(image, "depth")
        assert depth[:2] in (b"II", b"MM")  # a TIFF

        # The keys at both services, and an unknown key refused at both.
        with OrchestratorClient(url, credential=ops) as admin_key:
            assert admin_key.me().username == "lead"
        with OrchestratorClient(url, credential=key) as robot, pytest.raises(PermissionDenied):
            robot.me()
        stack.api.promote_model(model)
        with InferenceClient(inference_url, credential=key, timeout=120.0) as arm:
            deadline = time.monotonic() + WAIT_S
            while arm.model().model_id != model:  # replicas follow the alias
                assert time.monotonic() < deadline, "the promotion never reached inference"
                time.sleep(0.5)
            assert arm.predict(depth=depth, k=2).grasps
        unknown = new_api_key().key
        used["unknown API key"] = unknown
        with OrchestratorClient(url, credential=unknown) as bad, pytest.raises(Unauthenticated):
            bad.me()
        with InferenceClient(inference_url, credential=unknown) as bad:
            with pytest.raises(Unauthenticated):
                bad.model()
        ana.close()
        crashes = stack.crashes
    time.sleep(0.5)  # the supervisor's readers have written their last lines

    assert not crashes, crashes
    for name in ("admin token", "annotator token"):
        used[f"{name} signature"] = used[name].rsplit(".", 1)[1]
    for name in ("API key", "admin API key", "unknown API key"):
        used[f"{name} secret part"] = used[name].split("_", 2)[2]
    logs = {p.name: p.read_text(errors="replace") for p in stack.logs.rglob("*.log")}
    assert {f"{name}.log" for name in PROCESSES} <= set(logs), sorted(logs)
    # The logs recorded the traffic (so a leak would have had somewhere to land).
    assert "POST /auth/login" in logs["orchestrator.log"], logs["orchestrator.log"][-2000:]
    assert "/predict_stored" in logs["inference.log"], logs["inference.log"][-2000:]
    assert "POST /jobs" in logs["trainer.log"], logs["trainer.log"][-2000:]
    assert "runs job" in logs["worker.log"], logs["worker.log"][-2000:]
    leaks = [
        f"{what} in {name}"
        for what, value in used.items()
        for name, text in logs.items()
        if value and value in text
    ]
    assert not leaks, leaks


def test_services_refusing_a_bad_database_url_do_not_print_its_password(tmp_path):
    """A typo in REGRASP_DATABASE_URL stops a service at start with one line; the password
    in that URL is not in the line (it once was: the error quoted the URL as given)."""
    password = "db-pw-" + secrets.token_hex(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGRASP_")}
    env |= {
        "REGRASP_DATA_DIR": str(tmp_path / "data"),
        "REGRASP_DATABASE_URL": f"postgresql+psycopg://regrasp:{password}@127.0.0.1:port/x",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    commands = {
        "orchestrator": [sys.executable, "-m", "services.orchestrator", "serve", "--port", "1"],
        "trainer": [sys.executable, "-m", "services.trainer", "serve", "--port", "1"],
        "regrasp db current": [sys.executable, "-m", "regrasp.cli", "db", "current"],
    }
    for name, command in commands.items():
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        output = done.stdout + done.stderr
        assert done.returncode == 1, (name, output[-2000:])
        assert "malformed database URL" in output and "regrasp:***@" in output, (name, output)
        assert password not in output, name
    shown = subprocess.run(
        [sys.executable, "-m", "regrasp.cli", "settings"],
        cwd=REPO,
        env=env | {"REGRASP_DATABASE_URL": f"postgresql+psycopg://regrasp:{password}@h/x"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "database_url = postgresql+psycopg://regrasp:***@h/x" in shown and password not in shown
