"""Refinement rounds (`/rounds`): start, follow, cancel, resume, preview and apply, and
admins' bulk decisions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from regrasp.api.common import GraspTuple, UtcDatetime, fields_of
from regrasp.api.review import DecisionName
from regrasp.refine.review.decisions import MAX_DRAWN
from regrasp.refine.rounds.applying import ApplyPreview
from regrasp.refine.rounds.config import RoundConfig

__all__ = [
    "ApplyPreviewPublic",
    "BulkDecisions",
    "BulkDecisionsResult",
    "DecisionEntry",
    "RoundApply",
    "RoundCounts",
    "RoundCreate",
    "RoundPublic",
    "RoundRetry",
    "RoundStateName",
    "StateTiming",
    "TrainingProgress",
]

RoundStateName = Literal[
    "created",
    "training",
    "predicting",
    "reviewing",
    "applying",
    "done",
    "failed",
    "cancelled",
]


class RoundCreate(RoundConfig):
    """A round on a dataset version: `RoundConfig`'s options plus which version."""

    dataset_id: int = Field(ge=1)
    version: int | None = Field(None, ge=0, description="Base version (None: the latest).")


class StateTiming(BaseModel):
    started: UtcDatetime | None = None
    finished: UtcDatetime | None = None
    seconds: float | None = Field(None, description="finished − started (so far if running).")


class RoundRetry(BaseModel):
    """A step failing transiently and being retried with backoff (`regrasp.workflows.retrying`):
    a round's step, or a campaign's passes over its runs (`state`: the campaign's)."""

    state: str = Field(description="The state whose step fails.")
    attempts: int = Field(description="Failed tries so far in this streak.")
    since: UtcDatetime = Field(description="First failure of the streak.")
    last_at: UtcDatetime | None = Field(None, description="Latest failure.")
    next_at: UtcDatetime | None = Field(None, description="Next try (None once given up).")
    error: str = Field("", description="The latest failure, naming what was unreachable.")
    delays: list[float] = Field(default_factory=list, description="Waits so far, seconds.")
    gave_up: bool = Field(False, description="The budget ran out: the round (campaign) failed.")


class RoundCounts(BaseModel):
    images_predicted: int = 0
    flagged: int = 0
    items: int = 0
    decided: int = 0


class TrainingProgress(BaseModel):
    """A round's training job as the trainer's worker last reported it."""

    job_id: int
    state: str = Field(description="queued, running, succeeded, failed or cancelled.")
    phase: str | None = Field(None, description="cache, train or evaluate.")
    epoch: int | None = Field(None, description="The epoch being trained (1-based).")
    epochs: int | None = None
    loss: float | None = Field(None, description="Training loss so far in this epoch.")
    progress: float = Field(0.0, description="Fraction of the whole job, 0..1.")
    eta_seconds: float | None = Field(None, description="From the progress rate; None early.")


class ApplyPreviewPublic(fields_of(ApplyPreview)):  # type: ignore[misc]
    """What applying the round now would change (undecided items as true negatives)."""

    grasps_removed: int = Field(description="Rectangles removed by fixes.")
    grasps_removed_with_images: int = Field(description="Labels of the removed images.")
    images_after: int
    grasps_after: int


class RoundPublic(BaseModel):
    """A round: its state, options, models, timings per state and counts."""

    model_config = ConfigDict(protected_namespaces=())

    id: int
    dataset_id: int
    base_version: int
    result_version: int | None
    state: RoundStateName
    config: dict[str, Any] = Field(description="The round's RoundConfig.")
    model_id: int | None
    model_ids: list[int] = Field(default_factory=list, description="One per fold (or one).")
    train_job_id: int | None
    train_job_ids: list[int] = Field(default_factory=list)
    error: str | None
    failed_in: str | None = None
    retry: RoundRetry | None = Field(None, description="A transient failure being retried.")
    created_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None
    timings: dict[str, StateTiming] = Field(default_factory=dict)
    counts: RoundCounts = Field(default_factory=RoundCounts)
    training: list[TrainingProgress] = Field(
        default_factory=list, description="Its training jobs (one per fold), latest report."
    )


class RoundApply(BaseModel):
    force: bool = Field(
        False, description="Apply although items are undecided: they count as true negatives."
    )


class DecisionEntry(BaseModel):
    """One image's decision (the image must have a review item in the round)."""

    image_id: int = Field(ge=1)
    decision: DecisionName
    accepted_predictions: list[int] = Field(
        default_factory=list, description="Indices into the image's ranked predictions."
    )
    removed_grasp_ids: list[int] = Field(
        default_factory=list, description="Label rectangles to remove (fix)."
    )
    drawn_grasps: list[GraspTuple] = Field(
        default_factory=list,
        max_length=MAX_DRAWN,
        description="Grasps drawn by a person (x, y, theta, opening, jaw); they become labels.",
    )
    seconds_taken: float = Field(0.0, ge=0.0)


class BulkDecisions(BaseModel):
    decisions: list[DecisionEntry] = Field(min_length=1, max_length=100_000)


class BulkDecisionsResult(BaseModel):
    recorded: int
    counts: RoundCounts
