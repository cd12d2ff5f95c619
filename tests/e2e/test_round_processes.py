"""Whole refinement rounds with every service as a real process, and restarts in each state.

The trainer API, one trainer worker, the BentoML inference service and the orchestrator
run as processes on 127.0.0.1 over one SQLite file and a `file://` store. The data is a
small synthetic dataset with corrupted labels and its truth manifest; decisions come
from the simulated reviewer (`regrasp.data.synthetic.reviewer.SimulatedReviewer`) and are
posted through `POST /rounds/{id}/decisions`.

- The training round is SIGKILLed right after the trainer accepted its job (before the
  job id was stored) and restarted: the job is found again, not submitted twice; the
  round then runs to its end, and version 1 is checked image by image against the
  decisions (removed images gone, accepted predictions added with provenance, fixed
  rectangles removed, the rest unchanged).
- The other states: the trained model is reused (`model_id`), a reference round runs
  uninterrupted, then one round per state is SIGKILLed exactly there (the launcher of
  `tests.harness.launchers` with ROUND_TEST_PAUSE_AT makes the runner's hook park at that point)
  and restarted; each ends with the same labels as the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.api.rounds import RoundCreate
from regrasp.data import versions
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Job, Prediction
from tests.harness.cluster import Cluster, retry
from tests.harness.rounds import (
    check_version,
    finish,
    import_dataset,
    labels_by_name,
    post_decisions,
    review,
    wait_items,
    wait_state,
)

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

TRAIN = {
    "architecture": "ggcnn",
    "epochs": 2,
    "batch_size": 4,
    "input_size": 64,
    "num_workers": 0,
    "augment": {"enabled": False},
    "decode": {"threshold": 0.0},
    "split": {"kind": "image", "val_fraction": 0.1, "test_fraction": 0.1},
}
KILL_POINTS = ["created", "predicting:chunk", "reviewing", "applying:before_commit"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rounds")
    c = Cluster(tmp)
    generate_dataset(
        tmp / "synth", images=24, objects=6, size=128, workers=1, seed=5, corrupt_fraction=0.4
    )
    migrations.upgrade(c.db_url)
    try:
        c.start_trainer()
        c.start_worker("worker")
        c.start_inference()
        c.wait_ready()
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def trained(cluster):
    """The training round, killed right after its job was submitted, then resumed."""
    c = cluster
    dataset_id = import_dataset(c, "trained")
    api = c.start_orchestrator(pause_at="training:submitted")
    rnd = retry(
        lambda: api.create_round(RoundCreate(dataset_id=dataset_id, train=TRAIN, chunk_size=8))
    )
    c.wait_marker()
    c.kill("orchestrator")
    api = c.start_orchestrator()
    decisions = finish(c, api, dataset_id, rnd.id)
    final = api.get_round(rnd.id)
    engine = make_engine(c.db_url)
    with session_scope(engine) as s:
        jobs = s.scalars(sa.select(Job.id)).all()
    engine.dispose()
    c.kill("orchestrator")
    return {"dataset_id": dataset_id, "round": final, "decisions": decisions, "jobs": jobs}


def test_a_round_with_training_survives_a_kill_after_submit(cluster, trained):
    final = trained["round"]
    assert trained["jobs"] == [final.train_job_id]  # submitted once
    assert final.model_id is not None
    assert final.counts.images_predicted == 24
    assert final.counts.items == final.counts.flagged == final.counts.decided
    assert {"training", "predicting", "reviewing", "applying"} <= set(final.timings)
    kinds = {d["decision"] for d in trained["decisions"].values()}
    assert kinds - {"true_negative"}, "the reviewer changed nothing: the check would be empty"
    check_version(cluster, trained["dataset_id"], final.id, trained["decisions"])
    # The orchestrator read every image's object mask for the score: the labels' reach
    # of the object is measured (None where the score had no mask) wherever there are labels.
    engine = make_engine(cluster.db_url)
    try:
        with session_scope(engine) as s:
            stored = dict(
                s.execute(
                    sa.select(Prediction.image_id, Prediction.quality).where(
                        Prediction.round_id == final.id
                    )
                ).all()
            )
            labelled = set(versions.labels_at(s, trained["dataset_id"], 0).image_ids.tolist())
    finally:
        engine.dispose()
    assert len(stored) == 24 and labelled
    assert all(stored[i]["coverage"] is not None for i in labelled)


@pytest.fixture(scope="module")
def reference(cluster, trained):
    c = cluster
    dataset_id = import_dataset(c, "reference")
    api = c.start_orchestrator()
    request = RoundCreate(dataset_id=dataset_id, model_id=trained["round"].model_id, chunk_size=8)
    rnd = retry(lambda: api.create_round(request))
    finish(c, api, dataset_id, rnd.id)
    c.kill("orchestrator")
    return labels_by_name(c, dataset_id, 1)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_round_killed_in_each_state_ends_like_an_uninterrupted_one(
    cluster, trained, reference, point
):
    c = cluster
    name = "killed-" + point.replace(":", "-").replace("_", "-")
    dataset_id = import_dataset(c, name)
    api = c.start_orchestrator(pause_at=point)
    request = RoundCreate(dataset_id=dataset_id, model_id=trained["round"].model_id, chunk_size=8)
    rnd = retry(lambda: api.create_round(request))
    if point == "reviewing":
        c.wait_marker()
        c.kill("orchestrator")
        api = c.start_orchestrator()
        finish(c, api, dataset_id, rnd.id)
    elif point == "applying:before_commit":
        wait_state(c, api, rnd.id, ("reviewing",))
        wait_items(c, api, rnd.id)
        post_decisions(api, rnd.id, review(c, dataset_id, rnd.id))
        retry(lambda: api.apply_round(rnd.id))
        c.wait_marker()
        c.kill("orchestrator")
        api = c.start_orchestrator()
        assert wait_state(c, api, rnd.id, ("done",)).result_version == 1
    else:
        c.wait_marker()
        c.kill("orchestrator")
        api = c.start_orchestrator()
        finish(c, api, dataset_id, rnd.id)
    final = api.get_round(rnd.id)
    c.kill("orchestrator")
    assert final.counts.images_predicted == 24
    got = labels_by_name(c, dataset_id, 1)
    assert got.keys() == reference.keys()
    for image_name, labels in reference.items():
        np.testing.assert_allclose(got[image_name], labels, atol=1e-3, err_msg=image_name)
