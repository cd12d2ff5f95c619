"""The machinery of the e2e round tests: services as real processes, and faults to inject.

- `Cluster`: the trainer API, trainer workers, the BentoML inference service and the
  orchestrator as processes on 127.0.0.1 over one database and one object store; any of
  them can be SIGKILLed and started again.
- `PostgresServer`: a throwaway PostgreSQL cluster on a free port that a test may stop
  and start (never the shared server on 5432).
- `TcpProxy`: a port in front of another (moto's S3) whose connections a test can cut and
  restore, so the services meet a refused connection as they would a lost MinIO.
- Round helpers: import a dataset, answer the review queue with the simulated reviewer,
  apply, read a version's labels by image name, check a version against the decisions.

Run as a program (`python -m tests.e2e.cluster orchestrator HOST PORT` or `... worker ID`)
it is the launcher of a pausable orchestrator or trainer worker: with ROUND_TEST_PAUSE_AT
the orchestrator's round runner parks at that hook point (`regrasp.rounds.machine`) after
writing ROUND_TEST_MARKER, until SIGKILL or, with ROUND_TEST_RELEASE, until that file
appears; with WORKER_TEST_PAUSE_AFTER_EPOCH a worker parks once that many epochs of its job
are reported (their checkpoints are stored), so a test can SIGKILL it exactly there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.api.rounds import BulkDecisions, DecisionEntry
from regrasp.clients.base import ServiceError
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.errors import StorageError
from regrasp.launch import service_command
from regrasp.store.db import versions as V
from regrasp.store.db.engine import make_engine, session_scope
from regrasp.store.db.tables import Image, Prediction, ReviewItem
from regrasp.store.objects import open_store
from regrasp.supervisor import kill_tree
from regrasp.synthetic.manifest import read_manifest
from regrasp.synthetic.reviewer import SimulatedReviewer
from regrasp.training_jobs import import_jacquard

ROOT = Path(__file__).resolve().parents[2]
SERVICE_KEY = "e2e-service-key-0123456789abcdef"
ADMIN = ("lead", "lead-password-1")
#: Bounds that only stop a hung test on a loaded 2-core machine; nothing is timed.
WAIT_S = 240.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The processes, their env and logs; each can be killed and started again.

    `db_url` defaults to an SQLite file and the store to a `file://` folder under `tmp`;
    `store_env` gives the REGRASP_OBJECT_STORE_URL / REGRASP_S3_* of another store.
    """

    def __init__(
        self, tmp: Path, *, db_url: str | None = None, store_env: dict[str, str] | None = None
    ) -> None:
        self.tmp = tmp
        self.db_url = db_url or f"sqlite:///{tmp / 'regrasp.db'}"
        self.store_env = store_env or {"REGRASP_OBJECT_STORE_URL": f"file://{tmp / 'objects'}"}
        self.store_url = self.store_env["REGRASP_OBJECT_STORE_URL"]
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.procs: dict[str, subprocess.Popen] = {}
        self.trainer_port, self.inference_port = free_port(), free_port()
        self.trainer_url = f"http://127.0.0.1:{self.trainer_port}"
        self.inference_url = f"http://127.0.0.1:{self.inference_port}"
        self.orchestrator_url = ""
        self.env = {
            **os.environ,
            "REGRASP_DATA_DIR": str(tmp / "data"),
            "REGRASP_DATABASE_URL": self.db_url,
            **self.store_env,
            "REGRASP_SERVICE_API_KEY": SERVICE_KEY,
            "REGRASP_SECRET_KEY": "s" * 40,
            "REGRASP_ADMIN_USERNAME": ADMIN[0],
            "REGRASP_ADMIN_PASSWORD": ADMIN[1],
            "REGRASP_TRAINER_URL": self.trainer_url,
            "REGRASP_INFERENCE_URLS": f'["{self.inference_url}"]',
            "BENTOML_DO_NOT_TRACK": "true",
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": "1",
        }

    # -- processes ---------------------------------------------------------------------------

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
            kill_tree(proc.pid)  # BentoML's worker too, which runs in a session of its own
            proc.wait()

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def start_trainer(self) -> None:
        """The trainer API (wait for it with `wait_ready`)."""
        self.start("trainer", service_command("trainer", port=self.trainer_port))

    def wait_ready(self, *names: str) -> None:
        """Until the named services (default: trainer and inference) answer /healthz."""
        urls = {"trainer": self.trainer_url, "inference": self.inference_url}
        for name in names or ("trainer", "inference"):
            wait_http(f"{urls[name]}/healthz", self.procs[name], self.logs / f"{name}.log")

    def start_worker(
        self,
        name: str,
        *,
        heartbeat_interval: float = 2.0,
        heartbeat_timeout: float = 60.0,
        pause_after_epoch: int | None = None,
    ) -> subprocess.Popen:
        """A worker through the launcher below (a plain `services.trainer worker` unless
        `pause_after_epoch`: then it parks once that many epochs are reported)."""
        env = {"ROUND_TEST_MARKER": str(self.marker)}
        if pause_after_epoch is not None:
            env["WORKER_TEST_PAUSE_AFTER_EPOCH"] = str(pause_after_epoch)
        args = [name, str(heartbeat_interval), str(heartbeat_timeout)]
        return self.start(name, [sys.executable, "-m", "tests.e2e.cluster", "worker", *args], **env)

    def start_inference(self) -> None:
        """The BentoML inference service (wait for it with `wait_ready`)."""
        self.start("inference", service_command("inference", port=self.inference_port))

    def start_orchestrator(
        self, pause_at: str | None = None, *, release: bool = False, **env: str
    ) -> OrchestratorClient:
        """The orchestrator; with `pause_at` its runner parks there (until SIGKILL, or with
        `release` until `release_runner()`); `env` adds settings (e.g. retry budgets)."""
        port = free_port()
        env = {
            "ROUND_TEST_PAUSE_AT": pause_at or "",
            "ROUND_TEST_MARKER": str(self.marker),
            "ROUND_TEST_RELEASE": str(self.release_file) if release else "",
            **env,
        }
        proc = self.start(
            "orchestrator",
            [sys.executable, "-m", "tests.e2e.cluster", "orchestrator", "127.0.0.1", str(port)],
            **env,
        )
        self.orchestrator_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.orchestrator_url}/healthz", proc, self.logs / "orchestrator.log")
        api = OrchestratorClient(self.orchestrator_url, timeout=120.0)
        retry(lambda: api.login(*ADMIN))
        return api

    @property
    def marker(self) -> Path:
        return self.tmp / "paused.marker"

    @property
    def release_file(self) -> Path:
        return self.tmp / "release.marker"

    def wait_marker(self) -> str:
        """Wait until a launcher parked at its pause point; returns what it wrote."""
        deadline = time.monotonic() + WAIT_S
        while not self.marker.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"nothing reached its pause point\n{self.tail()}")
            time.sleep(0.2)
        text = self.marker.read_text()
        self.marker.unlink()
        return text

    def release_runner(self) -> None:
        self.release_file.write_text("go")

    def store(self):  # type: ignore[no-untyped-def]
        return open_store(
            self.store_url,
            s3_endpoint=self.store_env.get("REGRASP_S3_ENDPOINT"),
            s3_access_key=self.store_env.get("REGRASP_S3_ACCESS_KEY"),
            s3_secret_key=self.store_env.get("REGRASP_S3_SECRET_KEY"),
        )

    def gc(self, *args: str) -> dict:
        """`regrasp gc --json --min-age 0 ARGS` against this cluster; its report."""
        done = subprocess.run(
            [sys.executable, "-m", "regrasp.cli", "gc", "--json", "--min-age", "0", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.iterdir()
        )

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb, trust auth) on a free port, stoppable.

    As root the server runs as the `postgres` user (`runuser`), from a folder it owns.
    Fails the test loudly when no PostgreSQL binaries are installed.
    """

    def __init__(self) -> None:
        self.bindir = _postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="regrasp-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: every connection is cut, as in a real database restart."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [
                    *self._as,
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                timeout=WAIT_S,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        if done.returncode != 0:
            pytest.fail(f"{tool} {' '.join(args)} failed: {done.stdout}{done.stderr}")


def _postgres_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("no PostgreSQL server binaries (initdb) found to start a throwaway cluster")


class TcpProxy:
    """127.0.0.1:`port` forwarding to `upstream`; `cut()` closes the port and every
    connection through it (new ones are refused), `restore()` listens on it again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        for sock in [listener, *conns]:
            if sock is not None:
                _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _close(sock)
            with self._lock:
                self._conns -= {src, dst}


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


# --- rounds -----------------------------------------------------------------------------


def import_dataset(c: Cluster, name: str) -> int:
    """The synthetic dataset under `c.tmp / "synth"` imported as `name`; its id."""
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            return import_jacquard(s, c.store(), c.tmp / "synth", name=name)
    finally:
        engine.dispose()


def retry(call, tries: int = 20):  # type: ignore[no-untyped-def]
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


def wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
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


def wait_state(c: Cluster, api: OrchestratorClient, round_id: int, states: tuple[str, ...]):
    rnd = api.wait_round(round_id, until=(*states, "failed", "cancelled"), timeout=WAIT_S, poll=0.3)
    assert rnd.state in states, (rnd.state, rnd.error, c.tail())
    return rnd


def review(c: Cluster, dataset_id: int, round_id: int) -> dict[str, dict]:
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


def post_decisions(api: OrchestratorClient, round_id: int, decisions: dict[str, dict]) -> None:
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
        retry(lambda: api.round_decisions(round_id, BulkDecisions(decisions=entries)))


def labels_by_name(c: Cluster, dataset_id: int, version: int) -> dict[str, np.ndarray]:
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


def check_version(c: Cluster, dataset_id: int, round_id: int, decisions: dict) -> None:
    """Version 1 against version 0 and the decisions, image by image."""
    v0, v1 = labels_by_name(c, dataset_id, 0), labels_by_name(c, dataset_id, 1)
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


def wait_items(c: Cluster, api: OrchestratorClient, round_id: int) -> None:
    """Until the reviewing step created the review items of every flagged image."""
    deadline = time.monotonic() + WAIT_S
    while True:
        counts = api.get_round(round_id).counts
        if counts.items >= counts.flagged:
            return
        assert time.monotonic() < deadline, c.tail()
        time.sleep(0.2)


def finish(c: Cluster, api: OrchestratorClient, dataset_id: int, round_id: int) -> dict:
    """Review (simulated) and apply a round once it is reviewing; its decisions."""
    wait_state(c, api, round_id, ("reviewing",))
    wait_items(c, api, round_id)
    decisions = review(c, dataset_id, round_id)
    post_decisions(api, round_id, decisions)
    retry(lambda: api.apply_round(round_id))
    rnd = wait_state(c, api, round_id, ("done",))
    assert rnd.result_version == 1
    return decisions


# --- launchers (this file run as a program) -------------------------------------------------


def _orchestrator(host: str, port: int) -> None:
    import logging

    import uvicorn

    from regrasp.settings import load_settings
    from services.orchestrator.app import create_app

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    app = create_app(load_settings())
    runner = app.state.round_runner
    runner.poll_seconds = 0.3
    runner.hook = _pause_hook(os.environ.get("ROUND_TEST_PAUSE_AT") or None)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _pause_hook(pause_at: str | None):  # type: ignore[no-untyped-def]
    marker = Path(os.environ["ROUND_TEST_MARKER"])
    release = (
        Path(os.environ["ROUND_TEST_RELEASE"]) if os.environ.get("ROUND_TEST_RELEASE") else None
    )
    paused = threading.Event()

    def hook(round_id: int, point: str) -> None:
        if point != pause_at or paused.is_set():
            return
        paused.set()  # once per process
        marker.write_text(f"{round_id} {point}")
        if release is None:
            threading.Event().wait()  # park until SIGKILL
        while not release.exists():
            time.sleep(0.1)
        release.unlink()

    return hook


def _worker(worker_id: str, heartbeat_interval: float, heartbeat_timeout: float) -> None:
    import logging

    from regrasp import training_jobs
    from regrasp.settings import load_settings
    from services.trainer.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    pause_after = os.environ.get("WORKER_TEST_PAUSE_AFTER_EPOCH")
    if pause_after:
        marker = Path(os.environ["ROUND_TEST_MARKER"])
        run_claimed = training_jobs.run_claimed

        def on_progress(_fraction: float, metrics: dict) -> None:
            if len(metrics.get("history") or ()) >= int(pause_after):
                marker.write_text(f"{worker_id} after epoch {pause_after}")
                threading.Event().wait()  # park (heartbeats go on) until SIGKILL

        def pausing(*args, **kwargs):  # type: ignore[no-untyped-def]
            return run_claimed(*args, **kwargs, on_progress=on_progress)

        training_jobs.run_claimed = pausing  # what Worker.run_once calls
    run_worker(
        load_settings(),
        worker_id=worker_id,
        poll_interval=0.3,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        device="cpu",
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1] == "orchestrator":
        _orchestrator(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "worker":
        _worker(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    else:
        raise SystemExit(f"unknown launcher {sys.argv[1]!r}")
