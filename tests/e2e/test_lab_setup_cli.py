"""The lab's whole set-up by the admin from the CLI alone, on real processes.

The trainer API, a trainer worker, the BentoML inference service and the orchestrator run
on 127.0.0.1 (`tests.harness.cluster`). Every step of the admin is a `regrasp` command run as
a process, as a lead types it: add two annotators, import a dataset, start a round and
follow it to review, apply it, export the new version, and check people and rounds.
No step of the admin calls the HTTP API by hand. The annotators' decisions go through
the typed client the review UI uses (their screen is the UI, not the CLI).

The robot's key is made with `regrasp api-key create --scope robot` and may not read the
orchestrator (a robot only predicts).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile

import httpx
import pytest

from regrasp.api.review import DecisionCreate
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.store.db import migrations
from tests.harness.cluster import ADMIN, Cluster

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

TRAIN = {
    "architecture": "ggcnn",
    "epochs": 1,
    "batch_size": 4,
    "input_size": 64,
    "num_workers": 0,
    "augment": {"enabled": False},
    "decode": {"threshold": 0.0},
    "split": {"kind": "image", "val_fraction": 0.0, "test_fraction": 0.1},
}


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    migrations.upgrade(c.db_url)
    try:
        c.start_trainer()
        c.start_worker("worker")
        c.start_inference()
        c.wait_ready()
        c.start_orchestrator().close()
        yield c
    finally:
        c.close()


def _regrasp(c: Cluster, *args: str, user: tuple[str, str] = ADMIN) -> str:
    """`regrasp ARGS` as a process, signed in as `user`; its output (exit 0 asserted)."""
    done = subprocess.run(
        [sys.executable, "-m", "regrasp.cli", *args]
        + ["--url", c.orchestrator_url, "--username", user[0], "--password", user[1]],
        capture_output=True,
        text=True,
        timeout=900,
        env={**c.env, "COLUMNS": "200"},
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr, c.tail())
    return done.stdout


def test_the_admin_sets_up_the_lab_with_the_cli_alone(cluster, tmp_path):
    c = cluster
    people = {}
    for name in ("ana", "bob"):
        out = _regrasp(c, "user", "add", name)
        assert f"user {name!r} (annotator" in out
        people[name] = re.search(r"password: (\S+)", out).group(1)
    out = _regrasp(c, "api-key", "create", "ur5-cell-1", "--scope", "robot")
    robot_key = re.search(r"\(robot\): (\S+)", out).group(1)
    assert "ur5-cell-1" in _regrasp(c, "api-key", "list")
    # Least privilege, checked by the test (not a set-up step): the robot's key reads
    # nothing of the orchestrator.
    refused = httpx.get(
        f"{c.orchestrator_url}/datasets", headers={"Authorization": f"Bearer {robot_key}"}
    )
    assert refused.status_code == 403, refused.text

    out = _regrasp(
        c,
        "import",
        "lab",
        "--synthetic",
        "16",
        "--size",
        "64",
        "--seed",
        "3",
        "--corrupt-fraction",
        "0.5",
    )
    assert "dataset 'lab'" in out and "imported" in out
    out = _regrasp(c, "round", "start", "lab", "--config", json.dumps({"train": TRAIN}), "--wait")
    round_id = int(re.search(r"round (\d+) on 'lab'", out).group(1))
    assert f"round {round_id}: reviewing" in out, out
    # --wait says what the round is doing while it waits, not nothing for minutes.
    assert re.search(rf"round {round_id} is (starting|training)", out), out

    # The annotators review in the UI; here through the same typed client the UI uses.
    decided = 0
    for k, name in enumerate(("ana", "bob")):
        with OrchestratorClient(c.orchestrator_url, timeout=120.0) as api:
            api.login(name, people[name])
            while (item := api.claim_next(round_id)) is not None:
                kind = "annotation_error" if decided == 0 else "true_negative"
                body = DecisionCreate(item_version=item.version, decision=kind, seconds_taken=1.0)
                api.decide(item.id, body)
                decided += 1
                if k == 0 and decided >= 2:
                    break  # bob takes the rest
    assert decided >= 1, "the round flagged no image: nothing to review"

    status = _regrasp(c, "round", "status", str(round_id))
    assert f"decided {decided}" in status, status
    out = _regrasp(c, "round", "apply", str(round_id))
    assert "applying: v0 → next version: 1 images removed" in out, out
    assert re.search(rf"round {round_id}: done .*-> v1", out), out

    target = tmp_path / "lab-v1.zip"
    _regrasp(c, "export", "lab", "--version", "1", "--output", str(target))
    with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as archive:
        manifest = json.loads(archive.read("lab-v1/manifest.json"))
        grasps_files = [n for n in archive.namelist() if n.endswith("_grasps.txt")]
    assert manifest["version"] == 1 and manifest["counts"]["images"] == 15
    assert len(manifest["changes_since_v0"]["removed_images"]) == 1
    assert len(grasps_files) == 15

    users = _regrasp(c, "user", "list")
    assert [line.split("\t")[1:3] for line in users.splitlines()] == [
        [ADMIN[0], "admin"],
        ["ana", "annotator"],
        ["bob", "annotator"],
    ]
    rounds = _regrasp(c, "round", "status")
    assert re.search(rf"^{round_id}\tlab v0\tdone\tresult v1$", rounds, re.M), rounds
