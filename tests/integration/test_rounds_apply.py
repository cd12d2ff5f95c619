"""The apply step of a round on both databases: each decision type, force, exactly once.

A small dataset is written directly as version 0 (five images of three labels each), a
round is put in review with stored predictions, decisions go through the review library
(`regrasp.refine.review.decisions.decide`, the path the API and the review UI use), and version 1
is read back image by image.
"""

from __future__ import annotations

import numpy as np
import pytest

from regrasp.data import versions as V
from regrasp.platform.accounts import create_user
from regrasp.platform.errors import Conflict
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import (
    Dataset,
    Model,
    ModelStatus,
    Prediction,
    ReviewItem,
    Round,
    RoundState,
)
from regrasp.refine.review.decisions import decide
from regrasp.refine.rounds.applying import apply_round
from regrasp.refine.rounds.config import RoundConfig
from regrasp.workflows.rounds import machine
from regrasp.workflows.rounds.predicting import score
from tests.harness.seeders import labelled_dataset

N_IMAGES, N_LABELS, K = 5, 3, 4


def _labels(i: int) -> np.ndarray:
    """Three labels of image i: horizontal grasps at x = 40, 80, 120 (jaw 10 + i)."""
    return np.array([[40.0 * (j + 1), 100.0, 0.0, 30.0, 10.0 + i] for j in range(N_LABELS)])


def _predictions(i: int) -> list[list[float]]:
    """K ranked predictions far from every label (so the image is flagged)."""
    return [[60.0 + 10 * k, 200.0, 90.0, 40.0 + k, 25.0, 0.9 - 0.1 * k] for k in range(K)]


def _world(engine, *, jaw_rule: str = "half_opening") -> dict:
    with session_scope(engine) as s:
        annotator = create_user(s, username="ana", password="password-1", role="annotator")
        dataset_id, image_ids = labelled_dataset(
            s,
            name="d",
            image_names=[f"{i}_obj" for i in range(N_IMAGES)],
            object_names=["obj"] * N_IMAGES,
            size=256,
            owners=np.repeat(np.arange(N_IMAGES), N_LABELS),
            grasps=np.concatenate([_labels(i) for i in range(N_IMAGES)]),
        )
        model = Model(architecture="ggcnn", in_channels=1, status=ModelStatus.ready)
        s.add(model)
        s.flush()
        config = RoundConfig(model_id=model.id, jaw_rule=jaw_rule)
        rnd = machine.create_round(s, dataset_id=dataset_id, version=0, config=config)
        rnd.state = RoundState.reviewing
        for i, image_id in enumerate(image_ids):
            s.add(
                Prediction(
                    round_id=rnd.id,
                    image_id=int(image_id),
                    grasps=_predictions(i),
                    best_iou=0.0,
                    flagged=True,
                    priority=0.5,
                )
            )
        s.flush()
        from regrasp.refine.review.items import create_items

        assert create_items(s, rnd.id) == N_IMAGES
        labels = V.labels_at(s, dataset_id, 0)
        return {
            "dataset_id": dataset_id,
            "round_id": rnd.id,
            "annotator": annotator.id,
            "images": [int(i) for i in image_ids],
            "grasp_ids": {
                int(i): labels.grasp_ids[labels.image_ids == i].tolist() for i in image_ids
            },
        }


def _decide(engine, w: dict, image_index: int, decision: str, **kw) -> None:
    with session_scope(engine) as s:
        item = (
            s.query(ReviewItem)
            .filter_by(round_id=w["round_id"], image_id=w["images"][image_index])
            .one()
        )
        decide(
            s,
            item.id,
            w["annotator"],
            item_version=item.version,
            decision=decision,
            seconds_taken=1.0,
            **kw,
        )


def _decide_all_but_last(engine, w: dict) -> None:
    _decide(engine, w, 0, "true_negative")
    _decide(engine, w, 1, "missing_label", accepted_predictions=[0, 2])
    _decide(engine, w, 2, "annotation_error")
    _decide(
        engine,
        w,
        3,
        "fix",
        removed_grasp_ids=[w["grasp_ids"][w["images"][3]][0]],
        accepted_predictions=[1],
    )


def test_apply_each_decision_type(migrated_engine):
    engine = migrated_engine
    w = _world(engine)
    _decide_all_but_last(engine, w)
    with session_scope(engine) as s, pytest.raises(Conflict, match="undecided"):
        machine.request_apply(s, w["round_id"], force=False, by=None)
    with session_scope(engine) as s:
        machine.request_apply(s, w["round_id"], force=True, by=None)
    with session_scope(engine) as s:
        assert apply_round(s, w["round_id"]) == 1

    ds, img = w["dataset_id"], w["images"]
    with session_scope(engine) as s:
        rnd = s.get(Round, w["round_id"])
        assert (rnd.state, rnd.result_version) == (RoundState.done, 1)
        assert s.get(Dataset, ds).latest_version == 1
        assert V.images_at(s, ds, 1).tolist() == sorted(set(img) - {img[2]})
        v0, v1 = V.labels_at(s, ds, 0), V.labels_at(s, ds, 1)
        diff = V.diff(s, ds, 0, 1)
        pred_rows = {
            p.image_id: p.id for p in s.query(Prediction).filter_by(round_id=w["round_id"])
        }

    def rows(labels, image_id):
        return labels.grasps[labels.image_ids == image_id]

    # true negative and undecided (forced): unchanged
    for i in (0, 4):
        np.testing.assert_array_equal(rows(v1, img[i]), rows(v0, img[i]))
    # missing label: two predictions added, jaw = opening / 2, with provenance
    expected = np.array([_predictions(1)[k][:5] for k in (0, 2)])
    expected[:, 4] = expected[:, 3] / 2
    added = rows(v1, img[1])[N_LABELS:]
    np.testing.assert_allclose(np.sort(added, axis=0), np.sort(expected, axis=0))
    np.testing.assert_array_equal(rows(v1, img[1])[:N_LABELS], rows(v0, img[1]))
    # annotation error: the image and its labels are gone
    assert len(rows(v1, img[2])) == 0
    # fix: first label removed, prediction 1 added
    fixed = rows(v1, img[3])
    assert len(fixed) == N_LABELS
    np.testing.assert_array_equal(fixed[:2], rows(v0, img[3])[1:])
    np.testing.assert_allclose(fixed[2, :4], _predictions(3)[1][:4])
    # provenance of every added grasp
    assert len(diff.added) == 3
    assert set(diff.added.sources.tolist()) == {"prediction"}
    assert set(diff.added.round_ids.tolist()) == {w["round_id"]}
    assert set(diff.added.reviewer_ids.tolist()) == {w["annotator"]}
    for image_id, pred_id in zip(diff.added.image_ids, diff.added.prediction_ids, strict=True):
        assert pred_rows[int(image_id)] == int(pred_id)
    assert diff.removed.grasp_ids.tolist() == sorted(
        [w["grasp_ids"][img[3]][0]] + w["grasp_ids"][img[2]]
    )
    assert diff.removed_image_ids.tolist() == [img[2]]


def test_kept_images_are_confirmed_until_their_labels_change(migrated_engine):
    """After an applied round, the image kept as a true negative is confirmed (the next
    round does not flag it again); images whose labels changed, the removed one and the
    undecided one are not; a later change to the kept image's labels ends it."""
    from regrasp.refine.review.items import confirmed_images

    engine = migrated_engine
    w = _world(engine)
    _decide_all_but_last(engine, w)
    ds, img = w["dataset_id"], w["images"]
    with session_scope(engine) as s:
        assert confirmed_images(s, ds, 0).tolist() == []  # nothing applied yet
        machine.request_apply(s, w["round_id"], force=True, by=None)
    with session_scope(engine) as s:
        apply_round(s, w["round_id"])
    with session_scope(engine) as s:
        assert confirmed_images(s, ds, 1).tolist() == [img[0]]
        # A later version that removes one of the kept image's labels: no longer confirmed.
        kept = V.labels_at(s, ds, 1)
        first = int(kept.grasp_ids[kept.image_ids == img[0]][0])
        V.create_version(s, ds, 1, V.ChangeSet(remove_grasp_ids=[first]))
    with session_scope(engine) as s:
        assert confirmed_images(s, ds, 1).tolist() == [img[0]]
        assert confirmed_images(s, ds, 2).tolist() == []


def test_apply_is_exactly_once(migrated_engine):
    engine = migrated_engine
    w = _world(engine)
    _decide_all_but_last(engine, w)
    _decide(engine, w, 4, "true_negative")
    with session_scope(engine) as s:
        machine.request_apply(s, w["round_id"], force=False, by=None)

    class Crash(Exception):
        pass

    def crash() -> None:
        raise Crash

    # A crash after every write but before the commit leaves nothing behind.
    with pytest.raises(Crash), session_scope(engine) as s:
        apply_round(s, w["round_id"], before_commit=crash)
    with session_scope(engine) as s:
        assert s.get(Dataset, w["dataset_id"]).latest_version == 0
        assert s.get(Round, w["round_id"]).state == RoundState.applying
    with session_scope(engine) as s:
        assert apply_round(s, w["round_id"]) == 1
    with session_scope(engine) as s:  # again: the same version, no second one
        assert apply_round(s, w["round_id"]) == 1
        assert [v.number for v in V.list_versions(s, w["dataset_id"])] == [0, 1]


def test_label_median_jaw_rule(migrated_engine):
    engine = migrated_engine
    w = _world(engine, jaw_rule="label_median")
    _decide(engine, w, 1, "missing_label", accepted_predictions=[3])
    with session_scope(engine) as s:
        machine.request_apply(s, w["round_id"], force=True, by=None)
        apply_round(s, w["round_id"])
    with session_scope(engine) as s:
        diff = V.diff(s, w["dataset_id"], 0, 1)
    assert len(diff.added) == 1
    assert diff.added.grasps[0, 4] == pytest.approx(10.0 + 1)  # the image's label jaws


def test_cancel_and_resume_guard_states(migrated_engine):
    engine = migrated_engine
    w = _world(engine)
    with session_scope(engine) as s:
        machine.request_apply(s, w["round_id"], force=True, by=None)
    with session_scope(engine) as s, pytest.raises(Conflict, match="no longer be cancelled"):
        machine.cancel_round(s, w["round_id"])
    with session_scope(engine) as s, pytest.raises(Conflict, match="not failed"):
        machine.resume_round(s, w["round_id"])


def test_score_flags_and_orders_by_likely_label_error():
    labels = np.array([[50.0, 50.0, 0.0, 40.0, 20.0], [150.0, 50.0, 0.0, 40.0, 20.0]])
    grasps = [
        np.array([[50.0, 50.0, 0.0, 40.0, 20.0, 0.9]]),  # on its label: not flagged
        np.array([[150.0, 150.0, 0.0, 40.0, 20.0, 0.9]]),  # confident, no overlap
        np.array([[150.0, 150.0, 0.0, 40.0, 20.0, 0.3]]),  # less confident, no overlap
        np.zeros((0, 6)),  # no prediction, no labels
    ]
    owner_all = np.array([0, 1, 2])
    labels_all = np.concatenate([labels, labels[1:]])
    s = score(grasps, labels_all, owner_all, threshold=0.2)
    assert s.flagged.tolist() == [False, True, True, True]
    assert s.best_iou[0] == pytest.approx(1.0)
    assert s.priority[1] > s.priority[2] > s.priority[3] == 0.0
    assert s.priority[0] == 0.0


def test_fold_of_is_balanced_and_seeded():
    ids = np.arange(10, 33)
    f = machine.fold_of(ids, folds=4, seed=3)
    assert sorted(np.bincount(f).tolist()) == [5, 6, 6, 6]
    np.testing.assert_array_equal(f, machine.fold_of(ids[::-1], folds=4, seed=3)[::-1])
    assert not np.array_equal(f, machine.fold_of(ids, folds=4, seed=4))


def test_round_lock_admits_one_holder_at_a_time(migrated_engine):
    from regrasp.platform.store.db.engine import make_engine
    from regrasp.workflows.rounds.runner import round_lock

    other = make_engine(migrated_engine.url.render_as_string(hide_password=False))
    try:
        with round_lock(migrated_engine, 7) as first:
            assert first
            with round_lock(other, 7) as second:
                assert not second  # another "replica" (engine, connection) is refused
            with round_lock(other, 8) as unrelated:
                assert unrelated
        with round_lock(other, 7) as again:
            assert again  # released with its holder
    finally:
        other.dispose()


def test_drawn_grasps_become_labels_as_drawn_with_the_reviewer(migrated_engine):
    """A reviewer draws the grasps no label and no prediction shows: applying adds them
    exactly as drawn (the jaw rule is for predictions, whose jaw is a guess), source
    "manual", beside an accepted prediction of the same decision."""
    engine = migrated_engine
    w = _world(engine)
    drawn = [[30.0, 60.0, 45.0, 24.0, 9.0], [200.0, 20.5, -30.0, 18.0, 7.5]]
    _decide(engine, w, 0, "missing_label", drawn_grasps=drawn)
    _decide(engine, w, 1, "missing_label", accepted_predictions=[0], drawn_grasps=drawn[:1])
    gid = w["grasp_ids"][w["images"][2]]
    _decide(engine, w, 2, "fix", removed_grasp_ids=gid, drawn_grasps=drawn[1:])  # all replaced
    with session_scope(engine) as s:
        machine.request_apply(s, w["round_id"], force=True, by=None)
    with session_scope(engine) as s:
        assert apply_round(s, w["round_id"]) == 1
        v1 = V.labels_at(s, w["dataset_id"], 1)
        diff = V.diff(s, w["dataset_id"], 0, 1)
    img = w["images"]
    rows = {i: v1.grasps[v1.image_ids == img[i]] for i in range(3)}
    np.testing.assert_array_equal(rows[0][N_LABELS:], drawn)
    assert drawn[0] in rows[1][N_LABELS:].tolist() and len(rows[1]) == N_LABELS + 2
    np.testing.assert_array_equal(rows[2], drawn[1:])
    sources = dict(zip(map(tuple, diff.added.grasps.tolist()), diff.added.sources, strict=True))
    assert [sources[tuple(g)] for g in drawn] == ["manual", "manual"]
    assert sorted(diff.added.sources.tolist()).count("prediction") == 1
    assert set(diff.added.reviewer_ids.tolist()) == {w["annotator"]}
    manual = diff.added.sources == "manual"
    assert (diff.added.prediction_ids[manual] == V.NO_ID).all()
