"""The load scenario: many annotators over HTTP while another round's predictions are stored.

One stack, launched the way `regrasp up` launches it (`regrasp.demo.local_stack` under
`regrasp.supervisor`, each process's output in `<data>/logs/<name>.log`): the orchestrator
and the BentoML inference service as real processes on 127.0.0.1, over PostgreSQL and an
object store. Two kinds of round live on it:

- review rounds: a bare dataset of `items` images (labels, no pixels) with seeded
  predictions, every image flagged (`scripts.review_demo.seed_round`), so each round has
  `items` review items in single-review mode;
- the predicting round: a synthetic dataset of `images` real images imported through the
  API, an untrained GG-CNN registered as a ready model, and a round with that `model_id`
  (no training) in small chunks, so the orchestrator's own round runner spends a while
  fanning images out to the inference service and storing each chunk's predictions.

`run_phase` lets the annotators (`scripts.annotators.annotate`) empty one review round,
with or without the predicting round running at the same time. With it, the annotators
are released only once the predicting round is in `predicting` and its first chunk is
stored, and a monitor samples the round's stored prediction count the whole time, so the
caller can show that predictions were written during the annotators' window.
`bench/load.py` runs a baseline phase and a loaded phase side by side and prints their
ratio; `tests/e2e/test_load.py` runs the loaded phase and checks it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from regrasp.api.accounts import UserCreate
from regrasp.api.rounds import RoundCreate
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.demo import StackPorts, ensure_admin, free_ports, local_stack
from regrasp.settings import Settings
from regrasp.store.db import versions as V
from regrasp.store.db.engine import make_engine, session_scope
from regrasp.store.db.tables import Model, Prediction, Round
from regrasp.supervisor import LogFiles, Supervisor
from scripts.annotators import AnnotatorRun, annotate
from scripts.review_demo import bare_dataset, import_synthetic, seed_round

__all__ = [
    "ADMIN",
    "LoadSpec",
    "LoadStack",
    "Phase",
    "PredictionCheck",
    "check_predictions",
    "run_phase",
]

ADMIN = ("lead", "lead-password-1")
#: The processes of the stack that the scenario needs (no trainer: the model is given).
PROCESSES = ("orchestrator", "inference")
#: Bounds that only stop a hung run on a loaded machine; nothing is timed against them.
WAIT_S = 300.0


@dataclass(frozen=True)
class LoadSpec:
    """Size of the scenario (the issue's: 50 annotators, 2,000 decisions)."""

    annotators: int = 50
    items: int = 2000  # review items per review round = decisions per phase
    images: int = 4000  # images of the predicting round
    image_size: int = 64  # side of the synthetic images, pixels
    input_size: int = 64  # the network's input side
    chunk_size: int = 64  # images per inference request (the round default)


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
    from regrasp.store.objects import store_from_settings
    from regrasp.training.registry import register_untrained
    from regrasp.training_jobs import model_store_name

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
                db_model_id=row.id,
            )
            return int(row.id)
    finally:
        engine.dispose()


# --- one phase ------------------------------------------------------------------------------


@dataclass
class Phase:
    """One review round emptied by the annotators, maybe beside a predicting round."""

    run: AnnotatorRun
    review_round: int
    predicting_round: int | None = None
    images: int = 0  # images the predicting round had to predict
    #: (time.monotonic(), predictions stored) of the predicting round, sampled throughout.
    samples: list[tuple[float, int]] = field(default_factory=list)

    def stored_at(self, moment: float) -> int:
        """Predictions stored as of the last sample at or before `moment` (0 before any)."""
        before = [n for t, n in self.samples if t <= moment]
        return before[-1] if before else 0

    @property
    def predicted_during(self) -> int:
        """Prediction rows written while the annotators were at work."""
        return self.stored_at(self.run.ended) - self.stored_at(self.run.started)

    @property
    def overlap_fraction(self) -> float:
        """Share of the annotators' window during which the predicting round was storing."""
        if self.predicting_round is None or self.run.wall <= 0:
            return 0.0
        finished = [t for t, n in self.samples if n >= self.images]
        end = min(finished[0] if finished else self.run.ended, self.run.ended)
        return max(0.0, end - self.run.started) / self.run.wall


def run_phase(
    stack: LoadStack,
    spec: LoadSpec,
    *,
    seed: int,
    predicting: tuple[int, int] | None = None,
    poll: float = 0.1,
) -> Phase:
    """Annotators empty a fresh review round; with `predicting` = (dataset id, model id), a
    round on that dataset is predicting meanwhile (see the module docstring). Returns once
    the predicting round has left `predicting` too."""
    assert stack.api is not None
    users = stack.annotators(spec.annotators)
    review_round = stack.review_round(spec.items, seed=seed)
    if predicting is None:
        return Phase(annotate(stack.url, review_round, users), review_round)

    dataset_id, model_id = predicting
    with session_scope(stack.engine) as session:
        images = len(V.images_at(session, dataset_id, V.latest_version(session, dataset_id)))
    phase = Phase(AnnotatorRun(), review_round, None, images)
    done = threading.Event()

    def sample(round_id: int) -> None:
        stop_by = time.monotonic() + 2 * WAIT_S
        while time.monotonic() < stop_by:
            count, state = _progress(stack, round_id)
            phase.samples.append((time.monotonic(), count))
            if done.is_set() and state != "predicting":
                return
            time.sleep(poll)

    monitor: threading.Thread | None = None

    def start_predicting() -> None:
        """Once every annotator is signed in: the round starts, and the annotators are
        released when it is in `predicting` with its first chunk stored."""
        nonlocal monitor
        assert stack.api is not None
        request = RoundCreate(dataset_id=dataset_id, model_id=model_id, chunk_size=spec.chunk_size)
        phase.predicting_round = round_id = stack.api.create_round(request).id
        deadline = time.monotonic() + WAIT_S
        while _progress(stack, round_id)[0] < 1:  # the model is loaded, storing has begun
            rnd = stack.api.get_round(round_id)
            if rnd.state in ("failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(f"round {round_id} stored nothing: {rnd.state} {rnd.error}")
            time.sleep(poll)
        phase.samples.append((time.monotonic(), _progress(stack, round_id)[0]))
        monitor = threading.Thread(target=sample, args=(round_id,), daemon=True)
        monitor.start()

    try:
        phase.run = annotate(stack.url, review_round, users, before_start=start_predicting)
    finally:
        done.set()
        if monitor is not None:
            monitor.join(timeout=2 * WAIT_S)
    return phase


def _progress(stack: LoadStack, round_id: int) -> tuple[int, str]:
    with session_scope(stack.engine) as session:
        count = session.scalar(
            sa.select(sa.func.count(Prediction.id)).where(Prediction.round_id == round_id)
        )
        state = session.scalar(sa.select(Round.state).where(Round.id == round_id))
    return int(count or 0), str(getattr(state, "value", state))


@dataclass(frozen=True)
class PredictionCheck:
    """A finished predicting round's rows against the images it had to predict."""

    expected: int  # images of the round's base version
    rows: int  # prediction rows of the round
    distinct: int  # distinct image ids among them
    missing: int  # expected images without a row
    extra: int  # rows for images not in the base version


def check_predictions(stack: LoadStack, round_id: int) -> PredictionCheck:
    """Compare round `round_id`'s stored predictions with its base version's images."""
    with session_scope(stack.engine) as session:
        rnd = session.get(Round, round_id)
        assert rnd is not None
        expected = V.images_at(session, rnd.dataset_id, rnd.base_version)
        stored = np.asarray(
            session.scalars(
                sa.select(Prediction.image_id).where(Prediction.round_id == round_id)
            ).all(),
            dtype=np.int64,
        )
    distinct = np.unique(stored)
    return PredictionCheck(
        expected=len(expected),
        rows=len(stored),
        distinct=len(distinct),
        missing=len(np.setdiff1d(expected, distinct)),
        extra=len(np.setdiff1d(distinct, expected)),
    )
