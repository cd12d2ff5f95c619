"""The embedded stack of `regrasp up` and `regrasp demo` (`LocalStack`).

The four services and one trainer worker as local processes on 127.0.0.1 over an SQLite
file and a `file://` object store under one data folder, run by
`regrasp.platform.supervisor`. The services' shared secrets are generated once per data
folder (`secrets.json`, mode 0600) unless the environment sets them, so tokens stay valid
across restarts and no placeholder secret is ever used. The first admin is created here,
before the orchestrator starts, with a generated password that is returned once to be
printed and is stored only as a hash.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from regrasp.platform.errors import ConfigError, InvalidInput
from regrasp.platform.launch import service_command
from regrasp.platform.supervisor import ProcessSpec

if TYPE_CHECKING:
    from regrasp.platform.settings import Settings

__all__ = ["LocalStack", "StackPorts", "ensure_admin", "free_ports", "local_stack", "services_root"]


@dataclass(frozen=True)
class StackPorts:
    """Ports of the four services on 127.0.0.1."""

    orchestrator: int = 8000
    trainer: int = 8001
    inference: int = 3000
    review_ui: int = 8501

    def __post_init__(self) -> None:
        values = [self.orchestrator, self.trainer, self.inference, self.review_ui]
        if len(set(values)) != 4 or not all(0 < p < 65536 for p in values):
            raise InvalidInput(f"the four ports must be distinct and in 1..65535, got {values}")


@dataclass(frozen=True)
class LocalStack:
    """The processes of one embedded deployment and the environment they share.

    env: the complete environment of every service process (settings as REGRASP_*).
    root: the repository folder holding `services/` (the services run from there).
    """

    data_dir: Path
    host: str
    ports: StackPorts
    root: Path
    env: Mapping[str, str]
    service_key: str = field(repr=False)

    def url(self, service: str) -> str:
        """Base URL of `service` (orchestrator, trainer, inference or review_ui)."""
        return f"http://{self.host}:{getattr(self.ports, service)}"

    def specs(self, *, ui: bool = True, worker_device: str | None = None) -> list[ProcessSpec]:
        """The processes: orchestrator, trainer API, one trainer worker, inference and,
        with `ui`, the review UI; each with its health URL."""
        env, host, p = dict(self.env), self.host, self.ports
        worker = service_command(
            "worker", extra=["--device", worker_device] if worker_device else ()
        )
        specs = [
            ProcessSpec(
                "orchestrator",
                service_command("orchestrator", host=host, port=p.orchestrator),
                env=env,
                cwd=self.root,
                health_url=f"{self.url('orchestrator')}/readyz",
            ),
            ProcessSpec(
                "trainer",
                service_command("trainer", host=host, port=p.trainer),
                env=env,
                cwd=self.root,
                health_url=f"{self.url('trainer')}/healthz",
            ),
            ProcessSpec("worker", worker, env=env, cwd=self.root),
            ProcessSpec(
                "inference",
                service_command("inference", host=host, port=p.inference),
                env=env,
                cwd=self.root,
                health_url=f"{self.url('inference')}/readyz",
            ),
        ]
        if ui:
            specs.append(
                ProcessSpec(
                    "review_ui",
                    service_command("review_ui", host=host, port=p.review_ui),
                    env=env,
                    cwd=self.root,
                    health_url=f"{self.url('review_ui')}/_stcore/health",
                )
            )
        return specs


def local_stack(
    settings: Settings,
    *,
    ports: StackPorts,
    base_env: Mapping[str, str],
    root: Path | None = None,
) -> LocalStack:
    """The embedded stack over `settings` (data folder, database and store URLs).

    base_env: the environment the services inherit (the caller's, normally); every
    REGRASP_* value the services need is set on top of it. Secrets left at their
    development placeholder are replaced by ones generated once per data folder.
    """
    from regrasp.platform.settings import DEV_SECRET

    root = root or services_root()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stored = _stack_secrets(data_dir)
    secret_key = settings.secret_key.get_secret_value()
    service_key = settings.service_api_key.get_secret_value()
    if secret_key == DEV_SECRET:
        secret_key = stored["secret_key"]
    if service_key == DEV_SECRET:
        service_key = stored["service_api_key"]
    host = settings.bind_host
    stack = LocalStack(data_dir, host, ports, root, {}, service_key)
    path = os.pathsep.join(x for x in (str(root), base_env.get("PYTHONPATH", "")) if x)
    env = {
        **base_env,
        "REGRASP_DATA_DIR": str(data_dir),
        "REGRASP_DATABASE_URL": settings.database_url,
        "REGRASP_OBJECT_STORE_URL": settings.object_store_url,
        "REGRASP_SECRET_KEY": secret_key,
        "REGRASP_SERVICE_API_KEY": service_key,
        "REGRASP_BIND_HOST": host,
        "REGRASP_ORCHESTRATOR_URL": stack.url("orchestrator"),
        "REGRASP_TRAINER_URL": stack.url("trainer"),
        "REGRASP_INFERENCE_URLS": json.dumps([stack.url("inference")]),
        "REGRASP_INFERENCE_PORT": str(ports.inference),
        "REGRASP_REVIEW_UI_URL": stack.url("review_ui"),
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(data_dir / "bentoml"),
        "PYTHONPATH": path,
        "PYTHONUNBUFFERED": "1",
    }
    # The admin is made by `ensure_admin` before the orchestrator starts; never hand a
    # password to a child process's environment.
    env.pop("REGRASP_ADMIN_PASSWORD", None)
    return LocalStack(data_dir, host, ports, root, env, service_key)


def services_root() -> Path:
    """The repository folder with `services/` (the library is installed editable from it)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "services" / "orchestrator" / "__main__.py").is_file():
        raise ConfigError(
            f"the services are not next to the library ({root / 'services'} missing): "
            "run `regrasp up` from a checkout installed with `make install`"
        )
    return root


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports free on `host` right now (for tests and the demo's own stack)."""
    import socket

    sockets, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def ensure_admin(
    database_url: str, *, username: str, password: str | None, mode: str
) -> str | None:
    """Prepare the schema (`migrations.prepare`), then create the first admin if none.

    Returns the password of the admin created now (`password`, or a generated one), None
    when an admin already exists. Only the password's hash is stored.
    """
    import sqlalchemy as sa

    from regrasp.platform.accounts import create_user
    from regrasp.platform.store.db import migrations
    from regrasp.platform.store.db.engine import make_engine, session_scope
    from regrasp.platform.store.db.tables import User, UserRole

    migrations.prepare(database_url, mode=mode)
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            admin = sa.select(User.id).where(User.role == UserRole.admin).limit(1)
            if session.scalar(admin) is not None:
                return None
            chosen = password or secrets.token_urlsafe(18)
            create_user(session, username=username, password=chosen, role="admin")
            return chosen
    finally:
        engine.dispose()


_SECRETS_FILE = "secrets.json"


def _stack_secrets(data_dir: Path) -> dict[str, str]:
    """The data folder's generated secrets, created on first use (owner-only file)."""
    path = data_dir / _SECRETS_FILE
    if path.exists():
        values = json.loads(path.read_text())
        if {"secret_key", "service_api_key"} <= set(values):
            return values
    values = {"secret_key": secrets.token_urlsafe(32), "service_api_key": secrets.token_urlsafe(32)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out)
    return values
