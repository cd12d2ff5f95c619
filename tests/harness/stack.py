"""A stack of services as `regrasp up` runs them, for tests and benches.

`LoadStack` is `regrasp.demo.local_stack` (the embedded stack's processes and environment)
under `regrasp.platform.supervisor`, each process's output in `<data>/logs/<name>.log`, over the
database and object store of the given settings (PostgreSQL and S3 included), with an
admin signed in and helpers to create annotators, a review round (seeded predictions) and
a dataset with a registered untrained model for a predicting round.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from regrasp.api.accounts import UserCreate
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.demo import StackPorts, ensure_admin, local_stack
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Model
from regrasp.platform.supervisor import LogFiles, Supervisor
from tests.harness.ports import free_ports
from tests.harness.seeders import bare_dataset, import_synthetic, seed_round

if TYPE_CHECKING:
    from tests.harness.load import LoadSpec

__all__ = ["ADMIN", "PROCESSES", "WAIT_S", "LoadStack", "register_untrained"]

ADMIN = ("lead", "lead-password-1")
#: The processes of the stack that the load scenario needs (no trainer: the model is given).
PROCESSES = ("orchestrator", "inference")
#: Bounds that only stop a hung run on a loaded machine; nothing is timed against them.
WAIT_S = 300.0


class LoadStack:
    """The orchestrator and inference processes (or `processes`: any of `local_stack`'s)
    over the database and store of `settings`.

    `env` is added to the processes' environment (thread limits, say); the S3 settings are
    passed on from `settings`. Use as a context manager; `logs` holds each process's output.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        env: Mapping[str, str] | None = None,
        admin: tuple[str, str] = ADMIN,
        password: str = "annotator-password-1",
        processes: tuple[str, ...] = PROCESSES,
    ) -> None:
        self.settings = settings
        self.processes = processes
        self.admin = admin
        self.password = password
        base_env = {
            **os.environ,
            **_s3_env(settings),
            "CUDA_VISIBLE_DEVICES": "",
            "REGRASP_INFERENCE_DEVICE": "cpu",
            # The 2-core machines starve BentoML's batching budget; a shed chunk is retried
            # by the round runner, but the scenario is about the orchestrator, not that.
            "REGRASP_INFERENCE_MAX_LATENCY_MS": "60000",
            **(env or {}),
        }
        self.stack = local_stack(settings, ports=StackPorts(*free_ports(4)), base_env=base_env)
        self.logs = self.stack.data_dir / "logs"
        self.url = self.stack.url("orchestrator")
        self.engine = make_engine(settings.database_url)
        self._sink: LogFiles | None = None
        self._supervisor: Supervisor | None = None
        self.api: OrchestratorClient | None = None
        self._users: list[tuple[str, str]] = []
        self._queue_dataset: int | None = None

    def __enter__(self) -> LoadStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        ensure_admin(
            self.settings.database_url,
            username=self.admin[0],
            password=self.admin[1],
            mode=self.settings.mode,
        )
        self._sink = LogFiles(self.logs)
        specs = [s for s in self.stack.specs(ui=False) if s.name in self.processes]
        self._supervisor = Supervisor(specs, output=self._sink)
        self._supervisor.start()
        self._supervisor.wait_healthy(timeout=WAIT_S, max_crashes=0)
        self.api = OrchestratorClient(self.url, timeout=120.0)
        self.api.login(*self.admin)

    @property
    def crashes(self) -> list[str]:
        """Processes that exited while the stack ran (none is expected)."""
        crashes = self._supervisor.crashes if self._supervisor is not None else []
        return [f"{c.name} exited with {c.returncode}" for c in crashes]

    def close(self) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None
        if self._supervisor is not None:
            self._supervisor.stop()
        if self._sink is not None:
            self._sink.close()
        self.engine.dispose()

    # -- data ---------------------------------------------------------------------------

    def annotators(self, n: int) -> list[tuple[str, str]]:
        """Credentials of `n` annotators, created through the API the first time."""
        assert self.api is not None
        while len(self._users) < n:
            name = f"annotator{len(self._users)}"
            self.api.create_user(UserCreate(username=name, password=self.password))
            self._users.append((name, self.password))
        return self._users[:n]

    def review_round(self, items: int, *, seed: int) -> int:
        """A new round in `reviewing` with `items` flagged items; its id."""
        with session_scope(self.engine) as session:
            if self._queue_dataset is None:
                self._queue_dataset = bare_dataset(session, name="load-queue", images=items)
            return seed_round(session, dataset_id=self._queue_dataset, seed=seed)

    def predicting_dataset(self, spec: LoadSpec, *, name: str = "load-images") -> tuple[int, int]:
        """Import `spec.images` synthetic images and register an untrained GG-CNN as a ready
        model; returns (dataset id, model id)."""
        assert self.api is not None
        dataset_id = import_synthetic(self.api, name=name, images=spec.images, size=spec.image_size)
        return dataset_id, register_untrained(self.settings, input_size=spec.input_size)


def _s3_env(settings: Settings) -> dict[str, str]:
    """The REGRASP_S3_* variables of `settings` (`local_stack` passes on only the URLs)."""
    return {
        "REGRASP_S3_ENDPOINT": settings.s3_endpoint,
        "REGRASP_S3_ACCESS_KEY": settings.s3_access_key.get_secret_value(),
        "REGRASP_S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
        "REGRASP_S3_SECURE": str(settings.s3_secure).lower(),
        "REGRASP_S3_REGION": settings.s3_region,
    }


def register_untrained(settings: Settings, *, input_size: int) -> int:
    """An untrained GG-CNN (depth input) registered as a ready model; its `models` id.

    Every quality peak is decoded (threshold far below any output), so each image gets
    predictions and is scored like a trained model's."""
    from regrasp.learn.training.registry import register_untrained
    from regrasp.learn.worker import model_store_name
    from regrasp.platform.store.objects import store_from_settings

    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            row = Model(architecture="ggcnn", in_channels=1)
            session.add(row)
            session.flush()
            register_untrained(
                store_from_settings(settings),
                model_store_name(row.id),
                input_size=input_size,
                session=session,
                model_id=row.id,
            )
            return int(row.id)
    finally:
        engine.dispose()
