"""Launchers of a pausable orchestrator or trainer worker, for `tests.harness.cluster`.

`python -m tests.harness.launchers orchestrator HOST PORT` or `... worker ID INTERVAL
TIMEOUT`: with ROUND_TEST_PAUSE_AT the orchestrator's round runner parks at that hook
point (`regrasp.workflows.rounds.machine`) after writing ROUND_TEST_MARKER, until SIGKILL or, with
ROUND_TEST_RELEASE, until that file appears; with WORKER_TEST_PAUSE_AFTER_EPOCH a worker
parks once that many epochs of its job are reported (their checkpoints are stored), so a
test can SIGKILL it exactly there.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path


def _orchestrator(host: str, port: int) -> None:
    import logging

    import uvicorn

    from regrasp.platform.settings import load_settings
    from services.orchestrator.app import create_app

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    app = create_app(load_settings())
    runner = app.state.round_runner
    runner.poll_seconds = 0.3
    runner.hook = _pause_hook(os.environ.get("ROUND_TEST_PAUSE_AT") or None)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _pause_hook(pause_at: str | None):  # type: ignore[no-untyped-def]
    marker = Path(os.environ["ROUND_TEST_MARKER"])
    release = (
        Path(os.environ["ROUND_TEST_RELEASE"]) if os.environ.get("ROUND_TEST_RELEASE") else None
    )
    paused = threading.Event()

    def hook(round_id: int, point: str) -> None:
        if point != pause_at or paused.is_set():
            return
        paused.set()  # once per process
        marker.write_text(f"{round_id} {point}")
        if release is None:
            threading.Event().wait()  # park until SIGKILL
        while not release.exists():
            time.sleep(0.1)
        release.unlink()

    return hook


def _worker(worker_id: str, heartbeat_interval: float, heartbeat_timeout: float) -> None:
    import logging

    from regrasp.learn.worker import running
    from regrasp.platform.settings import load_settings
    from services.trainer.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    pause_after = os.environ.get("WORKER_TEST_PAUSE_AFTER_EPOCH")
    if pause_after:
        marker = Path(os.environ["ROUND_TEST_MARKER"])
        run_claimed = running.run_claimed

        def on_progress(_fraction: float, metrics: dict) -> None:
            if len(metrics.get("history") or ()) >= int(pause_after):
                marker.write_text(f"{worker_id} after epoch {pause_after}")
                threading.Event().wait()  # park (heartbeats go on) until SIGKILL

        def pausing(*args, **kwargs):  # type: ignore[no-untyped-def]
            return run_claimed(*args, **kwargs, on_progress=on_progress)

        running.run_claimed = pausing  # what Worker.run_once calls
    run_worker(
        load_settings(),
        worker_id=worker_id,
        poll_interval=0.3,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        device="cpu",
    )


if __name__ == "__main__":
    if sys.argv[1] == "orchestrator":
        _orchestrator(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "worker":
        _worker(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    else:
        raise SystemExit(f"unknown launcher {sys.argv[1]!r}")
