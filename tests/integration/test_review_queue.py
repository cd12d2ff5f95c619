"""The review queue on SQLite and PostgreSQL: items, leases, decisions, double review, stats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from regrasp.data import versions as V
from regrasp.platform.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import (
    Prediction,
    Review,
    ReviewItem,
    ReviewItemState,
    Round,
    RoundState,
    User,
    UserRole,
)
from regrasp.refine import review
from tests.harness.seeders import labelled_dataset

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LEASE = 60.0

#: Priorities of the 12 flagged images (two tie at 0.5: the lower id goes first), then
#: two unflagged images whose high priority must not matter.
FLAGGED_PRIORITY = [0.9, 0.5, 0.7, 0.5, 0.1, 0.3, 0.8, 0.2, 0.6, 0.4, 0.05, 0.15]
UNFLAGGED_PRIORITY = [0.99, 0.98]
GRASPS_PER_IMAGE = 3
PREDICTIONS_PER_IMAGE = 3


@dataclass
class World:
    engine: Engine
    dataset_id: int
    round_id: int
    image_ids: np.ndarray  # (14,) the first 12 flagged
    ann1: int
    ann2: int
    ann3: int
    admin: int

    def run(self, fn, *args, **kwargs):
        """Call `fn(session, *args, **kwargs)` in its own transaction."""
        with session_scope(self.engine) as s:
            return fn(s, *args, **kwargs)

    def items(self) -> dict[int, ReviewItem]:
        """Every item of the round, by image id."""
        with session_scope(self.engine) as s:
            rows = s.scalars(sa.select(ReviewItem).where(ReviewItem.round_id == self.round_id))
            return {r.image_id: r for r in rows}

    def item(self, item_id: int) -> ReviewItem:
        with session_scope(self.engine) as s:
            return s.get(ReviewItem, item_id)

    def item_of_image(self, k: int) -> ReviewItem:
        """The item of the k-th image of the fixture."""
        return self.items()[int(self.image_ids[k])]

    def labels(self, k: int) -> np.ndarray:
        with session_scope(self.engine) as s:
            return V.labels_for_image(s, int(self.image_ids[k]), 0).grasp_ids

    def reviews(self, item_id: int | None = None) -> list[Review]:
        with session_scope(self.engine) as s:
            stmt = sa.select(Review).order_by(Review.id)
            if item_id is not None:
                stmt = stmt.where(Review.item_id == item_id)
            return list(s.scalars(stmt))

    def set_round_state(self, state: RoundState) -> None:
        with session_scope(self.engine) as s:
            s.get(Round, self.round_id).state = state

    def decide(self, item_id: int, who: int, *, version: int | None = None, **kwargs):
        if version is None:
            version = self.item(item_id).version
        kwargs.setdefault("decision", "true_negative")
        kwargs.setdefault("seconds_taken", 5.0)
        kwargs.setdefault("now", T0)
        return self.run(review.decide, item_id, who, item_version=version, **kwargs)

    def claim(self, who: int, *, at: datetime = T0, lease: float = LEASE):
        return self.run(review.claim_next, self.round_id, who, lease_seconds=lease, now=at)


@pytest.fixture
def world(migrated_engine) -> World:
    """A dataset at version 0 (14 images, 3 grasps each), a round in review with one
    prediction per image (3 predicted grasps), 12 of them flagged; three annotators, an admin."""
    rng = np.random.default_rng(3)
    n = len(FLAGGED_PRIORITY) + len(UNFLAGGED_PRIORITY)
    index = np.repeat(np.arange(n), GRASPS_PER_IMAGE)
    grasps = np.column_stack(
        [rng.uniform(100, 900, (len(index), 2)), rng.uniform(-90, 90, len(index))]
        + [rng.uniform(10, 60, (len(index), 2))]
    )
    with session_scope(migrated_engine) as s:
        dataset_id, image_ids = labelled_dataset(
            s,
            name="review-world",
            image_names=[f"{i}_obj{i % 4}" for i in range(n)],
            object_names=[f"obj{i % 4}" for i in range(n)],
            size=1024,
            owners=index,
            grasps=grasps,
        )
        users = {
            name: User(username=name, role=role, password_hash="x")
            for name, role in [
                ("ann1", UserRole.annotator),
                ("ann2", UserRole.annotator),
                ("ann3", UserRole.annotator),
                ("boss", UserRole.admin),
            ]
        }
        s.add_all(users.values())
        rnd = Round(dataset_id=dataset_id, base_version=0, state=RoundState.reviewing)
        s.add(rnd)
        s.flush()
        for k, priority in enumerate(FLAGGED_PRIORITY + UNFLAGGED_PRIORITY):
            predicted = np.column_stack(
                [rng.uniform(100, 900, (PREDICTIONS_PER_IMAGE, 5)), np.linspace(0.9, 0.5, 3)]
            )
            s.add(
                Prediction(
                    round_id=rnd.id,
                    image_id=int(image_ids[k]),
                    grasps=predicted.tolist(),
                    best_iou=0.05,
                    flagged=k < len(FLAGGED_PRIORITY),
                    priority=priority,
                )
            )
        s.flush()
        ids = {name: u.id for name, u in users.items()}
        round_id = rnd.id
    return World(
        engine=migrated_engine,
        dataset_id=dataset_id,
        round_id=round_id,
        image_ids=np.asarray(image_ids),
        ann1=ids["ann1"],
        ann2=ids["ann2"],
        ann3=ids["ann3"],
        admin=ids["boss"],
    )


@pytest.fixture
def queue(world) -> World:
    """The world with its review items created (single review)."""
    assert world.run(review.create_items, world.round_id) == len(FLAGGED_PRIORITY)
    return world


def _expected_order(world: World) -> list[int]:
    """Item ids in the order the queue must hand them out: priority desc, then id."""
    items = world.items()
    return [it.id for it in sorted(items.values(), key=lambda it: (-it.priority, it.id))]


# --- items --------------------------------------------------------------------------------


def test_items_come_from_flagged_predictions_with_their_priority_once(world):
    assert world.run(review.create_items, world.round_id) == 12
    assert world.run(review.create_items, world.round_id) == 0  # idempotent
    items = world.items()
    flagged = world.image_ids[: len(FLAGGED_PRIORITY)]
    assert sorted(items) == sorted(flagged.tolist())
    for k, image_id in enumerate(flagged):
        it = items[int(image_id)]
        assert it.priority == FLAGGED_PRIORITY[k]
        assert (it.state, it.version, it.required_reviews) == (ReviewItemState.pending, 1, 1)
        assert it.lease_owner_id is None and it.prediction_id is not None
    world.set_round_state(RoundState.done)
    with pytest.raises(Conflict, match="done"):
        world.run(review.create_items, world.round_id)
    with pytest.raises(NotFound):
        world.run(review.create_items, world.round_id + 99)


def test_double_review_fraction_is_deterministic_by_seed(world):
    created = world.run(review.create_items, world.round_id, double_review_fraction=0.5, seed=11)
    assert created == 12
    items = world.items()
    doubled = sorted(i for i, it in items.items() if it.required_reviews == 2)
    flagged = world.image_ids[:12]
    mask = review.double_review_mask(flagged, fraction=0.5, seed=11)
    assert doubled == sorted(flagged[mask].tolist()) and len(doubled) == 6
    # The choice depends on the set of ids and the seed, not on their order.
    shuffled = flagged[::-1]
    np.testing.assert_array_equal(
        shuffled[review.double_review_mask(shuffled, fraction=0.5, seed=11)].tolist(),
        sorted(doubled, reverse=True),
    )
    many = np.arange(1, 2001)
    picks = [set(many[review.double_review_mask(many, fraction=0.1, seed=s)]) for s in (1, 2)]
    assert len(picks[0]) == len(picks[1]) == 200 and picks[0] != picks[1]
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        review.double_review_mask(many, fraction=1.5)


# --- claims and leases ---------------------------------------------------------------------


def test_claims_follow_priority_then_id(queue):
    got = []
    while (item := queue.claim(queue.ann1)) is not None:
        assert item.state == ReviewItemState.leased and item.lease_owner_id == queue.ann1
        assert item.lease_expires_at is not None
        got.append(item.id)
        queue.decide(item.id, queue.ann1)
    assert got == _expected_order(queue)


def test_claims_are_exclusive_and_idempotent(queue):
    first = queue.claim(queue.ann1)
    again = queue.claim(queue.ann1, at=T0 + timedelta(seconds=30))
    assert again.id == first.id
    assert again.version == first.version  # a reload changes nothing but the lease
    assert again.lease_expires_at == T0 + timedelta(seconds=30 + LEASE)
    # Others each get a different item, in queue order.
    b, c = (queue.claim(u) for u in (queue.ann2, queue.ann3))
    assert [first.id, b.id, c.id] == _expected_order(queue)[:3]


def test_expired_lease_returns_the_item_to_the_pool(queue):
    mine = queue.claim(queue.ann1)
    later = T0 + timedelta(seconds=LEASE + 1)
    taken = queue.claim(queue.ann2, at=later)
    assert taken.id == mine.id and taken.lease_owner_id == queue.ann2
    assert taken.version == mine.version + 1
    # The first annotator lost it: no heartbeat, no decision on the old version.
    with pytest.raises(Conflict, match="another annotator"):
        queue.run(review.heartbeat, mine.id, queue.ann1, now=later)
    with pytest.raises(Conflict, match="changed since version"):
        queue.decide(mine.id, queue.ann1, version=mine.version, now=later)
    assert queue.decide(taken.id, queue.ann2, now=later).annotator_id == queue.ann2
    # A decision on an expired lease that nobody took over still lands.
    slow = queue.claim(queue.ann3, at=later)
    late = later + timedelta(seconds=LEASE * 3)
    rev = queue.decide(slow.id, queue.ann3, version=slow.version, now=late)
    assert rev.item_version == slow.version
    assert queue.item(slow.id).state == ReviewItemState.decided


def test_sweep_expires_leases_without_bumping_versions(queue):
    a = queue.claim(queue.ann1)
    b = queue.claim(queue.ann2, at=T0 + timedelta(seconds=30))
    swept = queue.run(review.expire_leases, round_id=queue.round_id, now=T0 + timedelta(seconds=61))
    assert swept == 1
    after_a, after_b = queue.item(a.id), queue.item(b.id)
    assert (after_a.state, after_a.lease_owner_id, after_a.version) == (
        ReviewItemState.pending,
        None,
        a.version,
    )
    assert after_b.state == ReviewItemState.leased and after_b.lease_owner_id == queue.ann2


def test_heartbeat_extends_the_lease(queue):
    mine = queue.claim(queue.ann1)
    beat = queue.run(
        review.heartbeat, mine.id, queue.ann1, lease_seconds=LEASE, now=T0 + timedelta(seconds=50)
    )
    assert beat.lease_expires_at == T0 + timedelta(seconds=50 + LEASE)
    assert beat.version == mine.version
    # Past the first lease but inside the extended one: the item is still taken.
    other = queue.claim(queue.ann2, at=T0 + timedelta(seconds=100))
    assert other.id != mine.id
    with pytest.raises(Conflict, match="holds no lease|another annotator"):
        queue.run(review.heartbeat, mine.id, queue.ann3, now=T0)


def test_release_returns_the_item_and_skip_puts_it_last_for_the_skipper(queue):
    order = _expected_order(queue)
    first = queue.claim(queue.ann1)
    released = queue.run(review.release, first.id, queue.ann1)
    assert released.state == ReviewItemState.pending and released.lease_owner_id is None
    assert released.version == first.version + 1
    with pytest.raises(Conflict):
        queue.run(review.release, first.id, queue.ann1)

    again = queue.claim(queue.ann1)
    assert again.id == order[0]
    queue.run(review.skip, again.id, queue.ann1)
    # The skipper gets the next item; anyone else still gets the skipped one first.
    assert queue.claim(queue.ann1).id == order[1]
    assert queue.claim(queue.ann2).id == order[0]
    queue.run(review.release, order[0], queue.ann2)
    queue.decide(order[1], queue.ann1)
    seen = []
    while (item := queue.claim(queue.ann1)) is not None:
        seen.append(item.id)
        queue.decide(item.id, queue.ann1)
    assert seen == order[2:] + [order[0]]  # the skipped item comes back when nothing else is


def test_claims_need_a_round_in_review(queue):
    queue.set_round_state(RoundState.applying)
    with pytest.raises(Conflict, match="already applied"):
        queue.claim(queue.ann1)
    with pytest.raises(NotFound):
        queue.run(review.claim_next, queue.round_id + 99, queue.ann1)
    with pytest.raises(InvalidInput, match="lease_seconds"):
        queue.run(review.claim_next, queue.round_id, queue.ann1, lease_seconds=0)


# --- decisions -------------------------------------------------------------------------------


def test_decision_records_the_review_and_bumps_the_version(queue):
    item = queue.claim(queue.ann1)
    rev = queue.decide(
        item.id,
        queue.ann1,
        decision="missing_label",
        accepted_predictions=[0, 2],
        seconds_taken=12.5,
    )
    assert (rev.decision, rev.accepted_prediction_indices, rev.seconds_taken) == (
        "missing_label",
        [0, 2],
        12.5,
    )
    assert rev.item_version == item.version and not rev.superseded and not rev.adjudication
    after = queue.item(item.id)
    assert after.state == ReviewItemState.decided and after.version == item.version + 1
    assert after.lease_owner_id is None and after.lease_expires_at is None
    with pytest.raises(Conflict, match="11 pending"):
        queue.run(review.final_decisions, queue.round_id, require_complete=True)
    (final,) = queue.run(review.final_decisions, queue.round_id)
    assert (final.item_id, final.review_id, final.accepted_prediction_indices) == (
        item.id,
        rev.id,
        (0, 2),
    )


def test_review_pace_is_the_teams_median_and_turns_hours_into_items(queue):
    from regrasp.refine.review.items import DEFAULT_REVIEW_SECONDS, budget_items, review_pace

    assert queue.run(review_pace, queue.dataset_id) is None  # nothing reviewed yet
    for who, seconds in ((queue.ann1, 10.0), (queue.ann2, 30.0), (queue.ann3, 14.0)):
        item = queue.claim(who)
        queue.decide(item.id, who, seconds_taken=seconds)
    item = queue.claim(queue.ann1)
    queue.decide(item.id, queue.ann1, seconds_taken=0.0)  # no time recorded: not counted
    assert queue.run(review_pace, queue.dataset_id) == 14.0
    # One hour at 14 s a decision is 257 items; the smaller of two budgets wins.
    assert budget_items(None, 1.0, 14.0) == 257
    assert budget_items(100, 1.0, 14.0) == 100 and budget_items(500, 1.0, 14.0) == 257
    assert budget_items(None, 1.0, None) == int(3600 // DEFAULT_REVIEW_SECONDS)
    assert budget_items(None, 0.001, 14.0) == 1  # a budget always leaves one item
    assert budget_items(40, None, 14.0) == 40 and budget_items(None, None, None) is None


def test_stale_or_foreign_decisions_are_refused_and_write_nothing(queue):
    item = queue.claim(queue.ann1)
    with pytest.raises(Conflict, match="changed since version"):
        queue.decide(item.id, queue.ann1, version=item.version - 1)
    assert queue.reviews() == [] and queue.item(item.id).version == item.version
    queue.decide(item.id, queue.ann1, version=item.version)
    # The same version twice (a double submit): the second is stale, never an overwrite.
    with pytest.raises(Conflict, match="changed since version"):
        queue.decide(item.id, queue.ann1, version=item.version, decision="annotation_error")
    assert [r.decision for r in queue.reviews()] == ["true_negative"]
    # An item someone else holds, or one already decided, is not anyone else's to decide.
    other = queue.claim(queue.ann1)
    with pytest.raises(Conflict, match="leased to another"):
        queue.decide(other.id, queue.ann2, version=other.version)
    with pytest.raises(Conflict, match="already decided"):
        queue.decide(item.id, queue.ann2)


def _fix_all(world: World, k: int) -> dict:
    return {"decision": "fix", "removed_grasp_ids": world.labels(k).tolist()}


#: Decisions that must be refused (keyword arguments for `decide`, the error's message).
INVALID = [
    (lambda w: {"decision": "looks_fine"}, "unknown decision"),
    (lambda w: {"decision": "missing_label"}, "at least one accepted prediction"),
    (
        lambda w: {
            "decision": "missing_label",
            "accepted_predictions": [0],
            "removed_grasp_ids": w.labels(0)[:1].tolist(),
        },
        "removes nothing",
    ),
    (lambda w: {"accepted_predictions": [1]}, "carries no accepted or removed"),
    (lambda w: {"decision": "annotation_error", "removed_grasp_ids": [1]}, "carries no"),
    (lambda w: {"decision": "fix"}, "at least one removed rectangle"),
    (
        lambda w: {"decision": "missing_label", "accepted_predictions": [PREDICTIONS_PER_IMAGE]},
        "do not exist",
    ),
    (lambda w: {"decision": "missing_label", "accepted_predictions": [0, 0]}, "duplicates"),
    (lambda w: {"decision": "missing_label", "accepted_predictions": [-1]}, ">= 0"),
    (lambda w: {"decision": "missing_label", "accepted_predictions": [0.0]}, "integers"),
    (
        lambda w: {"decision": "fix", "removed_grasp_ids": w.labels(5)[:1].tolist()},
        "are not labels of image",
    ),
    (lambda w: _fix_all(w, 0), "annotation_error instead"),
    (lambda w: {"seconds_taken": -1.0}, "seconds_taken"),
    (lambda w: {"seconds_taken": float("nan")}, "seconds_taken"),
]


def test_invalid_decisions_are_refused_and_write_nothing(queue):
    item = queue.item_of_image(0)  # the best item: the one a claim hands out first
    claimed = queue.claim(queue.ann1)
    assert claimed.id == item.id
    for make_kwargs, message in INVALID:
        with pytest.raises(InvalidInput, match=message):
            queue.decide(item.id, queue.ann1, **make_kwargs(queue))
        after = queue.item(item.id)
        assert queue.reviews() == []
        assert (after.version, after.state, after.lease_owner_id) == (
            claimed.version,
            ReviewItemState.leased,
            queue.ann1,
        )


def test_fix_removes_some_labels_and_may_add_predictions(queue):
    item = queue.item_of_image(0)
    labels = queue.labels(0)
    rev = queue.decide(
        item.id,
        queue.ann1,
        decision="fix",
        removed_grasp_ids=labels[:2].tolist(),
        accepted_predictions=[1],
    )
    assert rev.removed_grasp_ids == labels[:2].tolist() and rev.accepted_prediction_indices == [1]
    # Removing every label is fine when a prediction replaces them.
    other = queue.item_of_image(1)
    queue.decide(other.id, queue.ann1, accepted_predictions=[0], **_fix_all(queue, 1))


def test_change_and_undo_keep_the_history(queue):
    item = queue.claim(queue.ann1)
    first = queue.decide(item.id, queue.ann1)
    changed = queue.run(
        review.change_decision,
        item.id,
        queue.ann1,
        item_version=item.version + 1,
        decision="annotation_error",
        seconds_taken=3.0,
        now=T0,
    )
    assert changed.decision == "annotation_error"
    with pytest.raises(NotFound, match="no standing decision"):
        queue.run(
            review.change_decision,
            item.id,
            queue.ann2,
            item_version=item.version + 2,
            decision="true_negative",
            seconds_taken=1.0,
        )
    # `decide` on one's own decided item is a change too.
    third = queue.decide(item.id, queue.ann1, decision="missing_label", accepted_predictions=[2])
    later = T0 + timedelta(minutes=5)
    back = queue.run(review.undo_last, queue.ann1, queue.round_id, lease_seconds=LEASE, now=later)
    assert back.id == item.id and back.state == ReviewItemState.leased
    assert back.lease_owner_id == queue.ann1
    assert back.lease_expires_at == later + timedelta(seconds=LEASE)
    hist = queue.run(review.history, item.id)
    assert [r.id for r in hist] == [first.id, changed.id, third.id]
    assert [r.decision for r in hist] == ["true_negative", "annotation_error", "missing_label"]
    assert all(r.superseded for r in hist)
    assert queue.run(review.final_decisions, queue.round_id) == []
    # The item is the annotator's again: their next claim returns it, and they redo it.
    assert queue.claim(queue.ann1, at=later).id == item.id
    final = queue.decide(item.id, queue.ann1, now=later)
    (decision,) = queue.run(review.final_decisions, queue.round_id)
    assert (decision.item_id, decision.review_id, decision.decision) == (
        item.id,
        final.id,
        "true_negative",
    )
    assert len(queue.reviews(item.id)) == 4


def test_undo_takes_the_latest_decision_and_stops_at_nothing(queue):
    a = queue.claim(queue.ann1)
    queue.decide(a.id, queue.ann1)
    b = queue.claim(queue.ann1)
    queue.decide(b.id, queue.ann1)
    assert queue.run(review.undo_last, queue.ann1, queue.round_id, now=T0).id == b.id
    queue.run(review.release, b.id, queue.ann1)
    assert queue.run(review.undo_last, queue.ann1, queue.round_id, now=T0).id == a.id
    queue.run(review.release, a.id, queue.ann1)
    with pytest.raises(NotFound, match="no decision to undo"):
        queue.run(review.undo_last, queue.ann1, queue.round_id, now=T0)


def test_undo_is_refused_while_someone_else_holds_the_item(queue):
    item = queue.item_of_image(0)
    with session_scope(queue.engine) as s:  # make it a double-review item
        s.get(ReviewItem, item.id).required_reviews = 2
    queue.decide(item.id, queue.ann1)
    taken = queue.claim(queue.ann2)
    assert taken.id == item.id
    with pytest.raises(Conflict, match="another annotator"):
        queue.run(review.undo_last, queue.ann1, queue.round_id, now=T0)
    assert [r.superseded for r in queue.reviews(item.id)] == [False]


def test_no_change_once_the_round_is_applied(queue):
    item = queue.claim(queue.ann1)
    queue.decide(item.id, queue.ann1)
    queue.set_round_state(RoundState.applying)
    with pytest.raises(Conflict, match="already applied"):
        queue.decide(item.id, queue.ann1, decision="annotation_error")
    with pytest.raises(Conflict, match="already applied"):
        queue.run(review.undo_last, queue.ann1, queue.round_id, now=T0)
    assert [r.superseded for r in queue.reviews()] == [False]


# --- confirmations the round asks for ---------------------------------------------------------


def _ask(world: World, config: dict, quality: dict[int, float]) -> None:
    """Set the round's options and the stored score of the k-th images."""
    with session_scope(world.engine) as s:
        s.get(Round, world.round_id).config = config
        for k, q in quality.items():
            s.execute(
                sa.update(Prediction)
                .where(
                    Prediction.round_id == world.round_id,
                    Prediction.image_id == int(world.image_ids[k]),
                )
                .values(quality={"quality": q, "kind": "wrong_action"})
            )


def test_a_keep_the_score_is_sure_of_waits_for_a_second_annotator(queue):
    _ask(queue, {"confirm_keeps": 0.9}, {0: 0.05, 1: 0.5})
    sure, unsure, unscored = (queue.item_of_image(k) for k in (0, 1, 2))
    for item in (sure, unsure, unscored):
        queue.decide(item.id, queue.ann1)
    # Kept against a sure score: one slip must not keep a wrong image out of later rounds.
    assert (queue.item(sure.id).state, queue.item(sure.id).required_reviews) == (
        ReviewItemState.pending,
        2,
    )
    assert queue.item(unsure.id).state == ReviewItemState.decided
    assert queue.item(unscored.id).state == ReviewItemState.decided
    assert queue.claim(queue.ann1).id not in {sure.id}  # never the same annotator twice
    queue.decide(sure.id, queue.ann2, decision="annotation_error")
    assert queue.item(sure.id).state == ReviewItemState.adjudication
    # A change needs no confirmation unless the round asks for it.
    other = queue.item_of_image(3)
    _ask(queue, {"confirm_keeps": 0.9}, {3: 0.05})
    queue.decide(other.id, queue.ann1, decision="annotation_error")
    assert queue.item(other.id).state == ReviewItemState.decided


def test_confirm_changes_asks_a_second_annotator_for_every_change_but_not_a_keep(queue):
    _ask(queue, {"confirm_changes": True}, {0: 0.05})
    changed, kept = queue.item_of_image(0), queue.item_of_image(1)
    queue.decide(changed.id, queue.ann1, decision="missing_label", accepted_predictions=[0])
    queue.decide(kept.id, queue.ann1)
    assert queue.item(changed.id).state == ReviewItemState.pending
    assert queue.item(kept.id).state == ReviewItemState.decided
    queue.decide(changed.id, queue.ann2, decision="missing_label", accepted_predictions=[0])
    assert queue.item(changed.id).state == ReviewItemState.decided


def test_an_out_of_range_confirm_keeps_is_refused():
    from regrasp.refine.rounds.config import RoundConfig

    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            RoundConfig(confirm_keeps=bad)


# --- double review and adjudication ---------------------------------------------------------


@pytest.fixture
def doubled(world) -> World:
    """Every flagged item needs two reviews."""
    world.run(review.create_items, world.round_id, double_review_fraction=1.0)
    return world


def test_second_review_goes_to_another_annotator(doubled):
    first = doubled.claim(doubled.ann1)
    doubled.decide(first.id, doubled.ann1)
    assert doubled.item(first.id).state == ReviewItemState.pending
    again = doubled.claim(doubled.ann1)
    assert again.id != first.id  # never the same annotator twice
    assert doubled.claim(doubled.ann2).id == first.id
    doubled.decide(first.id, doubled.ann2)
    assert doubled.item(first.id).state == ReviewItemState.decided
    (final,) = doubled.run(review.final_decisions, doubled.round_id)
    assert final.reviewer_ids == (doubled.ann1, doubled.ann2) and not final.adjudicated


def test_disagreement_goes_to_an_admin_who_settles_it(doubled):
    item = doubled.item_of_image(0)
    doubled.decide(item.id, doubled.ann1)
    doubled.decide(item.id, doubled.ann2, decision="missing_label", accepted_predictions=[0])
    waiting = doubled.item(item.id)
    assert waiting.state == ReviewItemState.adjudication
    # An annotator's claim never hands out an item awaiting an admin.
    assert doubled.claim(doubled.ann3).id != item.id
    (case,) = doubled.run(review.adjudication_queue, doubled.round_id)
    assert case.item.id == item.id
    assert [(r.annotator_id, r.decision) for r in case.reviews] == [
        (doubled.ann1, "true_negative"),
        (doubled.ann2, "missing_label"),
    ]

    def settle(who, version, **kwargs):
        return doubled.run(
            review.resolve,
            item.id,
            who,
            item_version=version,
            seconds_taken=30.0,
            now=T0,
            **kwargs,
        )

    with pytest.raises(PermissionDenied):
        settle(doubled.ann3, waiting.version, decision="true_negative")
    with pytest.raises(Conflict, match="changed since"):
        settle(doubled.admin, waiting.version - 1, decision="true_negative")
    with pytest.raises(Conflict, match="awaits adjudication"):
        doubled.decide(item.id, doubled.ann3)
    verdict = settle(
        doubled.admin, waiting.version, decision="missing_label", accepted_predictions=[0, 1]
    )
    assert verdict.adjudication and doubled.item(item.id).state == ReviewItemState.decided
    assert doubled.run(review.adjudication_queue, doubled.round_id) == []
    # Annotators can no longer change an item an admin settled.
    with pytest.raises(Conflict, match="resolved by an admin"):
        doubled.decide(item.id, doubled.ann1, decision="annotation_error")

    (final,) = doubled.run(review.final_decisions, doubled.round_id)
    assert (final.review_id, final.reviewer_id, final.adjudicated) == (
        verdict.id,
        doubled.admin,
        True,
    )
    assert final.reviewer_ids == (doubled.ann1, doubled.ann2, doubled.admin)
    with session_scope(doubled.engine) as s:
        predicted = np.asarray(s.get(Prediction, item.prediction_id).grasps)[:, :5]
    np.testing.assert_array_equal(final.accepted_grasps, predicted[[0, 1]])

    # The admin may withdraw their resolution: the item waits for adjudication again.
    back = doubled.run(review.undo_last, doubled.admin, doubled.round_id, now=T0)
    assert back.state == ReviewItemState.adjudication and back.lease_owner_id is None


def test_agreement_needs_the_same_rectangles_too(doubled):
    item = doubled.item_of_image(0)
    doubled.decide(item.id, doubled.ann1, decision="missing_label", accepted_predictions=[0])
    doubled.decide(item.id, doubled.ann2, decision="missing_label", accepted_predictions=[1])
    assert doubled.item(item.id).state == ReviewItemState.adjudication
    # The first reviewer changes their mind to match: the item is decided.
    doubled.decide(item.id, doubled.ann1, decision="missing_label", accepted_predictions=[1])
    assert doubled.item(item.id).state == ReviewItemState.decided


# --- agreement and statistics ----------------------------------------------------------------


def test_cohens_kappa_matches_hand_computed_examples():
    # Two raters, two kinds, 10 items: 4 + 3 agreements, 2 + 1 disagreements.
    # p_o = 7/10; marginals (6, 4) and (5, 5): p_e = .6 * .5 + .4 * .5 = .5; kappa = .4.
    first = ["tn"] * 4 + ["ml"] * 3 + ["tn"] * 2 + ["ml"]
    second = ["tn"] * 4 + ["ml"] * 3 + ["ml"] * 2 + ["tn"]
    assert review.cohens_kappa(first, second) == pytest.approx(0.4)
    # Three kinds, 15 items; joint counts [[5, 1, 0], [2, 3, 1], [0, 1, 2]]:
    # p_o = 10/15, p_e = (6*7 + 6*5 + 3*3) / 225 = 81/225; kappa = (2/3 - 9/25) / (16/25) = 23/48.
    joint = np.array([[5, 1, 0], [2, 3, 1], [0, 1, 2]])
    a = np.repeat(np.repeat(np.arange(3), 3), joint.reshape(-1))
    b = np.repeat(np.tile(np.arange(3), 3), joint.reshape(-1))
    assert review.cohens_kappa(a, b) == pytest.approx(23 / 48)
    assert review.cohens_kappa(b, a) == pytest.approx(23 / 48)
    assert review.cohens_kappa(a, a) == pytest.approx(1.0)
    assert review.cohens_kappa([1, 1], [1, 1]) is None  # chance agreement is 1
    assert review.cohens_kappa([], []) is None
    with pytest.raises(InvalidInput):
        review.cohens_kappa([1, 2], [1])
    with pytest.raises(InvalidInput, match="outside"):
        review.cohens_kappa([1, 5], [1, 1], labels=[0, 1, 2])


def test_round_stats(doubled):
    """10 double-review items with the kappa example's decisions (kappa 0.4), 3 of them in
    adjudication, one settled by the admin; two single-review items: one leased, one pending."""
    w = doubled
    items = [w.item_of_image(k) for k in range(12)]
    with session_scope(w.engine) as s:
        for it in items[10:]:
            s.get(ReviewItem, it.id).required_reviews = 1
    tn = {"decision": "true_negative"}
    ml = {"decision": "missing_label", "accepted_predictions": [0]}
    pairs = [(tn, tn)] * 4 + [(ml, ml)] * 3 + [(tn, ml)] * 2 + [(ml, tn)]
    for it, (d1, _) in zip(items[:10], pairs, strict=True):
        w.decide(it.id, w.ann1, seconds_taken=10.0, **d1)
    for it, (_, d2) in zip(items[:10], pairs, strict=True):
        w.decide(it.id, w.ann2, seconds_taken=20.0, **d2)
    settled = w.item(items[7].id)
    w.run(
        review.resolve,
        settled.id,
        w.admin,
        item_version=settled.version,
        decision="annotation_error",
        seconds_taken=40.0,
    )
    # A change leaves a superseded review: counted as a change, not as a decision.
    w.decide(items[11].id, w.ann3, decision="annotation_error", seconds_taken=1000.0)
    w.run(review.undo_last, w.ann3, w.round_id, now=T0)
    w.run(review.release, items[11].id, w.ann3)
    leased = w.claim(w.ann3)
    assert leased.id in {items[10].id, items[11].id}

    st = w.run(review.round_stats, w.round_id, now=T0)
    assert (st.items, st.decided, st.adjudication, st.leased, st.pending) == (12, 8, 2, 1, 1)
    assert (st.double_review_items, st.double_reviewed, st.reviews) == (10, 10, 21)
    assert st.decision_mix == {
        "true_negative": 4,
        "missing_label": 3,
        "annotation_error": 1,
        "fix": 0,
    }
    assert st.mean_seconds == pytest.approx((10 * 10 + 10 * 20 + 40) / 21)
    assert st.median_seconds == pytest.approx(20.0)
    assert st.agreement == pytest.approx(0.7) and st.kappa == pytest.approx(0.4)

    by = {a.annotator_id: a for a in st.annotators}
    one, two, three, boss = by[w.ann1], by[w.ann2], by[w.ann3], by[w.admin]
    assert (one.username, one.decided, one.changed, one.leased, one.in_adjudication) == (
        "ann1",
        10,
        0,
        0,
        2,
    )
    assert one.decision_mix == {
        "true_negative": 6,
        "missing_label": 4,
        "annotation_error": 0,
        "fix": 0,
    }
    assert (one.mean_seconds, one.median_seconds) == (10.0, 10.0)
    assert one.kappa == pytest.approx(0.4) and two.kappa == pytest.approx(0.4)
    assert two.agreement == pytest.approx(0.7) and two.double_reviewed == 10
    assert (three.decided, three.changed, three.leased, three.kappa) == (0, 1, 1, None)
    assert (boss.resolved, boss.decided, boss.mean_seconds) == (1, 0, 40.0)

    # An expired lease counts as pending, as the queue treats it.
    late = w.run(review.round_stats, w.round_id, now=T0 + timedelta(seconds=LEASE + 1))
    assert (late.leased, late.pending) == (0, 2)


# --- drawn grasps -------------------------------------------------------------------------

#: Two grasps a reviewer draws on image 0 (1024² px), and the same two as another hand
#: draws them (a few pixels and degrees off).
DRAWN = [[300.0, 400.0, 30.0, 40.0, 12.0], [600.0, 610.0, -60.0, 50.0, 15.0]]
REDRAWN = [[603.0, 608.0, -55.0, 47.0, 14.0], [298.0, 402.0, 33.0, 42.0, 12.0]]


def test_a_drawn_grasp_is_a_missing_label_on_its_own_and_is_kept(queue):
    item = queue.item_of_image(0)
    rev = queue.decide(item.id, queue.ann1, decision="missing_label", drawn_grasps=DRAWN)
    assert rev.drawn_grasps == DRAWN and rev.accepted_prediction_indices == []
    (final,) = queue.run(review.final_decisions, queue.round_id)
    np.testing.assert_array_equal(final.drawn_grasps, DRAWN)
    assert final.accepted_grasps.shape == (0, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decision": "true_negative", "drawn_grasps": DRAWN}, "draws none"),
        ({"decision": "annotation_error", "drawn_grasps": DRAWN}, "draws none"),
        ({"drawn_grasps": [[1.0, 2.0, 3.0, 4.0]]}, r"shape \(N, 5\)"),
        ({"drawn_grasps": [[1.0, 2.0, 3.0, 0.0, 4.0]]}, "positive"),
        ({"drawn_grasps": [[1.0, float("nan"), 3.0, 4.0, 4.0]]}, "NaN"),
        ({"drawn_grasps": [["a", 2.0, 3.0, 4.0, 4.0]]}, "rows of numbers"),
        ({"drawn_grasps": "1,2,3,4,5"}, "rows"),
        ({"drawn_grasps": [[1030.0, 20.0, 0.0, 10.0, 5.0]]}, "outside the 1024x1024 image"),
        ({"drawn_grasps": [[20.0, -1.0, 0.0, 10.0, 5.0]]}, "outside"),
        ({"drawn_grasps": [DRAWN[0]] * (review.MAX_DRAWN + 1)}, "at most"),
    ],
)
def test_bad_drawn_grasps_are_refused_and_write_nothing(queue, kwargs, message):
    item = queue.item_of_image(0)
    before = queue.item(item.id).version
    kwargs = {"decision": "missing_label", **kwargs}
    with pytest.raises(InvalidInput, match=message):
        queue.decide(item.id, queue.ann1, **kwargs)
    assert queue.reviews() == [] and queue.item(item.id).version == before


def test_two_reviewers_agree_on_drawn_grasps_that_match_not_on_pixels(doubled):
    agreed, differ, fewer = (doubled.item_of_image(k) for k in range(3))
    for item in (agreed, differ, fewer):
        doubled.decide(item.id, doubled.ann1, decision="missing_label", drawn_grasps=DRAWN)
    doubled.decide(agreed.id, doubled.ann2, decision="missing_label", drawn_grasps=REDRAWN)
    moved = [[g[0] + 60.0, *g[1:]] for g in REDRAWN]  # a different place on the object
    doubled.decide(differ.id, doubled.ann2, decision="missing_label", drawn_grasps=moved)
    doubled.decide(fewer.id, doubled.ann2, decision="missing_label", drawn_grasps=DRAWN[:1])
    assert doubled.item(agreed.id).state == ReviewItemState.decided
    assert doubled.item(differ.id).state == ReviewItemState.adjudication
    assert doubled.item(fewer.id).state == ReviewItemState.adjudication
    # The newest agreeing review's drawing is the one applied.
    final = {f.item_id: f for f in doubled.run(review.final_decisions, doubled.round_id)}
    np.testing.assert_array_equal(final[agreed.id].drawn_grasps, REDRAWN)
