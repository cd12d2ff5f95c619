"""The trainer's jobs (`/jobs`): submit a training or an evaluation, follow it, cancel it.

A train job's `config` holds `regrasp.learn.training.config.TrainConfig` fields (validated by
the service, so a bad value is a 422 at submission, not a failure on a GPU an hour later).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "EvaluateJobCreate",
    "FINISHED",
    "JOB_CREATE_ADAPTER",
    "JobCreate",
    "JobList",
    "JobPublic",
    "JobState",
    "TrainJobCreate",
]

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainJobCreate(_Strict):
    """Train a network on a dataset version; the result names the registered model."""

    kind: Literal["train"] = "train"
    dataset: str | int = Field(description="Dataset name or id.")
    version: int | None = Field(None, ge=0, description="Dataset version (None: the latest).")
    config: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig fields; unset ones take the paper's."
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Claims before a lost job fails.")


class EvaluateJobCreate(_Strict):
    """Measure a registered model's accuracy on one split of a dataset version."""

    kind: Literal["evaluate"] = "evaluate"
    model_id: int = Field(ge=1, description="Id of a ready model (the `models` row).")
    dataset: str | int = Field(description="Dataset name or id.")
    version: int | None = Field(None, ge=0, description="Dataset version (None: the latest).")
    split: Literal["train", "val", "test", "all"] = Field(
        "test", description="Which images: a part of the model's split recipe, or all."
    )
    image_ids: list[int] | None = Field(
        None,
        max_length=1_000_000,
        description="Score exactly these images of the version instead of a split part "
        "(a campaign's fixed test set, e.g. the split recorded at import).",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Claims before a lost job fails.")


JobCreate = Annotated[TrainJobCreate | EvaluateJobCreate, Field(discriminator="kind")]


JOB_CREATE_ADAPTER: TypeAdapter[TrainJobCreate | EvaluateJobCreate] = TypeAdapter(JobCreate)


class JobPublic(BaseModel):
    """A job as the service reports it.

    progress: fraction 0..1 of the whole job; metrics: what the worker streams (for a
    train job: epoch, epochs, step, steps, loss and `history`, one entry per finished
    epoch); eta_seconds: from the progress rate of the current attempt (None until known);
    result: for a train job `model_id` (the `models` row), `model_name` (its object-store
    name), metrics and history.
    """

    id: int
    kind: Literal["train", "evaluate"]
    state: JobState
    payload: dict[str, Any]
    progress: float
    metrics: dict[str, Any]
    worker_id: str | None
    attempts: int
    max_attempts: int
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    eta_seconds: float | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class JobList(BaseModel):
    """One page of jobs, newest first, and how many match in all."""

    items: list[JobPublic]
    total: int
