"""Round routes answer from the transaction that changed the round.

A route that records a request wakes the round runner, which may take the database's
write lock at once: on SQLite an apply holds the one write lock until it commits. Here the
runner is made to win that race every time (the wake returns only once the runner is
parked inside its apply transaction), so a route that read the database after waking it
would wait on the lock and answer 503 for an apply it had accepted.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from fastapi.testclient import TestClient

from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import make_engine, session_scope
from services.orchestrator.app import create_app
from tests.harness.seeders import labelled_dataset, seed_round

ADMIN = ("lead", "lead-password-1")
#: Bounds that only stop a hung test; nothing is timed.
WAIT_S = 60.0


def test_apply_answers_while_the_woken_runner_holds_the_write_lock(
    tmp_path, database_url, file_store_url
):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        object_store_url=file_store_url,
        secret_key="r" * 40,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
    )
    parked, release = threading.Event(), threading.Event()

    def hook(_round_id: int, point: str) -> None:
        if point == "applying:before_commit":
            parked.set()
            release.wait(WAIT_S)

    with TestClient(create_app(settings)) as api:
        runner = api.app.state.round_runner
        runner.hook = hook
        wake = runner.wake

        def wake_and_let_the_runner_win() -> None:
            wake()
            assert parked.wait(WAIT_S), "the runner did not start applying"

        runner.wake = wake_and_let_the_runner_win
        round_id = _round(database_url)
        r = api.post("/auth/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        try:
            r = api.post(f"/rounds/{round_id}/apply", json={"force": True}, headers=headers)
            assert parked.is_set()  # the answer came while the apply held its transaction
        finally:
            release.set()
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "applying"

        deadline = time.monotonic() + WAIT_S
        while (got := api.get(f"/rounds/{round_id}", headers=headers).json())["state"] != "done":
            assert time.monotonic() < deadline, got
            time.sleep(0.05)
        assert got["result_version"] == 1


def _round(url: str) -> int:
    """A dataset of four labelled images and a round on it waiting in review."""
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            dataset, _ = labelled_dataset(
                session,
                name="routes",
                image_names=[f"img{i}" for i in range(4)],
                object_names=["obj"] * 4,
                size=64,
                owners=np.arange(4),
                grasps=[[32, 32, 0, 20, 10]] * 4,
            )
            return seed_round(session, dataset_id=dataset)
    finally:
        engine.dispose()
