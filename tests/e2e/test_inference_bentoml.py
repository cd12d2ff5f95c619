"""`bentoml serve` as a subprocess on 127.0.0.1, called with the robot example's functions
and with the README's curl line.

The real server (supervisor + worker processes, BentoML's own HTTP stack) on a free port,
a registered GG-CNN promoted to `production` in a migrated SQLite database with a robot's
API key, a `file://` store, and a real Jacquard depth frame.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from examples.robot_client import predict_bentoml, predict_httpx, read_depth, to_camera
from regrasp.learn import model_registry
from regrasp.learn.training.registry import register_untrained
from regrasp.platform import accounts
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.objects import open_store
from tests.harness.processes import start_service

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `bentoml serve` for the module; the README test stops it to read its log, so it
    runs last (pytest keeps the file's order)."""
    tmp_path = tmp_path_factory.mktemp("inference")
    db_url, store_url = f"sqlite:///{tmp_path / 'regrasp.db'}", f"file://{tmp_path / 'objects'}"
    migrations.upgrade(db_url)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        meta = register_untrained(open_store(store_url), "e2e", session=session)
        model_registry.promote(session, meta["model_id"])
        user = accounts.create_user(session, username="arm", password="pw-arm-12", role="annotator")
        key = accounts.create_api_key(session, owner_id=user.id, name="arm").key
    engine.dispose()
    env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "REGRASP_DATA_DIR": str(tmp_path / "data"),
        "REGRASP_DATABASE_URL": db_url,
        "REGRASP_OBJECT_STORE_URL": store_url,
        "REGRASP_INFERENCE_DEVICE": "cpu",
        "PYTHONPATH": f"{REPO / 'shared'}{os.pathsep}{REPO}",
    }
    service = start_service("inference", env=env, log=tmp_path / "inference.log")
    try:
        service.wait_http("/readyz", timeout=120)
        yield service.url, key, service
    finally:
        service.stop(grace=30)  # the server and its workers, started here


def test_robot_client_gets_the_best_grasp_from_bentoml_serve(server, jacquard_samples):
    url, key, _ = server
    path = sorted(jacquard_samples.glob("*/*_perfect_depth.tiff"))[0]
    answer = predict_httpx(url, key, path.read_bytes(), k=3)
    assert answer["model_name"] == "e2e" and 1 <= len(answer["grasps"]) <= 3
    best = answer["grasps"][0]
    assert 0 <= best["x"] < 1024 and 0 <= best["y"] < 1024
    same = predict_bentoml(url, key, path, k=3)
    assert [g["x"] for g in same["grasps"]] == [g["x"] for g in answer["grasps"]]
    cam = to_camera(best, read_depth(path), fx=1000.0, fy=1000.0, cx=511.5, cy=511.5)
    assert cam.z > 0 and cam.opening_m > 0
    assert (
        httpx.post(f"{url}/predict", files={"depth": ("d", b"x", "image/tiff")}).status_code == 401
    )
    assert httpx.get(f"{url}/metrics").status_code == 200


def _readme_curl() -> str:
    """The curl line of the README's robot section, as written there."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## The robot endpoint") :]
    (line,) = [ln for ln in section.splitlines() if ln.startswith("curl ")][:1]
    return line


def test_the_readme_curl_line_works_and_client_errors_log_one_line(
    server, jacquard_samples, tmp_path
):
    """The README's exact curl command (only the port is this server's): curl sends the
    file as application/octet-stream and gets grasps. A millimetre frame gets a 422 that
    says so, and the server logs it as one line, not a traceback."""
    url, key, service = server
    command = _readme_curl()
    assert "http://127.0.0.1:3000/predict" in command and "-F depth=@frame_depth.tiff" in command
    frame = sorted(jacquard_samples.glob("*/*_perfect_depth.tiff"))[0]
    (tmp_path / "frame_depth.tiff").write_bytes(frame.read_bytes())
    run = subprocess.run(
        ["bash", "-c", command.replace("http://127.0.0.1:3000", url)],
        cwd=tmp_path,
        env={**os.environ, "REGRASP_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["model_name"] == "e2e" and answer["grasps"], answer
    assert all(0 <= g["x"] <= 1023 and 0 <= g["y"] <= 1023 for g in answer["grasps"])

    depth = cv2.imread(str(frame), cv2.IMREAD_UNCHANGED)
    ok, mm = cv2.imencode(".tiff", (depth * 1000.0).astype(np.float32))
    assert ok
    (tmp_path / "frame_depth.tiff").write_bytes(mm.tobytes())
    bad = subprocess.run(
        [
            "bash",
            "-c",
            command.replace("curl ", "curl -s -w '\\n%{http_code}' ", 1).replace(
                "http://127.0.0.1:3000", url
            ),
        ],
        cwd=tmp_path,
        env={**os.environ, "REGRASP_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    body, status = bad.stdout.rsplit("\n", 1)
    assert status == "422" and "looks like millimetres" in json.loads(body)["error"], bad.stdout

    service.signal(signal.SIGTERM)  # stop it to read everything it logged
    service.process.wait(timeout=60)
    log = service.log_text()
    lines = [ln for ln in log.splitlines() if "looks like millimetres" in ln]
    assert len(lines) == 1 and "422" in lines[0], log[-3000:]
    assert "Traceback" not in log, log[-3000:]
