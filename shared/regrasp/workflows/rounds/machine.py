"""The round state machine, persisted in the `rounds` table: one idempotent step per state.

    created ──► training ──► predicting ──► reviewing ──► applying ──► done
       │  (model_id given) ──────┘              (admin apply, or auto)
       └─ any step: failed (resume: POST /rounds/{id}/resume) · cancelled (by an admin)

`advance(bind, round_id, services)` runs the step of the round's current state and commits
its transition. Every step can be interrupted anywhere (a crash, a SIGKILL, a replica
stopping) and run again from the start with the same outcome and no duplicate rows:

- created: decides the plan (train k fold models, one model, or reuse `model_id`) in one
  transaction with the transition.
- training: per model to train, the *intent* to submit is recorded first (with its time);
  after a restart an intent without a job id is resolved by finding the trainer's job with
  the same payload created after it (the trainer stores the normalised payload), and only
  submitted when there is none; the job id is stored right after. Then the jobs are
  followed; each model id is stored as its job succeeds. A failed (or cancelled) job fails
  the round and is set aside on its unit (`failed_job_ids`), so a resume submits a new one.
- predicting: sends the images that have no stored prediction yet
  (`regrasp.workflows.rounds.predicting`), naming the round's model on every call (replicas load it
  beside the production model, which robots keep getting: a round never changes what
  another caller gets); each chunk is scored with its images' stored object masks (read
  from `Services.store`) and stored in its own transaction, skipping rows that exist
  (unique (round, image)).
- reviewing: creates the review items of the flagged images once (one transaction), then
  waits for an admin's apply (or, with `auto_apply`, for every item to be decided).
- applying: `regrasp.refine.rounds.applying.apply_round`, exactly once.

Failures: a transient one (a service, the object store behind it or the database
unreachable) leaves the round in its state and is retried with exponential backoff; the
streak (attempts, delays, next try) is recorded on the round, and when it outlasts
`Services.retry` (`regrasp.workflows.retrying`) the round fails with the last error, naming
what was unreachable. Any other failure fails the round at once. A failed round is resumed
(`resume_round`) in the state it failed in.

The run's bookkeeping (per-state timings, the models to train, the apply request, the state
a failure happened in) is typed (`regrasp.refine.rounds.run.RoundRun`) in `Round.run`, the
retry streak in `Round.retry`; what rounds share with campaigns (the streak, submitting a
job once, the polled runner) is `regrasp.workflows.engine`. Every write
checks the state it expects (compare-and-set), so an admin's cancel racing a step wins
cleanly: the step's transition is refused and it stops. Two replicas never run the same
round at once because the runner holds a per-round lock around `advance`
(`regrasp.workflows.rounds.runner`).

`hook(round_id, point)` (tests) is called at named points — "created", "training:submitted"
(after the trainer accepted a job, before its id is stored), "training:waiting",
"training:polled" (every job was polled), "predicting:chunk" (after a chunk is stored),
"reviewing", "applying:before_commit" — so a test can stop the process exactly there.
"training:submitted", "training:polled" and "predicting:chunk" are also the progress that
ends a retry streak.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.data import versions
from regrasp.platform.clock import utcnow
from regrasp.platform.errors import Conflict, InvalidInput, NotFound, RegraspError, StorageError
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import (
    Image,
    Model,
    ModelStatus,
    Prediction,
    ReviewItem,
    ReviewItemState,
    Round,
    RoundState,
)
from regrasp.refine.rounds.applying import locked_round
from regrasp.refine.rounds.config import RoundConfig, parse_config
from regrasp.refine.rounds.run import ApplyRequest, RoundRun, TrainingUnit, load_run, save_run
from regrasp.workflows.engine import Services, end_streak, note_failure, submit_once
from regrasp.workflows.retrying import RetryPolicy, describe, due

__all__ = [
    "ACTIVE_STATES",
    "RetryPolicy",
    "Services",
    "advance",
    "cancel_round",
    "create_round",
    "fold_of",
    "request_apply",
    "resume_round",
    "round_counts",
]

log = logging.getLogger(__name__)

Bind = Engine | sessionmaker[Session]
Hook = Callable[[int, str], None]

#: States the runner advances; the others are final (or wait for a person: failed).
ACTIVE_STATES = (
    RoundState.created,
    RoundState.training,
    RoundState.predicting,
    RoundState.reviewing,
    RoundState.applying,
)
FINAL_STATES = frozenset({RoundState.done, RoundState.cancelled})
#: Hook points that prove the step got something done: they end a retry streak.
_PROGRESS_POINTS = frozenset({"training:submitted", "training:polled", "predicting:chunk"})
#: Failures worth retrying: something the step needs is unreachable for now.
_TRANSIENT = (StorageError, httpx.TransportError, ConnectionError, TimeoutError)


class _Interrupted(Exception):
    """The round left the state the step runs for (cancelled, or another writer)."""


# --- requests from the API ---------------------------------------------------------------


def create_round(
    session: Session, *, dataset_id: int, version: int | None, config: RoundConfig
) -> Round:
    """A new round in `created` on a version (None: the latest); the runner takes it on."""
    base = versions.latest_version(session, dataset_id) if version is None else version
    if version is not None:
        versions.images_at(session, dataset_id, version)  # NotFound for a missing version
    stored = config.model_dump(mode="json")
    if config.model_id is None:
        stored["train"] = config.train_config()
    else:
        _ready_model(session, config.model_id)
    now = utcnow()
    run = RoundRun()
    run.entered(RoundState.created.value, left=None)
    rnd = Round(dataset_id=dataset_id, base_version=base, config=stored, created_at=now)
    save_run(rnd, run)
    session.add(rnd)
    session.flush()
    return rnd


def cancel_round(session: Session, round_id: int) -> Round:
    """Cancel a round that is not finished; Conflict once it is applying or final."""
    rnd = locked_round(session, round_id)
    if rnd.state == RoundState.cancelled:
        return rnd
    if rnd.state in (RoundState.applying, RoundState.done):
        raise Conflict(f"round {round_id} is {rnd.state}; it can no longer be cancelled")
    _transition(rnd, RoundState.cancelled)
    rnd.finished_at = utcnow()
    return rnd


def request_apply(session: Session, round_id: int, *, force: bool, by: int | None) -> Round:
    """Move a reviewing round to applying (the runner then creates the version).

    Without `force` every review item must be decided (Conflict otherwise); with it the
    undecided items count as true negatives. Idempotent on a round already applying/done.
    """
    rnd = locked_round(session, round_id)
    if rnd.state in (RoundState.applying, RoundState.done):
        return rnd
    if rnd.state != RoundState.reviewing:
        raise Conflict(f"round {round_id} is {rnd.state}; only a reviewing round is applied")
    if not _items_exist(session, round_id) and _flagged(session, round_id):
        raise Conflict(f"round {round_id} is still creating its review items; retry shortly")
    open_items = _undecided(session, round_id)
    if open_items and not force:
        raise Conflict(
            f"round {round_id} has {open_items} undecided review items; decide them or apply "
            "with force (undecided items then count as true negatives)"
        )
    run = load_run(rnd)
    run.apply = ApplyRequest(force=force, by=by, at=utcnow().isoformat())
    save_run(rnd, run)
    _transition(rnd, RoundState.applying)
    return rnd


def resume_round(session: Session, round_id: int) -> Round:
    """Put a failed round back in the state it failed in, error and retry streak cleared."""
    rnd = locked_round(session, round_id)
    if rnd.state != RoundState.failed:
        raise Conflict(f"round {round_id} is {rnd.state}, not failed")
    _transition(rnd, RoundState(load_run(rnd).failed_in or RoundState.created.value))
    rnd.error = None
    return rnd


def round_counts(session: Session, round_id: int) -> dict[str, int]:
    """images_predicted, flagged, items, decided of a round."""
    predicted, flagged = session.execute(
        sa.select(
            sa.func.count(Prediction.id),
            sa.func.coalesce(sa.func.sum(sa.case((Prediction.flagged, 1), else_=0)), 0),
        ).where(Prediction.round_id == round_id)
    ).one()
    items, decided = session.execute(
        sa.select(
            sa.func.count(ReviewItem.id),
            sa.func.coalesce(
                sa.func.sum(sa.case((ReviewItem.state == ReviewItemState.decided, 1), else_=0)), 0
            ),
        ).where(ReviewItem.round_id == round_id)
    ).one()
    return {
        "images_predicted": int(predicted),
        "flagged": int(flagged),
        "items": int(items),
        "decided": int(decided),
    }


def fold_of(image_ids: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """Fold (0..folds-1) of each image id (I,): a seeded shuffle dealt round-robin, so folds
    differ in size by at most one and depend only on the ids and the seed."""
    ids = np.sort(np.asarray(image_ids, dtype=np.int64))
    order = np.random.default_rng(seed).permutation(len(ids))
    fold_sorted = np.empty(len(ids), dtype=np.int64)
    fold_sorted[order] = np.arange(len(ids)) % max(folds, 1)
    return fold_sorted[np.searchsorted(ids, np.asarray(image_ids, dtype=np.int64))]


def unit_images(images: np.ndarray, config: RoundConfig, unit: TrainingUnit) -> np.ndarray:
    """The images a unit's model predicts: all of them, or an out-of-fold unit's fold.

    The training step holds out exactly these (`unit_train_config`), so an out-of-fold
    round scores every image with the one model that never trained on it.
    """
    if not config.folds or unit.fold is None:
        return images
    return images[fold_of(images, folds=config.folds, seed=config.fold_seed) == unit.fold]


def unit_train_config(
    config: RoundConfig, images: np.ndarray | None, unit: TrainingUnit
) -> dict[str, Any]:
    """The training config of a unit: the round's, with an out-of-fold unit's fold held out
    on top of whatever the config already excludes (a fixed test set)."""
    train_config = dict(config.train)
    if config.folds and images is not None:
        held_out = unit_images(images, config, unit)
        kept_out = {int(i) for i in train_config.get(_EXCLUDE_FIELD) or ()}
        train_config[_EXCLUDE_FIELD] = sorted(kept_out | {int(i) for i in held_out})
    return train_config


# --- the runner's entry point ------------------------------------------------------------


def advance(
    bind: Bind,
    round_id: int,
    services: Services,
    *,
    hook: Hook | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RoundState:
    """Run the step of the round's current state; returns the state it is in afterwards.

    Transient failures (a service, the object store or the database unreachable:
    StorageError, transport errors) leave the state as it is and schedule the next try
    with backoff; while it is not due, `advance` returns at once. Once the streak outlasts
    `services.retry`, or on any other failure, the round fails (resumable). The caller
    holds the round's lock.
    """
    stop = should_stop or (lambda: False)
    user_hook = hook or (lambda _id, _point: None)
    with session_scope(bind) as session:
        rnd = _get(session, round_id)
        state = rnd.state
        streak = rnd.retry
    steps: dict[RoundState, Callable[..., None]] = {
        RoundState.created: _step_created,
        RoundState.training: _step_training,
        RoundState.predicting: _step_predicting,
        RoundState.reviewing: _step_reviewing,
        RoundState.applying: _step_applying,
    }
    step = steps.get(state)
    if step is None:
        return state
    if not due(streak, state=state.value, now=utcnow()):
        return state  # backing off after a transient failure
    retrying = streak is not None and streak.get("state") == state.value

    def call(hook_round: int, point: str) -> None:
        nonlocal retrying
        if retrying and point in _PROGRESS_POINTS:
            retrying = False
            _end_streak(bind, round_id, state)
        user_hook(hook_round, point)

    try:
        step(bind, round_id, services, call, stop)
        if retrying:
            _end_streak(bind, round_id, state)
    except _Interrupted:
        pass
    except _TRANSIENT as exc:
        _record_transient(bind, round_id, state, f"{type(exc).__name__}: {exc}", services.retry)
    except Exception as exc:  # noqa: BLE001 - any other failure is recorded on the round
        if not isinstance(exc, RegraspError):
            log.exception("round %s: %s step failed", round_id, state.value)
        message = str(exc) if isinstance(exc, RegraspError) else f"{type(exc).__name__}: {exc}"
        _record_failure(bind, round_id, state, message)
    with session_scope(bind) as session:
        return _get(session, round_id).state


# --- steps -------------------------------------------------------------------------------


def _step_created(bind: Bind, round_id: int, services: Services, hook: Hook, stop) -> None:
    hook(round_id, "created")
    with session_scope(bind) as session:
        rnd = _expect(session, round_id, RoundState.created)
        config = parse_config(rnd.config)
        if config.model_id is not None:
            _ready_model(session, config.model_id)
            rnd.model_id = config.model_id
            run = load_run(rnd)
            run.units = [TrainingUnit(model_id=config.model_id)]
            save_run(rnd, run)
            _transition(rnd, RoundState.predicting)
            return
        folds = range(config.folds) if config.folds else [None]
        run = load_run(rnd)
        run.units = [TrainingUnit(fold=f) for f in folds]
        save_run(rnd, run)
        _transition(rnd, RoundState.training)


def _step_training(bind: Bind, round_id: int, services: Services, hook: Hook, stop) -> None:
    from regrasp.api.jobs import TrainJobCreate
    from regrasp.clients.trainer import TrainerClient
    from regrasp.learn.training.config import TrainConfig

    with session_scope(bind) as session:
        rnd = _expect(session, round_id, RoundState.training)
        config = parse_config(rnd.config)
        units = load_run(rnd).units
        dataset_id, base = rnd.dataset_id, rnd.base_version
        images = versions.images_at(session, dataset_id, base) if config.folds else None
    with TrainerClient(services.trainer_url, credential=services.credential) as trainer:
        for index, unit in enumerate(units):
            if unit.job_id is not None:
                continue
            train_config = unit_train_config(config, images, unit)

            def record_intent(at: str, index: int = index, unit: TrainingUnit = unit) -> None:
                unit.intent_at = at
                _update_unit(bind, round_id, index, unit)

            job_id, submitted = submit_once(
                trainer,
                kind="train",
                # What the trainer stores: the normalised config.
                payload={
                    "dataset_id": dataset_id,
                    "version": base,
                    "config": TrainConfig(**train_config).model_dump(mode="json"),
                },
                intent_at=unit.intent_at,
                record_intent=record_intent,
                create=lambda c=train_config: TrainJobCreate(
                    dataset=dataset_id, version=base, config=c
                ),
                exclude=set(unit.failed_job_ids),
            )
            if submitted:
                hook(round_id, "training:submitted")
            unit.job_id = job_id
            _update_unit(bind, round_id, index, unit, train_job_id=job_id if index == 0 else None)
        while True:
            hook(round_id, "training:waiting")
            waiting = False
            for index, unit in enumerate(units):
                if unit.model_id is not None:
                    continue
                job = trainer.get(int(unit.job_id))  # type: ignore[arg-type]
                if job.state == "succeeded":
                    unit.model_id = int((job.result or {})["model_id"])
                    _update_unit(bind, round_id, index, unit)
                elif job.finished:
                    # Set the job aside so that a resume submits a new one instead of
                    # finding this one failed again.
                    unit.failed_job_ids = [*unit.failed_job_ids, job.id]
                    unit.job_id = unit.intent_at = None
                    _update_unit(bind, round_id, index, unit)
                    raise InvalidInput(
                        f"training job {job.id} {job.state}: {job.error or ''} "
                        "(resuming the round submits a new job)"
                    )
                else:
                    waiting = True
            hook(round_id, "training:polled")
            if not waiting:
                break
            if stop() or not _still(bind, round_id, RoundState.training):
                if _state(bind, round_id) == RoundState.cancelled:
                    for unit in units:
                        if unit.model_id is None and unit.job_id is not None:
                            trainer.cancel(unit.job_id)
                return
            time.sleep(services.poll_seconds)
    with session_scope(bind) as session:
        rnd = _expect(session, round_id, RoundState.training)
        rnd.model_id = load_run(rnd).units[0].model_id
        _transition(rnd, RoundState.predicting)


def _step_predicting(bind: Bind, round_id: int, services: Services, hook: Hook, stop) -> None:
    from regrasp.refine.review.items import confirmed_images
    from regrasp.workflows.rounds.predicting import ChunkResult, predict_chunks, score

    with session_scope(bind) as session:
        rnd = _expect(session, round_id, RoundState.predicting)
        config = parse_config(rnd.config)
        units = load_run(rnd).units
        dataset_id, base = rnd.dataset_id, rnd.base_version
        images = versions.images_at(session, dataset_id, base)
        labels = versions.labels_at(session, dataset_id, base)
        confirmed = (
            confirmed_images(session, dataset_id, base)
            if config.skip_confirmed
            else np.zeros(0, dtype=np.int64)
        )
        done = np.asarray(
            session.scalars(
                sa.select(Prediction.image_id).where(Prediction.round_id == round_id)
            ).all(),
            dtype=np.int64,
        )
    failures: list[str] = []

    def store(chunk: ChunkResult) -> None:
        ok = [i for i, e in enumerate(chunk.errors) if e is None]
        failures.extend(
            f"image {chunk.image_ids[i]}: {e}" for i, e in enumerate(chunk.errors) if e is not None
        )
        if not ok:
            return
        ids = chunk.image_ids[ok]
        grasps = [chunk.grasps[i] for i in ok]
        mask = np.isin(labels.image_ids, ids)
        owner = np.searchsorted(ids_sorted := np.sort(ids), labels.image_ids[mask])
        order = np.argsort(ids)
        scores = score(
            [grasps[j] for j in order],
            labels.grasps[mask],
            owner,
            threshold=config.flag_threshold,
            flag=config.flag,
            score_threshold=config.score_threshold,
            masks=_masks(bind, services, ids_sorted),
        )
        flagged = scores.flagged & ~np.isin(ids_sorted, confirmed)
        rows = [
            {
                "round_id": round_id,
                "image_id": int(image_id),
                "grasps": grasps[order[j]].tolist(),
                "best_iou": float(scores.best_iou[j]),
                "flagged": bool(flagged[j]),
                "priority": float(scores.priority[j]),
                "quality": scores.quality[j],
            }
            for j, image_id in enumerate(ids_sorted)
        ]
        with session_scope(bind) as session:
            _expect(session, round_id, RoundState.predicting)
            _insert_new_predictions(session, rows)
        hook(round_id, "predicting:chunk")

    for unit in units:
        todo = unit_images(images, config, unit)
        todo = np.setdiff1d(todo, done)
        if not len(todo):
            continue
        predict_chunks(
            services.inference_urls,
            todo,
            model_id=unit.model_id,  # type: ignore[arg-type]
            dataset_id=dataset_id,
            version=base,
            k=config.top_k,
            credential=services.credential,
            on_chunk=store,
            chunk_size=config.chunk_size,
            per_url=services.per_url,
            retries=services.retries,
            should_stop=lambda: stop() or not _still(bind, round_id, RoundState.predicting),
        )
        if stop() or not _still(bind, round_id, RoundState.predicting):
            return
    if failures:
        raise InvalidInput(
            f"{len(failures)} images could not be predicted (resume retries them): "
            + "; ".join(failures[:5])
        )
    with session_scope(bind) as session:
        rnd = _expect(session, round_id, RoundState.predicting)
        missing = len(images) - session.scalar(
            sa.select(sa.func.count(Prediction.id)).where(Prediction.round_id == round_id)
        )
        if missing:
            raise StorageError(f"{missing} images still have no prediction; retrying")
        _transition(rnd, RoundState.reviewing)


def _masks(bind: Bind, services: Services, ids: np.ndarray) -> list[np.ndarray | None] | None:
    """The object masks of `ids` (sorted), for the score; None without an object store."""
    from regrasp.workflows.rounds.predicting import object_masks

    if services.store is None:
        return None
    with session_scope(bind) as session:
        keys = dict(
            session.execute(
                sa.select(Image.id, Image.mask_key).where(Image.id.in_(ids.tolist()))
            ).all()
        )
    return object_masks(services.store, [keys.get(int(i)) for i in ids])


def _step_reviewing(bind: Bind, round_id: int, services: Services, hook: Hook, stop) -> None:
    from regrasp.refine.review.items import budget_items, create_items, review_pace

    with session_scope(bind) as session:
        rnd = _expect(session, round_id, RoundState.reviewing)
        config = parse_config(rnd.config)
        if not _items_exist(session, round_id):
            pace = (
                review_pace(session, rnd.dataset_id)
                if config.review_budget_hours is not None
                else None
            )
            create_items(
                session,
                round_id,
                double_review_fraction=config.double_review_fraction,
                seed=config.review_seed,
                budget=budget_items(config.review_budget, config.review_budget_hours, pace),
            )
    hook(round_id, "reviewing")
    if not config.auto_apply:
        return
    with session_scope(bind) as session:
        if _still_in(session, round_id, RoundState.reviewing) and not _undecided(session, round_id):
            request_apply(session, round_id, force=False, by=None)


def _step_applying(bind: Bind, round_id: int, services: Services, hook: Hook, stop) -> None:
    from regrasp.refine.rounds.applying import apply_round

    with session_scope(bind) as session:
        apply_round(
            session, round_id, before_commit=lambda: hook(round_id, "applying:before_commit")
        )


# --- private ----------------------------------------------------------------------------

#: The TrainConfig field an out-of-fold round sets to the fold's held-out image ids.
_EXCLUDE_FIELD = "exclude_image_ids"


def _get(session: Session, round_id: int) -> Round:
    rnd = session.get(Round, round_id, populate_existing=True)
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    return rnd


def _expect(session: Session, round_id: int, state: RoundState) -> Round:
    rnd = locked_round(session, round_id)
    if rnd.state != state:
        raise _Interrupted
    return rnd


def _state(bind: Bind, round_id: int) -> RoundState:
    with session_scope(bind) as session:
        return _get(session, round_id).state


def _still(bind: Bind, round_id: int, state: RoundState) -> bool:
    return _state(bind, round_id) == state


def _still_in(session: Session, round_id: int, state: RoundState) -> bool:
    return _get(session, round_id).state == state


def _transition(rnd: Round, new: RoundState, *, failed_in: RoundState | None = None) -> None:
    run = load_run(rnd)
    run.entered(new.value, left=rnd.state.value if rnd.state is not None else None)
    if failed_in is not None:
        run.failed_in = failed_in.value
    save_run(rnd, run)
    if new != RoundState.failed:  # a failed round shows the streak that ended it
        rnd.retry = None
    rnd.state = new


def _update_unit(
    bind: Bind, round_id: int, index: int, unit: TrainingUnit, *, train_job_id: int | None = None
) -> None:
    with session_scope(bind) as session:
        rnd = _expect(session, round_id, RoundState.training)
        run = load_run(rnd)
        run.units[index] = unit
        save_run(rnd, run)
        if train_job_id is not None:
            rnd.train_job_id = train_job_id


def _ready_model(session: Session, model_id: int) -> Model:
    model = session.get(Model, model_id)
    if model is None:
        raise NotFound(f"model {model_id} does not exist")
    if model.status != ModelStatus.ready:
        raise InvalidInput(f"model {model_id} is {model.status}, not ready")
    return model


def _items_exist(session: Session, round_id: int) -> bool:
    return (
        session.scalar(sa.select(ReviewItem.id).where(ReviewItem.round_id == round_id).limit(1))
        is not None
    )


def _flagged(session: Session, round_id: int) -> bool:
    return (
        session.scalar(
            sa.select(Prediction.id)
            .where(Prediction.round_id == round_id, Prediction.flagged.is_(True))
            .limit(1)
        )
        is not None
    )


def _undecided(session: Session, round_id: int) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count(ReviewItem.id)).where(
                ReviewItem.round_id == round_id, ReviewItem.state != ReviewItemState.decided
            )
        )
        or 0
    )


def _insert_new_predictions(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert prediction rows, skipping images the round already has (a resumed chunk)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Prediction.__table__).on_conflict_do_nothing(
        index_elements=["round_id", "image_id"]
    )
    session.execute(stmt, rows)


def _record_failure(bind: Bind, round_id: int, state: RoundState, message: str) -> None:
    """The step failed for good: the round fails in `state` with `message` (resumable)."""
    with session_scope(bind) as session:
        rnd = locked_round(session, round_id)
        if rnd.state != state:
            return
        rnd.error = message[:4000]
        _transition(rnd, RoundState.failed, failed_in=state)


def _record_transient(
    bind: Bind, round_id: int, state: RoundState, message: str, policy: RetryPolicy
) -> None:
    """One more failure of the streak: schedule the next try, or fail the round."""
    with session_scope(bind) as session:
        rnd = locked_round(session, round_id)
        if rnd.state != state:
            return
        streak = note_failure(
            rnd, state=state.value, message=message, policy=policy, what=f"round {round_id}"
        )
        if streak["gave_up"]:
            rnd.error = (
                f"{state.value} gave up {describe(streak, policy, message)} -- resume the "
                "round once it is reachable again"
            )[:4000]
            _transition(rnd, RoundState.failed, failed_in=state)


def _end_streak(bind: Bind, round_id: int, state: RoundState) -> None:
    """The step made progress: forget the retry streak and its error."""
    with session_scope(bind) as session:
        rnd = locked_round(session, round_id)
        if rnd.state == state:
            end_streak(rnd)
