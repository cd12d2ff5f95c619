"""A round on a `Cluster`, driven as the lab would: import, review, apply, check.

Import a generated dataset, answer the review queue with the simulated reviewer (which
knows the truth), post the decisions, apply, read a version's labels by image name and
check a version against the decisions, image by image.
"""

from __future__ import annotations

import time

import numpy as np
import sqlalchemy as sa

from regrasp.api.rounds import BulkDecisions, DecisionEntry
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.data import versions as V
from regrasp.data.synthetic.manifest import read_manifest
from regrasp.data.synthetic.reviewer import SimulatedReviewer
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Image, Prediction, ReviewItem
from tests.harness.cluster import WAIT_S, Cluster, retry
from tests.harness.seeders import import_folder

__all__ = [
    "check_version",
    "finish",
    "import_dataset",
    "labels_by_name",
    "post_decisions",
    "review",
    "wait_items",
    "wait_state",
]


def import_dataset(c: Cluster, name: str) -> int:
    """The synthetic dataset under `c.tmp / "synth"` imported as `name`; its id."""
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            return import_folder(s, c.store(), c.tmp / "synth", name=name)
    finally:
        engine.dispose()


def wait_state(c: Cluster, api: OrchestratorClient, round_id: int, states: tuple[str, ...]):
    rnd = api.wait_round(round_id, until=(*states, "failed", "cancelled"), timeout=WAIT_S, poll=0.3)
    assert rnd.state in states, (rnd.state, rnd.error, c.tail())
    return rnd


def review(c: Cluster, dataset_id: int, round_id: int) -> dict[str, dict]:
    """The simulated reviewer's decisions on the round's items, by image name."""
    truth = read_manifest(c.tmp / "synth").by_stem()
    reviewer = SimulatedReviewer(error_rate=0.0, seed=0)
    engine = make_engine(c.db_url)
    out: dict[str, dict] = {}
    try:
        with session_scope(engine) as s:
            rows = s.execute(
                sa.select(ReviewItem.image_id, Image.name, Prediction.grasps)
                .join(Image, Image.id == ReviewItem.image_id)
                .join(Prediction, Prediction.id == ReviewItem.prediction_id)
                .where(ReviewItem.round_id == round_id)
                .order_by(Image.name)
            ).all()
            for image_id, name, grasps in rows:
                labels = V.labels_for_image(s, image_id, 0)
                preds = np.asarray(grasps, dtype=np.float64).reshape(-1, 6)[:, :5]
                d = reviewer.review(truth[name], labels.grasps, preds)
                out[name] = {
                    "image_id": image_id,
                    "decision": d.kind,
                    "accepted_predictions": d.accepted_predictions,
                    "removed_grasp_ids": [int(labels.grasp_ids[i]) for i in d.removed_labels],
                    "predictions": preds,
                }
    finally:
        engine.dispose()
    return out


def post_decisions(api: OrchestratorClient, round_id: int, decisions: dict[str, dict]) -> None:
    entries = [
        DecisionEntry(
            image_id=d["image_id"],
            decision=d["decision"],
            accepted_predictions=d["accepted_predictions"],
            removed_grasp_ids=d["removed_grasp_ids"],
        )
        for d in decisions.values()
    ]
    if entries:
        retry(lambda: api.round_decisions(round_id, BulkDecisions(decisions=entries)))


def labels_by_name(c: Cluster, dataset_id: int, version: int) -> dict[str, np.ndarray]:
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            names = dict(
                s.execute(
                    sa.select(Image.id, Image.name).where(Image.dataset_id == dataset_id)
                ).all()
            )
            present = V.images_at(s, dataset_id, version)
            labels = V.labels_at(s, dataset_id, version)
    finally:
        engine.dispose()
    return {names[int(i)]: labels.grasps[labels.image_ids == i] for i in present}


def check_version(c: Cluster, dataset_id: int, round_id: int, decisions: dict) -> None:
    """Version 1 against version 0 and the decisions, image by image."""
    v0, v1 = labels_by_name(c, dataset_id, 0), labels_by_name(c, dataset_id, 1)
    for name, before in v0.items():
        d = decisions.get(name)
        kind = d["decision"] if d else "true_negative"
        if kind == "annotation_error":
            assert name not in v1
            continue
        after = v1[name]
        kept = before
        if kind == "fix":
            engine = make_engine(c.db_url)
            with session_scope(engine) as s:
                lab = V.labels_for_image(s, d["image_id"], 0)
            engine.dispose()
            keep = ~np.isin(lab.grasp_ids, d["removed_grasp_ids"])
            kept = lab.grasps[keep]
        np.testing.assert_array_equal(after[: len(kept)], kept, err_msg=name)
        added = after[len(kept) :]
        accepted = d["accepted_predictions"] if d else []
        assert len(added) == len(accepted), name
        if accepted:
            expected = d["predictions"][accepted].copy()
            expected[:, 4] = expected[:, 3] / 2  # the default jaw rule
            np.testing.assert_allclose(np.sort(added, axis=0), np.sort(expected, axis=0))
    engine = make_engine(c.db_url)
    try:
        with session_scope(engine) as s:
            diff = V.diff(s, dataset_id, 0, 1)
            pred_of = dict(
                s.execute(
                    sa.select(Prediction.image_id, Prediction.id).where(
                        Prediction.round_id == round_id
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert set(diff.added.sources.tolist()) <= {"prediction"}
    assert set(diff.added.round_ids.tolist()) <= {round_id}
    for image_id, pred in zip(diff.added.image_ids, diff.added.prediction_ids, strict=True):
        assert pred_of[int(image_id)] == int(pred)
    assert (diff.added.reviewer_ids > 0).all()


def wait_items(c: Cluster, api: OrchestratorClient, round_id: int) -> None:
    """Until the reviewing step created the review items of every flagged image."""
    deadline = time.monotonic() + WAIT_S
    while True:
        counts = api.get_round(round_id).counts
        if counts.items >= counts.flagged:
            return
        assert time.monotonic() < deadline, c.tail()
        time.sleep(0.2)


def finish(c: Cluster, api: OrchestratorClient, dataset_id: int, round_id: int) -> dict:
    """Review (simulated) and apply a round once it is reviewing; its decisions."""
    wait_state(c, api, round_id, ("reviewing",))
    wait_items(c, api, round_id)
    decisions = review(c, dataset_id, round_id)
    post_decisions(api, round_id, decisions)
    retry(lambda: api.apply_round(round_id))
    rnd = wait_state(c, api, round_id, ("done",))
    assert rnd.result_version == 1
    return decisions
