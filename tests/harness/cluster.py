"""Services as killable processes over one database and store, and faults to inject.

- `Cluster`: the trainer API, trainer workers, the BentoML inference service and the
  orchestrator as processes on 127.0.0.1 over one database and one object store; any of
  them can be SIGKILLed and started again. The trainer and inference services are started
  from `regrasp.platform.launch`; the orchestrator and workers through `tests.harness.launchers`,
  which can park them at a chosen point (see there).
- `TcpProxy`: a port in front of another (moto's S3) whose connections a test can cut and
  restore, so the services meet a refused connection as they would a lost MinIO.
- `retry`: a call again while SQLite answers "database is locked".

`tests.harness.rounds` drives rounds on a cluster; `tests.harness.postgres.PostgresServer`
is a PostgreSQL that a test may stop and start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from regrasp.clients.base import ServiceError
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.errors import StorageError
from regrasp.platform.launch import service_command
from regrasp.platform.store.objects import open_store
from regrasp.platform.supervisor import kill_tree
from tests.harness.ports import free_port
from tests.harness.processes import ROOT, start_process, wait_http

__all__ = ["ADMIN", "SERVICE_KEY", "WAIT_S", "Cluster", "TcpProxy", "free_port", "retry"]

SERVICE_KEY = "e2e-service-key-0123456789abcdef"
ADMIN = ("lead", "lead-password-1")
#: Bounds that only stop a hung test on a loaded 2-core machine; nothing is timed.
WAIT_S = 240.0
#: The module that launches a pausable orchestrator or worker.
LAUNCHERS = "tests.harness.launchers"


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
        proc = start_process(args, env={**self.env, **env}, log=self.logs / f"{name}.log")
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
        return self.start(name, [sys.executable, "-m", LAUNCHERS, "worker", *args], **env)

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
            [sys.executable, "-m", LAUNCHERS, "orchestrator", "127.0.0.1", str(port)],
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
