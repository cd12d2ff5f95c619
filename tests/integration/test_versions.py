"""The versioned label store on SQLite and PostgreSQL: snapshots, diffs, rollback, atomicity."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.data import versions as V
from regrasp.platform.errors import Conflict, InvalidInput, NotFound
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import (
    DatasetVersion,
    Grasp,
    ImageSpan,
    Prediction,
    Round,
    User,
    UserRole,
)

N_IMAGES = 12


@pytest.fixture
def engine(migrated_engine):
    """The harness's engine on a migrated database (both backends), under this file's name."""
    return migrated_engine


@pytest.fixture
def dataset(engine):
    """A dataset at version 0: 12 images of 3 objects with 2..6 random grasps each."""
    rng = np.random.default_rng(7)
    per_image = rng.integers(2, 7, N_IMAGES)
    index = np.repeat(np.arange(N_IMAGES), per_image)
    grasps = np.column_stack(
        [rng.uniform(0, 1024, (len(index), 3)), rng.uniform(5, 80, (len(index), 2))]
    )
    images = V.ImageRecords(
        names=[f"{i}_obj{i % 3}" for i in range(N_IMAGES)],
        object_names=[f"obj{i % 3}" for i in range(N_IMAGES)],
        widths=[1024] * N_IMAGES,
        heights=[1024] * N_IMAGES,
        splits=["train"] * N_IMAGES,
        checksums=["0" * 64] * N_IMAGES,
    )
    with session_scope(engine) as s:
        dataset_id = V.create_dataset(s, name="jacquard-mini")
        image_ids = V.import_version0(s, dataset_id, images, index, grasps)
        reviewer = User(username="rev", role=UserRole.annotator, password_hash="x")
        s.add(reviewer)
        s.flush()
        rnd = Round(dataset_id=dataset_id, base_version=0)
        s.add(rnd)
        s.flush()
        pred = Prediction(round_id=rnd.id, image_id=int(image_ids[0]), best_iou=0.1, flagged=True)
        s.add(pred)
        s.flush()
        ids = {"reviewer": reviewer.id, "round": rnd.id, "prediction": pred.id}
    return {"id": dataset_id, "image_ids": image_ids, "index": index, "grasps": grasps, **ids}


def _canonical(image_ids: np.ndarray, grasps: np.ndarray) -> np.ndarray:
    """Labels as a sorted (N, 6) array, comparable regardless of grasp ids."""
    rows = np.column_stack([image_ids.astype(np.float64), grasps])
    return rows[np.lexsort(rows.T[::-1])]


def _history(engine) -> dict:
    """Every row that versioning writes, to prove that a failure left nothing behind."""
    with engine.connect() as conn:
        return {
            t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)).all())
            for t in (Grasp.__table__, ImageSpan.__table__, DatasetVersion.__table__)
        } | {"head": conn.execute(sa.text("SELECT latest_version FROM datasets")).all()}


def test_version0_reads_back_the_imported_labels(engine, dataset):
    with session_scope(engine) as s:
        labels = V.labels_at(s, dataset["id"], 0)
        images = V.images_at(s, dataset["id"], 0)
        one = V.labels_for_image(s, int(dataset["image_ids"][3]), 0)
        (row,) = V.list_versions(s, dataset["id"])
    expected = _canonical(dataset["image_ids"][dataset["index"]], dataset["grasps"])
    np.testing.assert_array_equal(_canonical(labels.image_ids, labels.grasps), expected)
    assert labels.grasps.dtype == np.float64 and labels.grasps.shape == (len(expected), 5)
    np.testing.assert_array_equal(images, np.sort(dataset["image_ids"]))
    mine = dataset["index"] == 3
    np.testing.assert_array_equal(
        _canonical(one.image_ids, one.grasps),
        _canonical(dataset["image_ids"][dataset["index"][mine]], dataset["grasps"][mine]),
    )
    assert (row.number, row.image_count, row.grasp_count) == (0, N_IMAGES, len(expected))


def test_change_set_makes_a_new_version_and_keeps_the_old_one(engine, dataset):
    d, img = dataset["id"], dataset["image_ids"]
    with session_scope(engine) as s:
        v0 = V.labels_at(s, d, 0)
        removed = v0.grasp_ids[v0.image_ids == img[1]][:1]
        new_grasps = np.array([[100.0, 200.0, 30.0, 40.0, 20.0], [110.0, 210.0, -45.0, 50.0, 25.0]])
        change = V.ChangeSet(
            add_image_ids=[img[0], img[0]],
            add_grasps=new_grasps,
            add_source="prediction",
            add_prediction_ids=[dataset["prediction"], V.NO_ID],
            add_reviewer_ids=[dataset["reviewer"]] * 2,
            add_notes=["missing label", None],
            remove_grasp_ids=removed,
            remove_grasp_reasons="parallel to the stick",
            remove_grasp_reviewer_ids=[dataset["reviewer"]],
            remove_image_ids=[img[2]],
            remove_image_reasons="annotation error",
        )
        v1 = V.create_version(s, d, 0, change, round_id=dataset["round"], message="round 1")

    assert v1 == 1
    with session_scope(engine) as s:
        again0 = V.labels_at(s, d, 0)
        l1 = V.labels_at(s, d, 1)
        delta = V.diff(s, d, 0, 1)
        back = V.diff(s, d, 1, 0)
        images1 = V.images_at(s, d, 1)
        counts = [(r.number, r.image_count, r.grasp_count) for r in V.list_versions(s, d)]

    np.testing.assert_array_equal(again0.grasp_ids, v0.grasp_ids)  # v0 is immutable
    keep = ~np.isin(v0.grasp_ids, removed) & (v0.image_ids != img[2])
    expected = np.concatenate(
        [_canonical(v0.image_ids[keep], v0.grasps[keep]), _canonical(img[[0, 0]], new_grasps)]
    )
    np.testing.assert_array_equal(
        _canonical(l1.image_ids, l1.grasps), expected[np.lexsort(expected.T[::-1])]
    )
    np.testing.assert_array_equal(images1, np.setdiff1d(img, [img[2]]))
    assert counts == [(0, N_IMAGES, len(v0)), (1, N_IMAGES - 1, len(l1))]

    # Provenance of additions and removals survives in the diff.
    np.testing.assert_array_equal(delta.added.grasps, new_grasps)
    assert delta.added.sources.tolist() == ["prediction", "prediction"]
    assert delta.added.round_ids.tolist() == [dataset["round"]] * 2
    assert delta.added.prediction_ids.tolist() == [dataset["prediction"], V.NO_ID]
    assert delta.added.reviewer_ids.tolist() == [dataset["reviewer"]] * 2
    assert delta.added.notes.tolist() == ["missing label", None]
    n_img2 = int((v0.image_ids == img[2]).sum())
    assert len(delta.removed) == 1 + n_img2
    by_id = dict(zip(delta.removed.grasp_ids.tolist(), delta.removed.removed_reasons, strict=True))
    assert by_id[int(removed[0])] == "parallel to the stick"
    assert sorted(set(by_id.values())) == [
        "image removed: annotation error",
        "parallel to the stick",
    ]
    assert set(delta.removed.sources) == {"original"}
    assert delta.removed_image_ids.tolist() == [img[2]] and len(delta.added_image_ids) == 0
    # The reverse diff swaps the two sides.
    np.testing.assert_array_equal(back.added.grasp_ids, delta.removed.grasp_ids)
    np.testing.assert_array_equal(back.removed.grasp_ids, delta.added.grasp_ids)
    assert back.added_image_ids.tolist() == [img[2]]


def test_rollback_equals_the_target_and_keeps_history(engine, dataset):
    d, img = dataset["id"], dataset["image_ids"]
    with session_scope(engine) as s:
        v0 = V.labels_at(s, d, 0)
        V.create_version(
            s, d, 0, V.ChangeSet(remove_image_ids=[img[4]], remove_image_reasons="bad")
        )
        V.create_version(
            s,
            d,
            1,
            V.ChangeSet(
                add_image_ids=[img[5]],
                add_grasps=[[1.0, 2.0, 3.0, 4.0, 5.0]],
                remove_grasp_ids=v0.grasp_ids[v0.image_ids == img[6]],
            ),
        )
        l2, i2 = V.labels_at(s, d, 2), V.images_at(s, d, 2)
        v3 = V.rollback_to(s, d, 0)
        v4 = V.rollback_to(s, d, 2, message="undo the undo")

    with session_scope(engine) as s:
        l3, i3 = V.labels_at(s, d, v3), V.images_at(s, d, v3)
        l4, i4 = V.labels_at(s, d, v4), V.images_at(s, d, v4)
        spans = s.execute(
            sa.select(ImageSpan.added_in_version, ImageSpan.removed_in_version)
            .where(ImageSpan.image_id == int(img[4]))
            .order_by(ImageSpan.id)
        ).all()
        still2 = V.labels_at(s, d, 2)
        restored = s.scalars(sa.select(Grasp.restored_from_id).where(Grasp.added_in_version == 3))
        counts = {r.number: (r.image_count, r.grasp_count) for r in V.list_versions(s, d)}
        delta = V.diff(s, d, 0, 3)

    assert (v3, v4) == (3, 4)
    np.testing.assert_array_equal(
        _canonical(l3.image_ids, l3.grasps), _canonical(v0.image_ids, v0.grasps)
    )
    np.testing.assert_array_equal(i3, np.sort(img))
    np.testing.assert_array_equal(
        _canonical(l4.image_ids, l4.grasps), _canonical(l2.image_ids, l2.grasps)
    )
    np.testing.assert_array_equal(i4, i2)
    np.testing.assert_array_equal(still2.grasp_ids, l2.grasp_ids)  # history untouched
    assert [tuple(r) for r in spans] == [(0, 1), (3, 4)]  # removed, restored, removed again
    assert set(restored) <= set(v0.grasp_ids.tolist()) and None not in set(restored)
    assert counts[3] == (len(i3), len(l3)) and counts[4] == (len(i4), len(l4))
    # Equal snapshots: the diff between v0 and its rollback copy is only re-created rows.
    assert len(delta.added_image_ids) == len(delta.removed_image_ids) == 0
    np.testing.assert_array_equal(
        _canonical(delta.added.image_ids, delta.added.grasps),
        _canonical(delta.removed.image_ids, delta.removed.grasps),
    )


def test_invalid_id_in_the_middle_leaves_no_trace(engine, dataset):
    d = dataset["id"]
    with session_scope(engine) as s:
        v0 = V.labels_at(s, d, 0)
    before = _history(engine)
    bad = np.concatenate([v0.grasp_ids[:3], [10**9], v0.grasp_ids[3:6]])
    with pytest.raises(InvalidInput, match=str(10**9)), session_scope(engine) as s:
        V.create_version(
            s, d, 0, V.ChangeSet(remove_grasp_ids=bad, remove_image_ids=[dataset["image_ids"][0]])
        )
    assert _history(engine) == before


def test_failure_after_the_writes_rolls_back_even_if_the_caller_commits(engine, dataset):
    """A foreign-key failure on the last insert (after removals) undoes the whole version."""
    d, img = dataset["id"], dataset["image_ids"]
    with session_scope(engine) as s:
        v0 = V.labels_at(s, d, 0)
    before = _history(engine)
    change = V.ChangeSet(
        remove_grasp_ids=v0.grasp_ids[:4],
        remove_image_ids=[img[3]],
        add_image_ids=[img[0]],
        add_grasps=[[1.0, 1.0, 0.0, 10.0, 5.0]],
        add_reviewer_ids=[987654],  # no such user
    )
    with session_scope(engine) as s:
        with pytest.raises(Conflict):
            V.create_version(s, d, 0, change)
        # The caller swallowed the error and commits what is left of its transaction.
    assert _history(engine) == before
    with session_scope(engine) as s:  # and the chain still continues from v0
        assert V.create_version(s, d, 0, V.ChangeSet(remove_grasp_ids=v0.grasp_ids[:1])) == 1


def test_stale_or_missing_parent(engine, dataset):
    d = dataset["id"]
    with session_scope(engine) as s:
        v0 = V.labels_at(s, d, 0)
        V.create_version(s, d, 0, V.ChangeSet(remove_grasp_ids=v0.grasp_ids[:1]))
    before = _history(engine)
    with pytest.raises(Conflict, match="not the latest"), session_scope(engine) as s:
        V.create_version(s, d, 0, V.ChangeSet(remove_grasp_ids=v0.grasp_ids[1:2]))
    with pytest.raises(NotFound), session_scope(engine) as s:
        V.create_version(s, d, 5, V.ChangeSet(remove_grasp_ids=v0.grasp_ids[1:2]))
    with pytest.raises(NotFound), session_scope(engine) as s:
        V.labels_at(s, d, 7)
    with pytest.raises(InvalidInput), session_scope(engine) as s:  # already removed in v1
        V.create_version(s, d, 1, V.ChangeSet(remove_grasp_ids=v0.grasp_ids[:1]))
    with pytest.raises(Conflict), session_scope(engine) as s:
        V.import_version0(
            s, d, V.ImageRecords(names=["x"], object_names=["o"], widths=[1], heights=[1]), [], []
        )
    assert _history(engine) == before


def test_concurrent_writers_of_the_same_number_one_wins(engine, dataset):
    d = dataset["id"]
    with session_scope(engine) as s:
        v0 = V.labels_at(s, d, 0)
    started = threading.Event()
    outcome: dict[str, object] = {}

    def second_writer() -> None:
        started.set()
        try:
            with session_scope(engine) as s2:
                outcome["second"] = V.create_version(
                    s2, d, 0, V.ChangeSet(remove_grasp_ids=v0.grasp_ids[1:2])
                )
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            outcome["second"] = exc

    with session_scope(engine) as s1:
        first = V.create_version(s1, d, 0, V.ChangeSet(remove_grasp_ids=v0.grasp_ids[:1]))
        thread = threading.Thread(target=second_writer)
        thread.start()
        started.wait()
        thread.join(0.5)  # let it block on our lock; either order must end in one Conflict
    thread.join()
    assert first == 1
    assert isinstance(outcome["second"], Conflict)
    with session_scope(engine) as s:
        assert [r.number for r in V.list_versions(s, d)] == [0, 1]
        assert len(V.labels_at(s, d, 1)) == len(v0) - 1


def test_change_set_validates_its_arrays():
    with pytest.raises(InvalidInput, match="shape"):
        V.ChangeSet(add_image_ids=[1, 2], add_grasps=np.zeros((3, 5)))
    with pytest.raises(InvalidInput, match="positive"):
        V.ChangeSet(add_image_ids=[1], add_grasps=[[1.0, 1.0, 0.0, 0.0, 5.0]])
    with pytest.raises(InvalidInput, match="duplicates"):
        V.ChangeSet(remove_grasp_ids=[3, 3])
    with pytest.raises(InvalidInput, match="add_source"):
        V.ChangeSet(add_image_ids=[1], add_grasps=[[1.0, 1.0, 0.0, 2.0, 5.0]], add_source="guess")
    with pytest.raises(InvalidInput, match="removed"):
        V.ChangeSet(add_image_ids=[1], add_grasps=[[1.0, 1.0, 0.0, 2.0, 5.0]], remove_image_ids=[1])
