"""A review round without a GPU: seed predictions on a dataset version and open its queue.

Real rounds get their predictions from a trained network through the inference service.
To try the review screen, test it, or benchmark the queue, this writes a round already in
`reviewing` with plausible predictions instead: for every image the top-1 grasp is one of
its labels turned by 90° (the paper's "grasps along a stick" error: no overlap under the
angle gate, so the image is flagged), then a label shifted a little, then a label at
another scale. Best IoU, flag and priority are computed with the real metric
(the round's own `regrasp.rounds.predicting.score`, which also stores the label-quality
score), and the queue is made by `regrasp.review.create_items`.

Also starts an orchestrator process on 127.0.0.1 for tests, the benchmark and the
screenshot script (`start_orchestrator`), and imports a small synthetic dataset through
its API (`import_synthetic`).

CLI (on the database REGRASP_DATABASE_URL names; the dataset must exist):

    python scripts/review_demo.py --dataset 1 [--version V] [--double-review 0.2]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.api.datasets import ImportRequest, SyntheticSource
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.errors import InvalidInput
from regrasp.grasps import THETA, X, Y
from regrasp.metrics import FLAG_IOU
from regrasp.review import create_items
from regrasp.rounds.predicting import score
from regrasp.store.db import versions as V
from regrasp.store.db.tables import Prediction, Round, RoundState

REPO = Path(__file__).resolve().parents[1]


def seed_round(
    session: Session,
    *,
    dataset_id: int,
    version: int | None = None,
    top_k: int = 3,
    double_review_fraction: float = 0.0,
    max_images: int | None = None,
    seed: int = 0,
) -> int:
    """Write a round in `reviewing` with seeded predictions and its review items; its id.

    Every image of the version that has labels gets `top_k` predictions (see the module
    docstring); the flagged ones (nearly all: top-1 is turned 90°) become review items. With
    `double_review_fraction` some items need two reviews. Images without labels are left
    out. `max_images` keeps the first N images by id.
    """
    if top_k < 1:
        raise InvalidInput(f"top_k must be >= 1, got {top_k}")
    version = V.latest_version(session, dataset_id) if version is None else version
    labels = V.labels_at(session, dataset_id, version)
    image_ids = np.unique(labels.image_ids)
    if max_images is not None:
        image_ids = image_ids[:max_images]
    if len(image_ids) == 0:
        raise InvalidInput(f"dataset {dataset_id} v{version} has no labelled images")
    rng = np.random.default_rng(seed)
    first = np.searchsorted(labels.image_ids, image_ids)  # first label row of each image
    counts = np.searchsorted(labels.image_ids, image_ids, side="right") - first
    preds = np.empty((len(image_ids), top_k, 5))
    for k in range(top_k):
        rows = first + rng.integers(0, counts)
        g = labels.grasps[rows].copy()
        if k == 0:
            g[:, THETA] += 90.0  # across the stick → fails the angle gate
        else:
            g[:, [X, Y]] += rng.normal(0.0, 2.0, size=(len(g), 2))
            g[:, THETA] += rng.normal(0.0, 5.0, size=len(g))
        preds[:, k] = g
    quality = np.sort(rng.uniform(0.5, 0.99, size=(len(image_ids), top_k)), axis=1)[:, ::-1]
    in_batch = np.isin(labels.image_ids, image_ids)
    owner = np.searchsorted(image_ids, labels.image_ids[in_batch])
    rows = [np.column_stack([preds[i], quality[i]]).round(3) for i in range(len(image_ids))]
    # The round's own scoring (paper flag and order, label-quality score kept beside).
    scores = score(rows, labels.grasps[in_batch], owner, threshold=FLAG_IOU, flag="paper")

    rnd = Round(
        dataset_id=dataset_id,
        base_version=version,
        state=RoundState.reviewing,
        config={"top_k": top_k, "double_review_fraction": double_review_fraction},
    )
    session.add(rnd)
    session.flush()
    session.execute(
        sa.insert(Prediction),
        [
            {
                "round_id": rnd.id,
                "image_id": int(image_ids[i]),
                "grasps": rows[i].tolist(),
                "best_iou": float(scores.best_iou[i]),
                "flagged": bool(scores.flagged[i]),
                "priority": float(scores.priority[i]),
                "quality": scores.quality[i],
            }
            for i in range(len(image_ids))
        ],
    )
    create_items(session, rnd.id, double_review_fraction=double_review_fraction, seed=seed)
    return rnd.id


def bare_dataset(session: Session, *, name: str, images: int, seed: int = 0) -> int:
    """A dataset of `images` images with 3 labels each and no pixels (the queue never reads
    them): enough to load the review queue with thousands of items in a second; its id."""
    rng = np.random.default_rng(seed)
    dataset = V.create_dataset(session, name=name)
    records = V.ImageRecords(
        names=[f"img{i:06d}" for i in range(images)],
        object_names=[f"obj{i // 10}" for i in range(images)],
        widths=[1024] * images,
        heights=[1024] * images,
    )
    n = 3 * images
    grasps = np.column_stack(
        [
            rng.uniform(200, 800, (n, 2)),
            rng.uniform(-30, 30, n),
            np.full(n, 60.0),
            np.full(n, 20.0),
        ]
    )
    V.import_version0(session, dataset, records, np.repeat(np.arange(images), 3), grasps)
    return dataset


@dataclass
class Orchestrator:
    """A running `python -m services.orchestrator serve` process."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_orchestrator(
    *,
    database_url: str,
    store_url: str,
    data_dir: Path,
    admin: tuple[str, str],
    secret_key: str = "review-demo-secret-" + "x" * 24,
    port: int | None = None,
    timeout: float = 60.0,
    extra_env: dict[str, str] | None = None,
) -> Orchestrator:
    """Start the orchestrator on 127.0.0.1 (a free port unless given); wait for connections."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "REGRASP_MODE": "development",
        "REGRASP_DATA_DIR": str(data_dir),
        "REGRASP_DATABASE_URL": database_url,
        "REGRASP_OBJECT_STORE_URL": store_url,
        "REGRASP_SECRET_KEY": secret_key,
        "REGRASP_ADMIN_USERNAME": admin[0],
        "REGRASP_ADMIN_PASSWORD": admin[1],
        "BENTOML_DO_NOT_TRACK": "true",
        **(extra_env or {}),
    }
    log_path = data_dir / f"orchestrator-{port}.log"
    log = log_path.open("wb")
    cmd = [sys.executable, "-m", "services.orchestrator", "serve"]
    process = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Orchestrator(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"orchestrator exited: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"orchestrator did not start in {timeout} s: {log_path.read_text()[-2000:]}")


def import_synthetic(
    api: OrchestratorClient, *, name: str, images: int, size: int = 256, seed: int = 0
) -> int:
    """Import a generated dataset through the API and wait for it; its id."""
    source = SyntheticSource(images=images, size=size, seed=seed)
    job = api.start_import(ImportRequest(name=name, source=source))
    done = api.wait_import(job.id, poll_seconds=0.2, timeout=300)
    if done.state != "succeeded" or done.dataset_id is None:
        raise RuntimeError(f"import {job.id} {done.state}: {done.error}")
    return done.dataset_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    from regrasp.settings import load_settings
    from regrasp.store.db.engine import make_engine, session_scope

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=int, required=True, help="Dataset id.")
    parser.add_argument("--version", type=int, default=None, help="Base version (latest).")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--double-review", type=float, default=0.0)
    parser.add_argument("--max-images", type=int, default=None)
    args = parser.parse_args()
    engine = make_engine(load_settings().database_url)
    try:
        with session_scope(engine) as session:
            round_id = seed_round(
                session,
                dataset_id=args.dataset,
                version=args.version,
                top_k=args.top_k,
                double_review_fraction=args.double_review,
                max_images=args.max_images,
            )
    finally:
        engine.dispose()
    print(f"round {round_id} is open for review")


if __name__ == "__main__":
    main()
