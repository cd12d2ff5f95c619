"""A trainer worker process: claim jobs from the database, run them, until told to stop.

Run one per GPU and pin it (`CUDA_VISIBLE_DEVICES=1 python -m services.trainer worker`);
start as many as you have GPUs on as many machines as you like: they need only the
database and object-store settings. SIGTERM or SIGINT stops the worker after the current
training step; its job goes back to the queue (no attempt spent) and the next worker
resumes it from the job's latest per-epoch checkpoint. A worker that dies without warning
(SIGKILL, power loss) stops heartbeating; after `heartbeat_timeout` another worker
requeues the job and resumes it the same way.

Multi-GPU jobs: `regrasp.learn.training.loop.train` runs under `torchrun` (DistributedDataParallel,
one process per GPU, rank 0 writes checkpoints), but a queue worker is one process on one
GPU: it does not yet launch torchrun for a job. Scale out by running more workers (several
networks train in parallel), one per GPU.
"""

from __future__ import annotations

import logging
import os
import signal
import socket

from regrasp.learn.worker import Worker
from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, make_session_factory
from regrasp.platform.store.objects import store_from_settings

log = logging.getLogger("services.trainer.worker")


def run_worker(
    settings: Settings,
    *,
    worker_id: str | None = None,
    poll_interval: float | None = None,
    heartbeat_interval: float | None = None,
    heartbeat_timeout: float | None = None,
    kinds: list[str] | None = None,
    device: str | None = None,
    max_jobs: int | None = None,
) -> int:
    """Run the worker loop until SIGTERM/SIGINT (or `max_jobs`); returns the jobs run."""
    engine = make_engine(settings.database_url)
    migrations.prepare(engine, mode=settings.mode)
    worker = Worker(
        make_session_factory(engine),
        store_from_settings(settings),
        worker_id=worker_id or f"{socket.gethostname()}-{os.getpid()}",
        poll_interval=poll_interval or settings.trainer_poll_interval,
        heartbeat_interval=heartbeat_interval or settings.trainer_heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout or settings.trainer_heartbeat_timeout,
        kinds=kinds,
        device=device,
    )

    def stop(signum: int, _frame: object) -> None:
        log.info("worker %s: signal %s, stopping after the current step", worker.worker_id, signum)
        worker.shutdown.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "worker %s polling every %.1f s (heartbeat %.1f s, timeout %.1f s, device %s)",
        worker.worker_id,
        worker.poll_interval,
        worker.heartbeat_interval,
        worker.heartbeat_timeout,
        device or "auto",
    )
    try:
        return worker.run(max_jobs=max_jobs)
    finally:
        engine.dispose()
