"""The load scenario: many annotators over HTTP while another round's predictions are stored.

One stack (`tests.harness.stack.LoadStack`, launched as `regrasp up` launches it): the
orchestrator and the BentoML inference service as real processes on 127.0.0.1, over
PostgreSQL and an object store. Two kinds of round live on it:

- review rounds: a bare dataset of `items` images (labels, no pixels) with seeded
  predictions, every image flagged (`tests.harness.seeders.seed_round`), so each round has
  `items` review items in single-review mode;
- the predicting round: a synthetic dataset of `images` real images imported through the
  API, an untrained GG-CNN registered as a ready model, and a round with that `model_id`
  (no training) in small chunks, so the orchestrator's own round runner spends a while
  fanning images out to the inference service and storing each chunk's predictions.

`run_phase` lets the annotators (`tests.harness.annotators.annotate`) empty one review round,
with or without the predicting round running at the same time. With it, the annotators
are released only once the predicting round is in `predicting` and its first chunk is
stored, and a monitor samples the round's stored prediction count the whole time, so the
caller can show that predictions were written during the annotators' window.
`bench/load.py` runs a baseline phase and a loaded phase side by side and prints their
ratio; `tests/e2e/test_load.py` runs the loaded phase and checks it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from regrasp.api.rounds import RoundCreate
from regrasp.data import versions as V
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Prediction, Round
from tests.harness.annotators import AnnotatorRun, annotate
from tests.harness.stack import ADMIN, WAIT_S, LoadStack

__all__ = [
    "ADMIN",
    "LoadSpec",
    "LoadStack",
    "Phase",
    "PredictionCheck",
    "check_predictions",
    "run_phase",
]


@dataclass(frozen=True)
class LoadSpec:
    """Size of the scenario (the issue's: 50 annotators, 2,000 decisions)."""

    annotators: int = 50
    items: int = 2000  # review items per review round = decisions per phase
    images: int = 4000  # images of the predicting round
    image_size: int = 64  # side of the synthetic images, pixels
    input_size: int = 64  # the network's input side
    chunk_size: int = 64  # images per inference request (the round default)


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
