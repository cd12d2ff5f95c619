"""Client of the trainer service and the schemas it shares with it (`services.trainer`).

    with TrainerClient(settings.trainer_url, credential=service_key) as trainer:
        job = trainer.submit(TrainJobCreate(dataset="jacquard", version=3,
                                            config={"architecture": "ggcnn", "epochs": 30}))
        job = trainer.wait(job.id)          # polls until succeeded / failed / cancelled
        model_id = job.result["model_id"]

A train job's `config` holds `regrasp.training.config.TrainConfig` fields (validated by
the service, so a bad value is a 422 at submission, not a failure on a GPU an hour later).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from regrasp.clients.base import ServiceClient
from regrasp.errors import StorageError

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
    result: for a train job `model_id` (the `models` row), `model_key` (its object-store
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


class TrainerClient(ServiceClient):
    """Typed calls to the trainer service (bearer: an admin's token or API key, or the
    service key)."""

    def submit(self, job: TrainJobCreate | EvaluateJobCreate) -> JobPublic:
        """Queue a job; InvalidInput for a bad payload, NotFound for an unknown dataset."""
        return self.post_model("/jobs", JobPublic, json=job.model_dump(mode="json"))

    def get(self, job_id: int) -> JobPublic:
        return self.get_model(f"/jobs/{job_id}", JobPublic)

    def list(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> JobList:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            params["state"] = state
        if kind:
            params["kind"] = kind
        return self.get_model("/jobs", JobList, params=params)

    def cancel(self, job_id: int) -> JobPublic:
        # Cancelling twice is harmless, so the call may be retried.
        return self.post_model(f"/jobs/{job_id}/cancel", JobPublic, retry=True)

    def wait(self, job_id: int, *, timeout: float = 3600.0, poll: float = 2.0) -> JobPublic:
        """Poll until the job is finished; StorageError when `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.finished:
                return job
            if time.monotonic() >= deadline:
                raise StorageError(
                    f"job {job_id} still {job.state} after {timeout:.0f} s "
                    f"(progress {job.progress:.0%})"
                )
            time.sleep(poll)
