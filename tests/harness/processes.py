"""Services as real processes on 127.0.0.1, started from `regrasp.platform.launch`.

Every test and bench that needs a service process starts it here, so the command line
(`regrasp.platform.launch.service_command`), the process group (its own session, so the service
and whatever it spawns stop together), the log file and the wait for readiness are the
same everywhere:

- `start_process(...)`: any command as a process group, output appended to a log file;
- `ServiceProcess`: one such process with its URL, a wait for readiness, `stop()` (SIGTERM
  to the group, SIGKILL after a grace period) and `kill()` (SIGKILL at once, descendants
  that left the group included);
- `start_service(name, ...)`: a service of `regrasp.platform.launch.SERVICES` on a free port;
- `start_orchestrator(...)`: the orchestrator over a database and store, with an admin;
  `local_orchestrator(root, ...)`: the same over SQLite and a folder, with annotators.

The waits are bounds that only stop a hung start on a loaded 2-core machine; nothing is
timed against them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from regrasp.api.accounts import UserCreate
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.launch import service_command
from regrasp.platform.supervisor import kill_tree
from tests.harness.ports import free_port

__all__ = [
    "ROOT",
    "WAIT_S",
    "ServiceDidNotStart",
    "ServiceProcess",
    "local_orchestrator",
    "start_orchestrator",
    "start_process",
    "start_service",
    "wait_http",
]

#: The repository root: services run from here, where `services/` is importable.
ROOT = Path(__file__).resolve().parents[2]
#: Bound on a service's start (not a timing).
WAIT_S = 240.0


class ServiceDidNotStart(RuntimeError):
    """A service process exited, or never answered, before it was ready (its log's end)."""


def start_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """`command` in its own session (process group), stdout and stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: nothing it spawns can escape
        )


def wait_http(url: str, process: subprocess.Popen, log: Path, *, timeout: float = WAIT_S) -> None:
    """Until GET `url` answers 200; fails with the log's end if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceDidNotStart(f"{url} exited: {_tail(log)}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise ServiceDidNotStart(f"{url} did not come up: {_tail(log)}")


class ServiceProcess:
    """One service process (a process group) with its base URL and its log file."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        url: str = "",
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.url = url
        self.log_path = log
        self.process = start_process(command, env=env, log=log, cwd=cwd)
        self.database_url = ""  # set by the starter when a test seeds the database

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_http(self, path: str = "/healthz", *, timeout: float = WAIT_S) -> ServiceProcess:
        """Until `url + path` answers 200 (see `wait_http`); returns self."""
        wait_http(f"{self.url}{path}", self.process, self.log_path, timeout=timeout)
        return self

    def wait_port(self, *, timeout: float = WAIT_S) -> ServiceProcess:
        """Until the service's port accepts a connection; returns self."""
        port = int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise ServiceDidNotStart(f"{self.name} exited: {_tail(self.log_path)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise ServiceDidNotStart(
            f"{self.name} did not start in {timeout} s: {_tail(self.log_path)}"
        )

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole process group (nothing if it is gone)."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, *, grace: float = 15.0) -> None:
        """SIGTERM to the group, then SIGKILL to whatever is left after `grace` seconds."""
        if self.alive:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the process and every descendant, at once (idempotent)."""
        if self.alive:
            kill_tree(self.process.pid)
        self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_service(
    name: str,
    *,
    env: Mapping[str, str],
    log: Path,
    port: int | None = None,
    extra: Sequence[str] = (),
    cwd: Path = ROOT,
) -> ServiceProcess:
    """Service `name` of `regrasp.platform.launch.SERVICES` on 127.0.0.1 (a free port unless given;
    a worker listens on none); wait for it with `wait_http` / `wait_port`."""
    if name == "worker":
        return ServiceProcess(name, service_command(name, extra=extra), env=env, log=log, cwd=cwd)
    port = port or free_port()
    command = service_command(name, port=port, extra=extra)
    url = f"http://127.0.0.1:{port}"
    return ServiceProcess(name, command, env=env, log=log, url=url, cwd=cwd)


def start_orchestrator(
    *,
    database_url: str,
    store_url: str,
    data_dir: Path,
    admin: tuple[str, str],
    secret_key: str = "review-demo-secret-" + "x" * 24,
    port: int | None = None,
    timeout: float = 60.0,
    extra_env: dict[str, str] | None = None,
) -> ServiceProcess:
    """The orchestrator on 127.0.0.1 (a free port unless given), its first admin `admin`
    created at start; returns once it accepts connections."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "REGRASP_MODE": "development",
        "REGRASP_DATA_DIR": str(data_dir),
        "REGRASP_DATABASE_URL": database_url,
        "REGRASP_OBJECT_STORE_URL": store_url,
        "REGRASP_SECRET_KEY": secret_key,
        "REGRASP_ADMIN_USERNAME": admin[0],
        "REGRASP_ADMIN_PASSWORD": admin[1],
        "BENTOML_DO_NOT_TRACK": "true",
        **(extra_env or {}),
    }
    log = data_dir / f"orchestrator-{port}.log"
    server = start_service("orchestrator", env=env, log=log, port=port)
    return server.wait_port(timeout=timeout)


@contextmanager
def local_orchestrator(
    root: Path, *, admin: tuple[str, str], users: Sequence[tuple[str, str]] = ()
) -> Iterator[ServiceProcess]:
    """The orchestrator over an SQLite file and a `file://` store under `root`, with the
    annotators `users` (username, password) created by `admin`; stopped when the block
    ends. The process carries `database_url` for tests that seed the database."""
    database_url = f"sqlite:///{root / 'regrasp.db'}"
    orchestrator = start_orchestrator(
        database_url=database_url,
        store_url=f"file://{root / 'objects'}",
        data_dir=root / "data",
        admin=admin,
    )
    try:
        orchestrator.database_url = database_url
        with OrchestratorClient(orchestrator.url) as api:
            api.login(*admin)
            for username, password in users:
                api.create_user(UserCreate(username=username, password=password))
        yield orchestrator
    finally:
        orchestrator.stop()


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"
