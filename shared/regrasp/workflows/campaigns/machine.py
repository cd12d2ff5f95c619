"""A campaign as a persisted, resumable set of runs, one per (network, version).

    created ──► running ──► done          (every run scored)
                   │  └───► failed        (some run's job failed; resume retries those)
                   └──────► cancelled     (an admin; unfinished jobs are cancelled)

Each run in `Campaign.runs` goes `pending → training → evaluating → done` (or `failed`,
`cancelled`). `advance(bind, campaign_id, services)` is ONE pass over the runs: it submits
the train job of every pending run at once (so they spread over every trainer worker),
looks at each submitted job once, submits a run's evaluate job (accuracy on the campaign's
fixed test split) as soon as its model is registered, and records the results. The runner
calls it again every few seconds; it never waits on a job itself.

Submission is exactly once across crashes, as in rounds: the *intent* (its time) is
stored before a job is submitted; a run found with an intent and no job id looks for a
trainer job with the same payload created since then, and submits only when there is
none. Every write re-reads the campaign row under a lock and checks its state, so an
admin's cancel racing a pass wins. Two orchestrator replicas never advance the same
campaign at once (`regrasp.workflows.campaigns.runner.campaign_lock`).

A pass that cannot reach the trainer stops there (runs it advanced before keep their
progress) and starts or extends a retry streak (`Campaign.retry`, the policy of rounds:
`services.retry`, `regrasp.workflows.retrying`); the next pass waits for the streak's
backoff. The first pass that completes ends the streak. When the streak outlasts the
budget, a running campaign fails with the last error (resume continues every unfinished
run where it was); a cancelled one stops trying to cancel its jobs and says so in its
error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.data import versions
from regrasp.platform.clock import utcnow
from regrasp.platform.errors import Conflict, InvalidInput, NotFound, StorageError
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Campaign, CampaignState, DatasetObject, Image
from regrasp.refine.campaigns.config import CampaignConfig, parse_config
from regrasp.workflows.engine import Services, end_streak, note_failure, submit_once
from regrasp.workflows.retrying import describe, due

__all__ = [
    "ACTIVE_STATES",
    "RUN_STATES",
    "advance",
    "cancel_campaign",
    "create_campaign",
    "parse_config",
    "resume_campaign",
    "test_split",
]

log = logging.getLogger(__name__)

Bind = Engine | sessionmaker[Session]
#: Campaign states the runner advances (cancelled ones only until their jobs are cancelled).
ACTIVE_STATES = (CampaignState.created, CampaignState.running)
RUN_STATES = ("pending", "training", "evaluating", "done", "failed", "cancelled")
_OPEN_RUNS = ("pending", "training", "evaluating")


# --- requests from the API ---------------------------------------------------------------


def create_campaign(
    session: Session, *, dataset_id: int, config: CampaignConfig, created_by: int | None
) -> Campaign:
    """A new campaign (state created); the runner submits its jobs.

    NotFound for a version the dataset does not have; InvalidInput for a bad training
    config or a test split without images.
    """
    for version in {*config.versions, config.scored_version}:
        versions.images_at(session, dataset_id, version)  # NotFound for a missing version
    test_ids = test_split(session, dataset_id, config)
    if not test_ids:
        raise Conflict(
            f"the test split of version {config.scored_version} is empty; raise "
            "train.split.test_fraction, add images, or import the dataset with a split"
        )
    runs = []
    for network in config.networks:
        config.train_config(network, exclude=test_ids)  # InvalidInput now, not on a worker
        runs += [{"network": network, "version": v, "state": "pending"} for v in config.versions]
    campaign = Campaign(
        dataset_id=dataset_id,
        name=config.name,
        state=CampaignState.created,
        config=config.model_dump(mode="json"),
        runs=runs,
        test_image_ids=test_ids,
        created_by_id=created_by,
    )
    session.add(campaign)
    session.flush()
    return campaign


def cancel_campaign(session: Session, campaign_id: int) -> Campaign:
    """Cancel a campaign that is not finished (the runner then cancels its open jobs)."""
    campaign = _locked(session, campaign_id)
    if campaign.state == CampaignState.cancelled:
        return campaign
    if campaign.state in (CampaignState.done, CampaignState.failed):
        raise Conflict(f"campaign {campaign_id} is {campaign.state.value}; nothing to cancel")
    campaign.state = CampaignState.cancelled
    campaign.finished_at = None if _open(campaign) else utcnow()
    return campaign


def resume_campaign(session: Session, campaign_id: int) -> Campaign:
    """Continue a failed campaign: its failed runs train again from the start, and runs
    left open by an unreachable trainer go on where they were, with a fresh retry streak."""
    campaign = _locked(session, campaign_id)
    if campaign.state != CampaignState.failed:
        raise Conflict(f"campaign {campaign_id} is {campaign.state.value}, not failed")
    campaign.runs = [
        {"network": r["network"], "version": r["version"], "state": "pending"}
        if r["state"] == "failed"
        else r
        for r in campaign.runs
    ]
    campaign.state = CampaignState.running
    campaign.error = None
    campaign.retry = None
    campaign.finished_at = None
    return campaign


def test_split(session: Session, dataset_id: int, config: CampaignConfig) -> list[int]:
    """Image ids (sorted) of the test part of `config.scored_version`.

    The split recorded at import (`images.split == "test"`) when `config.test_split` is
    "imported", or "auto" and the import recorded test images (a dataset imported with its
    own split is scored on it, as its authors meant); else the recipe of
    `config.train["split"]`, as the trainer would make it. Every model is then evaluated on
    exactly these ids (`EvaluateJobCreate.image_ids`). Conflict for "imported" when the
    import recorded no test image.
    """
    from regrasp.learn.training.config import SplitConfig
    from regrasp.learn.training.splits import make_split

    rows = session.execute(
        versions.select_images_at(dataset_id, config.scored_version)
        .with_only_columns(Image.id, DatasetObject.name, Image.split)
        .join(DatasetObject, DatasetObject.id == Image.object_id)
        .order_by(Image.id)
    ).all()
    if config.test_split != "recipe":
        recorded = [int(r[0]) for r in rows if r[2] == "test"]
        if recorded:
            return recorded
        if config.test_split == "imported":
            raise Conflict(
                f"version {config.scored_version} has no test image recorded at import; "
                "use test_split 'recipe' (train.split) instead"
            )
    recipe = SplitConfig(**dict(config.train.get("split") or {}))
    split = make_split(
        [str(r[0]) for r in rows],
        [str(r[1]) for r in rows],
        kind=recipe.kind,
        seed=recipe.seed,
        val_fraction=recipe.val_fraction,
        test_fraction=recipe.test_fraction,
    )
    return sorted(int(i) for i in split.test)


# --- the runner's entry point ------------------------------------------------------------


def advance(
    bind: Bind,
    campaign_id: int,
    services: Services,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> CampaignState:
    """One pass over the campaign's runs (module docstring); returns its state afterwards.

    A trainer that cannot be reached ends the pass and extends the retry streak (module
    docstring).
    """
    from regrasp.clients.trainer import TrainerClient

    stop = should_stop or (lambda: False)
    with session_scope(bind) as session:
        campaign = _locked(session, campaign_id)
        if campaign.state == CampaignState.created:
            campaign.state = CampaignState.running
        state = campaign.state
        runs = [dict(r) for r in campaign.runs]
        config = parse_config(campaign)
        dataset_id, test_ids = campaign.dataset_id, list(campaign.test_image_ids)
        streak = campaign.retry
    if state not in ACTIVE_STATES and not (state == CampaignState.cancelled and _open_runs(runs)):
        return state
    if not due(streak, state=state.value, now=utcnow()):
        return state  # backing off after an unreachable trainer
    try:
        with TrainerClient(services.trainer_url, credential=services.credential) as trainer:
            for index, run in enumerate(runs):
                if stop():
                    break
                if state == CampaignState.cancelled:
                    _cancel_run(bind, campaign_id, index, run, trainer)
                    continue
                try:
                    _advance_run(
                        bind, campaign_id, index, run, trainer, config, dataset_id, test_ids
                    )
                except (InvalidInput, NotFound) as exc:  # refused by the trainer: the run fails
                    _update(bind, campaign_id, index, {"state": "failed", "error": str(exc)})
    except (StorageError, httpx.TransportError, ConnectionError, TimeoutError) as exc:
        return _record_transient(bind, campaign_id, state, f"{type(exc).__name__}: {exc}", services)
    except _Interrupted:
        pass
    if streak is not None:
        _end_streak(bind, campaign_id)
    return _settle(bind, campaign_id)


# --- private: one run --------------------------------------------------------------------


def _advance_run(
    bind: Bind,
    campaign_id: int,
    index: int,
    run: dict[str, Any],
    trainer: Any,
    config: CampaignConfig,
    dataset_id: int,
    test_ids: list[int],
) -> None:
    from regrasp.api.jobs import EvaluateJobCreate, TrainJobCreate

    state = run["state"]
    if state == "pending":
        train_config = config.train_config(run["network"], exclude=test_ids)
        payload = {"dataset_id": dataset_id, "version": run["version"], "config": train_config}
        job_id = _submit_once(
            bind,
            campaign_id,
            index,
            run,
            trainer,
            kind="train",
            intent="train_intent_at",
            payload=payload,
            create=lambda: TrainJobCreate(
                dataset=dataset_id, version=run["version"], config=train_config
            ),
        )
        _update(bind, campaign_id, index, {"state": "training", "train_job_id": job_id})
    elif state == "training":
        job = trainer.get(int(run["train_job_id"]))
        if job.state == "succeeded":
            result = job.result or {}
            history = [
                {k: h.get(k) for k in ("epoch", "train_loss", "val_accuracy") if k in h}
                for h in result.get("history") or []
            ]
            losses = [h["train_loss"] for h in history if h.get("train_loss") is not None]
            model_id = int(result["model_id"])
            updates = {
                "model_id": model_id,
                "history": history,
                "train_loss": losses[-1] if losses else None,
                "epochs": (result.get("metrics") or {}).get("epochs"),
            }
            _update(bind, campaign_id, index, updates)
            run = {**run, **updates}
            payload = {
                "model_id": model_id,
                "dataset_id": dataset_id,
                "version": config.scored_version,
                "split": "test",
                "image_ids": sorted(test_ids),
            }
            job_id = _submit_once(
                bind,
                campaign_id,
                index,
                run,
                trainer,
                kind="evaluate",
                intent="eval_intent_at",
                payload=payload,
                create=lambda: EvaluateJobCreate(
                    model_id=model_id,
                    dataset=dataset_id,
                    version=config.scored_version,
                    image_ids=sorted(test_ids),
                ),
            )
            _update(bind, campaign_id, index, {"state": "evaluating", "eval_job_id": job_id})
        elif job.finished:
            _update(bind, campaign_id, index, _failed("training", job))
    elif state == "evaluating":
        job = trainer.get(int(run["eval_job_id"]))
        if job.state == "succeeded":
            result = job.result or {}
            _update(
                bind,
                campaign_id,
                index,
                {
                    "state": "done",
                    "accuracy": float(result["accuracy"]),
                    "successes": int(result["successes"]),
                    "images": int(result["images"]),
                },
            )
        elif job.finished:
            _update(bind, campaign_id, index, _failed("evaluation", job))


def _submit_once(
    bind: Bind,
    campaign_id: int,
    index: int,
    run: dict[str, Any],
    trainer: Any,
    *,
    kind: str,
    intent: str,
    payload: dict[str, Any],
    create: Callable[[], Any],
) -> int:
    """Submit a job exactly once across crashes (`regrasp.workflows.engine.submit_once`),
    the intent kept on the run under `intent`."""
    job_id, _ = submit_once(
        trainer,
        kind=kind,
        payload=payload,
        intent_at=run.get(intent),
        record_intent=lambda at: _update(bind, campaign_id, index, {intent: at}),
        create=create,
    )
    return job_id


def _cancel_run(
    bind: Bind, campaign_id: int, index: int, run: dict[str, Any], trainer: Any
) -> None:
    if run["state"] not in _OPEN_RUNS:
        return
    job_id = run.get("eval_job_id") if run["state"] == "evaluating" else run.get("train_job_id")
    if job_id is not None:
        trainer.cancel(int(job_id))
    _update(bind, campaign_id, index, {"state": "cancelled"}, allow_cancelled=True)


def _failed(step: str, job: Any) -> dict[str, Any]:
    return {"state": "failed", "error": f"{step} job {job.id} {job.state}: {job.error or ''}"}


def _record_transient(
    bind: Bind, campaign_id: int, state: CampaignState, message: str, services: Services
) -> CampaignState:
    """One more pass that could not reach the trainer: back off, or give up (module doc)."""
    policy = services.retry
    with session_scope(bind) as session:
        campaign = _locked(session, campaign_id)
        if campaign.state != state:
            return campaign.state
        streak = note_failure(
            campaign,
            state=state.value,
            message=message,
            policy=policy,
            what=f"campaign {campaign_id}",
        )
        if not streak["gave_up"]:
            return state
        budget = describe(streak, policy, message)
        if state == CampaignState.cancelled:
            campaign.error = f"its open jobs could not be cancelled {budget}"[:4000]
        else:
            campaign.state = CampaignState.failed
            campaign.error = (
                f"the trainer could not be reached {budget} -- resume the campaign once it "
                "is reachable again"
            )[:4000]
        campaign.finished_at = utcnow()
        return campaign.state


def _end_streak(bind: Bind, campaign_id: int) -> None:
    """A pass completed: forget the retry streak and its error."""
    with session_scope(bind) as session:
        end_streak(_locked(session, campaign_id))


def _settle(bind: Bind, campaign_id: int) -> CampaignState:
    """Finish the campaign once no run is open."""
    with session_scope(bind) as session:
        campaign = _locked(session, campaign_id)
        if _open(campaign):
            return campaign.state
        if campaign.state == CampaignState.running:
            failed = [r for r in campaign.runs if r["state"] == "failed"]
            if failed:
                campaign.state = CampaignState.failed
                campaign.error = "; ".join(
                    f"{r['network']} v{r['version']}: {r.get('error', 'failed')}" for r in failed
                )[:4000]
            else:
                campaign.state = CampaignState.done
        if campaign.finished_at is None:
            campaign.finished_at = utcnow()
        return campaign.state


def _update(
    bind: Bind,
    campaign_id: int,
    index: int,
    values: dict[str, Any],
    *,
    allow_cancelled: bool = False,
) -> None:
    """Merge `values` into run `index`, refused (silently) once the campaign left running."""
    with session_scope(bind) as session:
        campaign = _locked(session, campaign_id)
        allowed = {CampaignState.running} | (
            {CampaignState.cancelled} if allow_cancelled else set()
        )
        if campaign.state not in allowed:
            raise _Interrupted(campaign.state)
        runs = [dict(r) for r in campaign.runs]
        runs[index] = {**runs[index], **values}
        campaign.runs = runs  # a new list: plain JSON columns only notice reassignment


class _Interrupted(Exception):
    """The campaign left the state a pass runs in (cancelled by an admin)."""


def _open(campaign: Campaign) -> bool:
    return _open_runs(campaign.runs)


def _open_runs(runs: list[dict[str, Any]]) -> bool:
    return any(r["state"] in _OPEN_RUNS for r in runs)


def _locked(session: Session, campaign_id: int) -> Campaign:
    campaign = session.scalars(
        sa.select(Campaign)
        .where(Campaign.id == campaign_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return campaign
