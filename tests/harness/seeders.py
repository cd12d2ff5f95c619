"""Data for tests and benches: datasets and rounds written straight to the database, or
imported through a running orchestrator.

- `labelled_dataset`: a dataset whose version 0 is the given images and labels (no pixels),
  the one way tests write a dataset's rows;
- `bare_dataset`: thousands of images with three labels each, no pixels (the review queue
  never reads them);
- `seed_round`: a round already in `reviewing` with plausible predictions and its queue,
  without a GPU. For every image the top-1 grasp is one of its labels turned by 90° (the
  paper's "grasps along a stick" error: no overlap under the angle gate, so the image is
  flagged), then a label shifted a little, then a label at another scale. Best IoU, flag
  and priority are computed with the real metric (the round's own
  `regrasp.workflows.rounds.predicting.score`, which also stores the label-quality score), and the
  queue is made by `regrasp.refine.review.create_items`;
- `unflag_last`: turns a seeded round's last images into unflagged ones, ranked, for audits,
  and `audit_census` reads back which of them an audit's census took;
- `import_folder`: a Jacquard-layout folder (e.g. a generated one) imported by the library;
- `import_synthetic`: a generated dataset imported through the orchestrator's API.

`scripts/review_demo.py` is the command line over `seed_round`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from numpy.typing import ArrayLike
from sqlalchemy.orm import Session

from regrasp.api.datasets import ImportRequest, SyntheticSource
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.data import versions as V
from regrasp.grasp.metrics import FLAG_IOU
from regrasp.grasp.rectangles import THETA, X, Y
from regrasp.platform.errors import InvalidInput
from regrasp.platform.store.db.tables import Prediction, ReviewItem, Round, RoundState
from regrasp.refine.review import create_items
from regrasp.workflows.rounds.predicting import score

__all__ = [
    "bare_dataset",
    "import_folder",
    "import_synthetic",
    "labelled_dataset",
    "seed_round",
    "audit_census",
    "unflag_last",
]


def labelled_dataset(
    session: Session,
    *,
    name: str,
    image_names: Sequence[str],
    object_names: Sequence[str],
    size: int | tuple[int, int],
    owners: ArrayLike,
    grasps: ArrayLike,
    **records: Sequence,
) -> tuple[int, np.ndarray]:
    """Dataset `name` whose version 0 holds these images and labels; (its id, image ids).

    size: every image's side, or (width, height). owners[i] is the index in `image_names`
    of the image that label row `grasps[i]` (x, y, theta, opening, jaw) belongs to.
    `records` passes further `ImageRecords` columns (splits, checksums, depth_keys, ...).
    """
    width, height = (size, size) if isinstance(size, int) else size
    n = len(image_names)
    dataset_id = V.create_dataset(session, name=name)
    images = V.ImageRecords(
        names=list(image_names),
        object_names=list(object_names),
        widths=[width] * n,
        heights=[height] * n,
        **records,
    )
    image_ids = V.import_version0(session, dataset_id, images, owners, grasps)
    return dataset_id, image_ids


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


def unflag_last(session: Session, round_id: int, count: int) -> list[int]:
    """Make the round's last `count` predictions (by id) unflagged, out of the queue, with
    priorities 0, 0.1, 0.2, …: what an audit samples. Their image ids, highest priority
    first (the order the audit's census takes them in)."""
    preds = session.scalars(
        sa.select(Prediction).where(Prediction.round_id == round_id).order_by(Prediction.id)
    ).all()[-count:]
    for rank, pred in enumerate(preds):
        pred.flagged, pred.priority = False, 0.1 * rank
    image_ids = [p.image_id for p in preds]
    session.execute(
        sa.delete(ReviewItem).where(
            ReviewItem.round_id == round_id, ReviewItem.image_id.in_(image_ids)
        )
    )
    return image_ids[::-1]


def bare_dataset(session: Session, *, name: str, images: int, seed: int = 0) -> int:
    """A dataset of `images` images with 3 labels each and no pixels (the queue never reads
    them): enough to load the review queue with thousands of items in a second; its id."""
    rng = np.random.default_rng(seed)
    n = 3 * images
    grasps = np.column_stack(
        [
            rng.uniform(200, 800, (n, 2)),
            rng.uniform(-30, 30, n),
            np.full(n, 60.0),
            np.full(n, 20.0),
        ]
    )
    dataset, _ = labelled_dataset(
        session,
        name=name,
        image_names=[f"img{i:06d}" for i in range(images)],
        object_names=[f"obj{i // 10}" for i in range(images)],
        size=1024,
        owners=np.repeat(np.arange(images), 3),
        grasps=grasps,
    )
    return dataset


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


def import_folder(session: Session, store, folder: Path, *, name: str) -> int:  # type: ignore[no-untyped-def]
    """The Jacquard-layout `folder` (e.g. from `generate_dataset`) imported as `name`; its id."""
    from regrasp.data.ingest import import_jacquard

    return import_jacquard(session, store, folder, name=name)


def audit_census(session: Session, round_id: int) -> set[int]:
    """Image ids of the round's audit census (`add_audit_items`' `top`)."""
    return set(
        session.scalars(
            sa.select(ReviewItem.image_id).where(
                ReviewItem.round_id == round_id, ReviewItem.audit_top.is_(True)
            )
        ).all()
    )
