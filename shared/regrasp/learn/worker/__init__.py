"""Running trainer jobs: a dataset version in, a registered model (or an accuracy) out.

This is the glue between the job queue (`regrasp.learn.queue`), the database and object store,
and the training pipeline (`regrasp.learn.training`). The trainer's workers and the `regrasp
train` command run jobs through it the same way:

- `validate_payload` checks a job before it is queued (dataset, version, model, config),
  so a bad request is refused at once instead of failing on a GPU later;
- `run_claimed` runs one claimed job to its end: a heartbeat thread streams its progress
  and metrics every few seconds and learns when the job was cancelled (or handed to
  another worker), and the outcome is written back (`finish`, `fail`, `release`);
- `run_job` does the work: for "train", build (or reuse) the version's training cache,
  create the `models` row once (recorded in the job's result, so a retry trains the same
  model), train with a checkpoint per epoch under that model (a retry resumes from the
  latest), evaluate on the test split and register the model; for "evaluate", score a
  registered model on a split of a dataset version;
- `Worker` is the loop a worker process runs: requeue stale jobs, claim one, run it.

Modules: `payloads` (validation and lookup), `common` (the claimed job, its outcome),
`train` and `evaluate` (the two kinds of work), `running` (heartbeat, outcome, worker).

The model's object-store name is its `models` row id as a string (`model_store_name`),
so `models/<id>/…` holds its checkpoints, weights and metadata.

torch is imported only inside the functions that train or evaluate, so the trainer's HTTP
service (which validates and queues, never trains) runs without it.
"""

from __future__ import annotations

from regrasp.learn.worker.common import ClaimedJob, JobOutcome
from regrasp.learn.worker.payloads import (
    EVALUATE_SPLITS,
    model_store_name,
    resolve_dataset,
    validate_payload,
)
from regrasp.learn.worker.running import Worker, run_claimed, run_job

__all__ = [
    "EVALUATE_SPLITS",
    "ClaimedJob",
    "JobOutcome",
    "Worker",
    "model_store_name",
    "resolve_dataset",
    "run_claimed",
    "run_job",
    "validate_payload",
]
