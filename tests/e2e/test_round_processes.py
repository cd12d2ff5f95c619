"""Whole refinement rounds with every service as a real process, and restarts in each state.

The trainer API, one trainer worker, the BentoML inference service and the orchestrator
run as processes on 127.0.0.1 over one SQLite file and a `file://` store. The data is a
small synthetic dataset with corrupted labels and its truth manifest; decisions come
from the simulated reviewer (`regrasp.synthetic.reviewer.SimulatedReviewer`) and are
posted through `POST /rounds/{id}/decisions`.

- The training round is SIGKILLed right after the trainer accepted its job (before the
  job id was stored) and restarted: the job is found again, not submitted twice; the
  round then runs to its end, and version 1 is checked image by image against the
  decisions (removed images gone, accepted predictions added with provenance, fixed
  rectangles removed, the rest unchanged).
- The other states: the trained model is reused (`model_id`), a reference round runs
  uninterrupted, then one round per state is SIGKILLed exactly there (this file run as a
  launcher with ROUND_TEST_PAUSE_AT makes the runner's hook park at that point) and
  restarted; each ends with the same labels as the reference.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.clients.base import ServiceError
from regrasp.clients.orchestrator import (
    BulkDecisions,
    DecisionEntry,
    OrchestratorClient,
    RoundCreate,
)
from regrasp.errors import StorageError
from regrasp.store.db import migrations
from regrasp.store.db import versions as V
from regrasp.store.db.engine import make_engine, session_scope
from regrasp.store.db.tables import Image, Job, Prediction, ReviewItem
from regrasp.store.objects import open_store
from regrasp.synthetic.generate import generate_dataset
from regrasp.synthetic.manifest import read_manifest
from regrasp.synthetic.reviewer import SimulatedReviewer
from regrasp.training_jobs import import_jacquard

ROOT = Path(__file__).resolve().parents[2]
SERVICE_KEY = "e2e-service-key-0123456789abcdef"
ADMIN = ("lead", "lead-password-1")
#: Bounds that only stop a hung test on a loaded 2-core machine; nothing is timed.
WAIT_S = 240.0
TRAIN = {
    "architecture": "ggcnn",
    "epochs": 2,
    "batch_size": 4,
    "input_size": 64,
    "num_workers": 0,
    "augment": {"enabled": False},
    "decode": {"threshold": 0.0},
    "split": {"kind": "image", "val_fraction": 0.1, "test_fraction": 0.1},
}
KILL_POINTS = ["created", "predicting:chunk", "reviewing", "applying:before_commit"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The processes, their env and logs; the orchestrator can be killed and restarted."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db_url = f"sqlite:///{tmp / 'regrasp.db'}"
        self.store_url = f"file://{tmp / 'objects'}"
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.procs: dict[str, subprocess.Popen] = {}
        self.trainer_port, self.inference_port = _free_port(), _free_port()
        self.orchestrator_url = ""
        self.env = {
            **os.environ,
            "REGRASP_DATA_DIR": str(tmp / "data"),
            "REGRASP_DATABASE_URL": self.db_url,
            "REGRASP_OBJECT_STORE_URL": self.store_url,
            "REGRASP_SERVICE_API_KEY": SERVICE_KEY,
            "REGRASP_SECRET_KEY": "s" * 40,
            "REGRASP_ADMIN_USERNAME": ADMIN[0],
            "REGRASP_ADMIN_PASSWORD": ADMIN[1],
            "REGRASP_TRAINER_URL": f"http://127.0.0.1:{self.trainer_port}",
            "REGRASP_INFERENCE_URLS": f'["http://127.0.0.1:{self.inference_port}"]',
            "BENTOML_DO_NOT_TRACK": "true",
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": "1",
        }

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        out = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**self.env, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole
        )
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def start_orchestrator(self, pause_at: str | None = None) -> OrchestratorClient:
        port = _free_port()
        env = {"ROUND_TEST_PAUSE_AT": pause_at or "", "ROUND_TEST_MARKER": str(self.marker)}
        proc = self.start("orchestrator", [sys.executable, __file__, "127.0.0.1", str(port)], **env)
        self.orchestrator_url = f"http://127.0.0.1:{port}"
        _wait_http(f"{self.orchestrator_url}/healthz", proc, self.logs / "orchestrator.log")
        api = OrchestratorClient(self.orchestrator_url, timeout=120.0)
        _retry(lambda: api.login(*ADMIN))
        return api

    @property
    def marker(self) -> Path:
        return self.tmp / "paused.marker"

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.iterdir()
        )

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rounds")
    c = Cluster(tmp)
    generate_dataset(
        tmp / "synth", images=24, objects=6, size=128, workers=1, seed=5, corrupt_fraction=0.4
    )
    migrations.upgrade(c.db_url)
    c.start(
        "trainer",
        [
            sys.executable,
            "-m",
            "services.trainer",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(c.trainer_port),
        ],
    )
    c.start(
        "worker",
        [
            sys.executable,
            "-m",
            "services.trainer",
            "worker",
            "--worker-id",
            "w1",
            "--device",
            "cpu",
            "--poll-interval",
            "0.3",
            "--heartbeat-interval",
            "2",
        ],
    )
    c.start(
        "inference",
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "services.inference.service:InferenceService",
            "--host",
            "127.0.0.1",
            "--port",
            str(c.inference_port),
        ],
    )
    try:
        _wait_http(
            f"http://127.0.0.1:{c.trainer_port}/healthz", c.procs["trainer"], c.logs / "trainer.log"
        )
        _wait_http(
            f"http://127.0.0.1:{c.inference_port}/healthz",
            c.procs["inference"],
            c.logs / "inference.log",
        )
        yield c
    finally:
        c.close()


def _import(c: Cluster, name: str) -> int:
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            return import_jacquard(s, open_store(c.store_url), c.tmp / "synth", name=name)
    finally:
        engine.dispose()


def _retry(call, tries: int = 20):  # type: ignore[no-untyped-def]
    """`call()`, again while SQLite answers "database is locked" (503): several processes
    write one SQLite file here, and a deferred transaction that must upgrade to a writer
    fails at once instead of waiting (an engine matter, reported; not what is tested)."""
    for attempt in range(tries):
        try:
            return call()
        except (ServiceError, StorageError) as exc:
            if attempt == tries - 1 or "locked" not in str(exc):
                raise
            time.sleep(0.3)
    return None


def _wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not come up: {log.read_text(errors='replace')[-3000:]}")


def _wait_state(c: Cluster, api: OrchestratorClient, round_id: int, states: tuple[str, ...]):
    rnd = api.wait_round(round_id, until=(*states, "failed", "cancelled"), timeout=WAIT_S, poll=0.3)
    assert rnd.state in states, (rnd.state, rnd.error, c.tail())
    return rnd


def _wait_marker(c: Cluster) -> None:
    deadline = time.monotonic() + WAIT_S
    while not c.marker.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the runner never reached the pause point\n{c.tail()}")
        time.sleep(0.2)
    c.marker.unlink()


def _review(c: Cluster, dataset_id: int, round_id: int) -> dict[str, dict]:
    """The simulated reviewer's decisions on the round's items, by image name."""
    truth = read_manifest(c.tmp / "synth").by_stem()
    reviewer = SimulatedReviewer(error_rate=0.0, seed=0)
    engine = make_engine(c.db_url)
    out: dict[str, dict] = {}
    try:
        with session_scope(engine) as s:
            rows = s.execute(
                sa.select(ReviewItem.image_id, Image.name, Prediction.grasps)
                .join(Image, Image.id == ReviewItem.image_id)
                .join(Prediction, Prediction.id == ReviewItem.prediction_id)
                .where(ReviewItem.round_id == round_id)
                .order_by(Image.name)
            ).all()
            for image_id, name, grasps in rows:
                labels = V.labels_for_image(s, image_id, 0)
                preds = np.asarray(grasps, dtype=np.float64).reshape(-1, 6)[:, :5]
                d = reviewer.review(truth[name], labels.grasps, preds)
                out[name] = {
                    "image_id": image_id,
                    "decision": d.kind,
                    "accepted_predictions": d.accepted_predictions,
                    "removed_grasp_ids": [int(labels.grasp_ids[i]) for i in d.removed_labels],
                    "predictions": preds,
                }
    finally:
        engine.dispose()
    return out


def _post_decisions(api: OrchestratorClient, round_id: int, decisions: dict[str, dict]) -> None:
    entries = [
        DecisionEntry(
            image_id=d["image_id"],
            decision=d["decision"],
            accepted_predictions=d["accepted_predictions"],
            removed_grasp_ids=d["removed_grasp_ids"],
        )
        for d in decisions.values()
    ]
    if entries:
        _retry(lambda: api.round_decisions(round_id, BulkDecisions(decisions=entries)))


def _labels_by_name(c: Cluster, dataset_id: int, version: int) -> dict[str, np.ndarray]:
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            names = dict(
                s.execute(
                    sa.select(Image.id, Image.name).where(Image.dataset_id == dataset_id)
                ).all()
            )
            present = V.images_at(s, dataset_id, version)
            labels = V.labels_at(s, dataset_id, version)
    finally:
        engine.dispose()
    return {names[int(i)]: labels.grasps[labels.image_ids == i] for i in present}


def _check_version(c: Cluster, dataset_id: int, round_id: int, decisions: dict) -> None:
    """Version 1 against version 0 and the decisions, image by image."""
    v0, v1 = _labels_by_name(c, dataset_id, 0), _labels_by_name(c, dataset_id, 1)
    for name, before in v0.items():
        d = decisions.get(name)
        kind = d["decision"] if d else "true_negative"
        if kind == "annotation_error":
            assert name not in v1
            continue
        after = v1[name]
        kept = before
        if kind == "fix":
            engine = make_engine(c.db_url)
            with session_scope(engine) as s:
                lab = V.labels_for_image(s, d["image_id"], 0)
            engine.dispose()
            keep = ~np.isin(lab.grasp_ids, d["removed_grasp_ids"])
            kept = lab.grasps[keep]
        np.testing.assert_array_equal(after[: len(kept)], kept, err_msg=name)
        added = after[len(kept) :]
        accepted = d["accepted_predictions"] if d else []
        assert len(added) == len(accepted), name
        if accepted:
            expected = d["predictions"][accepted].copy()
            expected[:, 4] = expected[:, 3] / 2  # the default jaw rule
            np.testing.assert_allclose(np.sort(added, axis=0), np.sort(expected, axis=0))
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            diff = V.diff(s, dataset_id, 0, 1)
            pred_of = dict(
                s.execute(
                    sa.select(Prediction.image_id, Prediction.id).where(
                        Prediction.round_id == round_id
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert set(diff.added.sources.tolist()) <= {"prediction"}
    assert set(diff.added.round_ids.tolist()) <= {round_id}
    for image_id, pred in zip(diff.added.image_ids, diff.added.prediction_ids, strict=True):
        assert pred_of[int(image_id)] == int(pred)
    assert (diff.added.reviewer_ids > 0).all()


def _finish(c: Cluster, api: OrchestratorClient, dataset_id: int, round_id: int) -> dict:
    _wait_state(c, api, round_id, ("reviewing",))
    # Items are created by the reviewing step; wait until they exist.
    deadline = time.monotonic() + WAIT_S
    while api.get_round(round_id).counts.items < api.get_round(round_id).counts.flagged:
        assert time.monotonic() < deadline, c.tail()
        time.sleep(0.2)
    decisions = _review(c, dataset_id, round_id)
    _post_decisions(api, round_id, decisions)
    _retry(lambda: api.apply_round(round_id))
    rnd = _wait_state(c, api, round_id, ("done",))
    assert rnd.result_version == 1
    return decisions


@pytest.fixture(scope="module")
def trained(cluster):
    """The training round, killed right after its job was submitted, then resumed."""
    c = cluster
    dataset_id = _import(c, "trained")
    api = c.start_orchestrator(pause_at="training:submitted")
    rnd = _retry(
        lambda: api.create_round(RoundCreate(dataset_id=dataset_id, train=TRAIN, chunk_size=8))
    )
    _wait_marker(c)
    c.kill("orchestrator")
    api = c.start_orchestrator()
    decisions = _finish(c, api, dataset_id, rnd.id)
    final = api.get_round(rnd.id)
    engine = make_engine(c.db_url)
    with session_scope(engine) as s:
        jobs = s.scalars(sa.select(Job.id)).all()
    engine.dispose()
    c.kill("orchestrator")
    return {"dataset_id": dataset_id, "round": final, "decisions": decisions, "jobs": jobs}


def test_a_round_with_training_survives_a_kill_after_submit(cluster, trained):
    final = trained["round"]
    assert trained["jobs"] == [final.train_job_id]  # submitted once
    assert final.model_id is not None
    assert final.counts.images_predicted == 24
    assert final.counts.items == final.counts.flagged == final.counts.decided
    assert {"training", "predicting", "reviewing", "applying"} <= set(final.timings)
    kinds = {d["decision"] for d in trained["decisions"].values()}
    assert kinds - {"true_negative"}, "the reviewer changed nothing: the check would be empty"
    _check_version(cluster, trained["dataset_id"], final.id, trained["decisions"])


@pytest.fixture(scope="module")
def reference(cluster, trained):
    c = cluster
    dataset_id = _import(c, "reference")
    api = c.start_orchestrator()
    request = RoundCreate(dataset_id=dataset_id, model_id=trained["round"].model_id, chunk_size=8)
    rnd = _retry(lambda: api.create_round(request))
    _finish(c, api, dataset_id, rnd.id)
    c.kill("orchestrator")
    return _labels_by_name(c, dataset_id, 1)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_round_killed_in_each_state_ends_like_an_uninterrupted_one(
    cluster, trained, reference, point
):
    c = cluster
    name = "killed-" + point.replace(":", "-").replace("_", "-")
    dataset_id = _import(c, name)
    api = c.start_orchestrator(pause_at=point)
    request = RoundCreate(dataset_id=dataset_id, model_id=trained["round"].model_id, chunk_size=8)
    rnd = _retry(lambda: api.create_round(request))
    if point == "reviewing":
        _wait_marker(c)
        c.kill("orchestrator")
        api = c.start_orchestrator()
        _finish(c, api, dataset_id, rnd.id)
    elif point == "applying:before_commit":
        _wait_state(c, api, rnd.id, ("reviewing",))
        deadline = time.monotonic() + WAIT_S
        while api.get_round(rnd.id).counts.items < api.get_round(rnd.id).counts.flagged:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        _post_decisions(api, rnd.id, _review(c, dataset_id, rnd.id))
        _retry(lambda: api.apply_round(rnd.id))
        _wait_marker(c)
        c.kill("orchestrator")
        api = c.start_orchestrator()
        assert _wait_state(c, api, rnd.id, ("done",)).result_version == 1
    else:
        _wait_marker(c)
        c.kill("orchestrator")
        api = c.start_orchestrator()
        _finish(c, api, dataset_id, rnd.id)
    final = api.get_round(rnd.id)
    c.kill("orchestrator")
    assert final.counts.images_predicted == 24
    got = _labels_by_name(c, dataset_id, 1)
    assert got.keys() == reference.keys()
    for image_name, labels in reference.items():
        np.testing.assert_allclose(got[image_name], labels, atol=1e-3, err_msg=image_name)


def _launch(host: str, port: int) -> None:
    """Run the orchestrator; with ROUND_TEST_PAUSE_AT its runner parks at that hook point
    (after writing ROUND_TEST_MARKER) so that the test can SIGKILL it exactly there."""
    import threading

    import uvicorn

    from regrasp.settings import load_settings
    from services.orchestrator.app import create_app

    app = create_app(load_settings())
    runner = app.state.round_runner
    runner.poll_seconds = 0.3
    pause_at = os.environ.get("ROUND_TEST_PAUSE_AT") or None
    marker = Path(os.environ["ROUND_TEST_MARKER"])

    def hook(round_id: int, point: str) -> None:
        if point == pause_at:
            marker.write_text(f"{round_id} {point}")
            threading.Event().wait()  # park until SIGKILL

    runner.hook = hook
    uvicorn.run(app, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _launch(sys.argv[1], int(sys.argv[2]))
