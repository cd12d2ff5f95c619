"""Client of the trainer service (`services.trainer`); its schemas are `regrasp.api.jobs`.

    with TrainerClient(settings.trainer_url, credential=service_key) as trainer:
        job = trainer.submit(TrainJobCreate(dataset="jacquard", version=3,
                                            config={"architecture": "ggcnn", "epochs": 30}))
        job = trainer.wait(job.id)          # polls until succeeded / failed / cancelled
        model_id = job.result["model_id"]

A train job's `config` holds `regrasp.learn.training.config.TrainConfig` fields (validated by
the service, so a bad value is a 422 at submission, not a failure on a GPU an hour later).
"""

from __future__ import annotations

import time
from typing import Any

from regrasp.api.jobs import EvaluateJobCreate, JobList, JobPublic, TrainJobCreate
from regrasp.clients.base import ServiceClient
from regrasp.platform.errors import StorageError

__all__ = ["TrainerClient"]


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
