"""The lab lead's CLI over a real orchestrator (uvicorn on 127.0.0.1): people, a round's
training progress from the trainer's job record, and an apply with its preview.

The trainer is not started: the round's job record is written by the job library as a
worker writes it (claim, heartbeat with the epoch's metrics), and the orchestrator's
`trainer_url` names a closed port, so nothing but that record can move the round.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from regrasp.cli import app as cli
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.data import versions as V
from regrasp.learn import queue as jobs
from regrasp.platform.errors import Unauthenticated
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import ReviewItem, Round, RoundState, User
from regrasp.refine.review.decisions import decide
from services.orchestrator.app import create_app
from tests.harness.inprocess import serve
from tests.harness.ports import closed_port
from tests.harness.seeders import audit_census, bare_dataset, seed_round, unflag_last

ADMIN = ("lead", "lead-password-1")


@pytest.fixture
def server(tmp_path, sqlite_url, file_store_url):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        object_store_url=file_store_url,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
        trainer_url=f"http://127.0.0.1:{closed_port()}",
        inference_urls=[f"http://127.0.0.1:{closed_port()}"],
    )
    with serve(create_app(settings), "orchestrator") as url:
        yield {"url": url, "db": sqlite_url}


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _refused(*args: str) -> str:
    """Run `regrasp ARGS` as the console runs it: a refusal is one line and exit 1."""
    done = subprocess.run(
        [sys.executable, "-m", "regrasp.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, (args, done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    return done.stderr


def _auth(url: str, user=ADMIN) -> list[str]:
    return ["--url", url, "--username", user[0], "--password", user[1]]


def test_user_add_list_and_passwd(server):
    url = server["url"]
    r = _run("user", "add", "ana", *_auth(url))
    assert r.exit_code == 0, r.output
    generated = r.output.split("password: ")[1].split()[0]
    r = _run(
        "user", "add", "eve", "--role", "admin", "--new-password", "eve-password-1", *_auth(url)
    )
    assert r.exit_code == 0 and "'eve' (admin" in r.output, r.output
    assert "password:" not in r.output  # a given password is never echoed

    r = _run("user", "list", *_auth(url))
    rows = [line.split("\t") for line in r.output.splitlines()]
    assert [(row[1], row[2]) for row in rows] == [
        ("lead", "admin"),
        ("ana", "annotator"),
        ("eve", "admin"),
    ]
    with OrchestratorClient(url) as api:
        assert api.login("ana", generated)

    r = _run(
        "user",
        "passwd",
        "ana",
        "--new-password",
        "ana-new-password",
        *_auth(url, ("eve", "eve-password-1")),
    )
    assert r.exit_code == 0, r.output
    with OrchestratorClient(url) as api:
        with pytest.raises(Unauthenticated):
            api.login("ana", generated)
        api.login("ana", "ana-new-password")

    # Refusals: one line, exit 1, nothing changed.
    for args, why in (
        (["user", "add", "ana"], "already exists"),
        (["user", "passwd", "nobody"], "no user named 'nobody'"),
        (["user", "passwd", "ana", "--new-password", "short"], "password"),
        (["user", "add", "bad name!"], "username"),
    ):
        assert why in _refused(*args, *_auth(url)), args
    assert "not an admin" in _refused(
        "user", "add", "mallory", *_auth(url, ("ana", "ana-new-password"))
    )
    r = _run("user", "list", *_auth(url))
    assert len(r.output.splitlines()) == 3


def test_round_status_shows_the_epochs_of_the_training_job(server):
    engine = make_engine(server["db"])
    try:
        with session_scope(engine) as s:
            dataset = bare_dataset(s, name="epochs", images=6)
            job = jobs.submit(s, "train", {"dataset_id": dataset, "config": {"epochs": 10}})
            rnd = Round(dataset_id=dataset, base_version=0, state=RoundState.training)
            rnd.train_job_id = job.id
            s.add(rnd)
            s.flush()
            round_id, job_id = rnd.id, job.id
        r = _run("round", "status", str(round_id), *_auth(server["url"]))
        assert r.exit_code == 0 and f"job {job_id} queued for a worker" in r.output, r.output
        with session_scope(engine) as s:
            jobs.claim(s, "w1")
            metrics = {"phase": "train", "epoch": 3, "epochs": 10, "loss": 0.0123}
            jobs.heartbeat(s, job_id, "w1", progress=0.25, metrics=metrics)
        with OrchestratorClient(server["url"]) as api:
            api.login(*ADMIN)
            (progress,) = api.get_round(round_id).training
        assert (progress.epoch, progress.epochs, progress.loss) == (3, 10, 0.0123)
        assert progress.state == "running" and progress.progress == 0.25
        r = _run("round", "status", str(round_id), *_auth(server["url"]))
        assert r.exit_code == 0 and "epoch 3 of 10, loss 0.0123" in r.output, r.output
    finally:
        engine.dispose()


def test_apply_prints_what_changes_and_the_version_agrees(server):
    engine = make_engine(server["db"])
    try:
        with session_scope(engine) as s:
            dataset = bare_dataset(s, name="applied", images=5)
            round_id = seed_round(s, dataset_id=dataset, top_k=2)
            lead = s.scalar(sa.select(User.id).where(User.username == ADMIN[0]))
            items = s.scalars(
                sa.select(ReviewItem).where(ReviewItem.round_id == round_id).order_by(ReviewItem.id)
            ).all()
            labels = V.labels_at(s, dataset, 0)
            plan = ["annotation_error", "fix", "missing_label", "true_negative"]
            for item, decision in zip(items, plan, strict=False):
                own = labels.grasp_ids[labels.image_ids == item.image_id]
                decide(
                    s,
                    item.id,
                    lead,
                    item_version=item.version,
                    decision=decision,
                    removed_grasp_ids=[int(own[0])] if decision == "fix" else [],
                    accepted_predictions=[1] if decision in ("fix", "missing_label") else [],
                    seconds_taken=1.0,
                )
            undecided = len(items) - len(plan)
        with OrchestratorClient(server["url"]) as api:
            api.login(*ADMIN)
            preview = api.apply_preview(round_id)
        assert (preview.images_removed, preview.grasps_added, preview.grasps_removed) == (1, 2, 1)
        assert preview.grasps_removed_with_images == 3 and preview.undecided == undecided
        r = _run("round", "apply", str(round_id), "--force", *_auth(server["url"]))
        assert r.exit_code == 0, r.output
        assert "1 images removed (3 labels with them), 2 grasps added, 1 removed by fixes" in (
            r.output
        )
        with session_scope(engine) as s:
            v1 = V.labels_at(s, dataset, 1)
            images = V.images_at(s, dataset, 1)
        assert len(images) == preview.images_after
        assert len(v1) == preview.grasps_after == preview.grasps_before - 3 + 2 - 1
        assert np.isin(labels.image_ids, images).sum() == preview.grasps_before - 3
    finally:
        engine.dispose()


def test_round_audit_queues_a_census_and_a_sample(server):
    """`regrasp round audit` queues the census of the unflagged images the flag ranks
    highest and a random sample of the rest; changing the census is one line, exit 1."""
    engine = make_engine(server["db"])
    try:
        with session_scope(engine) as s:
            dataset = bare_dataset(s, name="audited", images=8)
            round_id = seed_round(s, dataset_id=dataset)
            expected_top = set(unflag_last(s, round_id, 4)[:2])
        r = _run(
            "round", "audit", str(round_id), "--count", "1", "--top", "2", *_auth(server["url"])
        )
        assert r.exit_code == 0, r.output
        assert f"round {round_id}: 3 audit items added, 3 in all" in r.output
        with session_scope(engine) as s:
            census = audit_census(s, round_id)
        assert census == expected_top
        refused = _refused("round", "audit", str(round_id), "--top", "1", *_auth(server["url"]))
        assert "census of the top 2" in refused
    finally:
        engine.dispose()
