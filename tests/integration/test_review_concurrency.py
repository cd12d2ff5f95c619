"""The review queue under concurrency: many annotators at once, and stale-version races.

Every thread has its own engine (its own connection), as separate orchestrator replicas
would. PostgreSQL is the deployment database and gets the full load; SQLite, the
embedded default, gets a smaller one to prove its guarded updates as well.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest
import sqlalchemy as sa

from regrasp.platform.errors import Conflict
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope
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

#: How long a test waits for its threads before it calls them stuck (a generous bound,
#: not a performance threshold).
JOIN_TIMEOUT_S = 120

KINDS = [
    {"decision": "true_negative"},
    {"decision": "missing_label", "accepted_predictions": [0]},
    {"decision": "annotation_error"},
]


def _world(url: str, *, items: int, annotators: int) -> tuple[int, list[int], list[int]]:
    """A round in review with `items` single-review items; returns (round, users, item ids)."""
    migrations.upgrade(url)
    engine = make_engine(url)
    rng = np.random.default_rng(5)
    try:
        with session_scope(engine) as s:
            grasps = np.column_stack([rng.uniform(50, 400, (items, 3)), np.full((items, 2), 20.0)])
            dataset_id, image_ids = labelled_dataset(
                s,
                name="busy",
                image_names=[f"{i}_o" for i in range(items)],
                object_names=["o"] * items,
                size=(640, 480),
                owners=np.arange(items),
                grasps=grasps,
            )
            users = [
                User(username=f"a{i}", role=UserRole.annotator, password_hash="x")
                for i in range(annotators)
            ]
            s.add_all(users)
            rnd = Round(dataset_id=dataset_id, base_version=0, state=RoundState.reviewing)
            s.add(rnd)
            s.flush()
            s.add_all(
                Prediction(
                    round_id=rnd.id,
                    image_id=int(image_id),
                    grasps=[[100.0, 100.0, 0.0, 40.0, 20.0, 0.9]],
                    best_iou=0.0,
                    flagged=True,
                    priority=float(p),
                )
                for image_id, p in zip(image_ids, rng.random(items), strict=True)
            )
            s.flush()
            assert review.create_items(s, rnd.id) == items
            item_ids = s.scalars(sa.select(ReviewItem.id).where(ReviewItem.round_id == rnd.id))
            return rnd.id, [u.id for u in users], sorted(item_ids)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("backend", "annotators", "items"), [("postgres", 20, 240), ("sqlite", 6, 60)]
)
def test_many_annotators_decide_every_item_exactly_once(request, backend, annotators, items):
    url = request.getfixturevalue(f"{backend}_url")
    round_id, users, item_ids = _world(url, items=items, annotators=annotators)
    claims: dict[int, list[int]] = {u: [] for u in users}
    decided: dict[int, list[tuple[int, int]]] = {u: [] for u in users}
    conflicts: list[Conflict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(annotators)
    # Everyone holds a lease before anyone decides, so the claims genuinely overlap
    # (on SQLite one thread could otherwise empty the queue before the others run).
    first_held = threading.Barrier(annotators)

    def annotate(uid: int) -> None:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        try:
            start.wait()
            while True:
                with session_scope(factory) as s:
                    item = review.claim_next(s, round_id, uid, lease_seconds=600)
                    got = None if item is None else (item.id, item.version)
                if got is None:
                    return
                claims[uid].append(got[0])
                if len(claims[uid]) == 1:
                    first_held.wait(JOIN_TIMEOUT_S)
                try:
                    with session_scope(factory) as s:
                        rev = review.decide(
                            s,
                            got[0],
                            uid,
                            item_version=got[1],
                            seconds_taken=1.0,
                            **KINDS[got[0] % len(KINDS)],
                        )
                        made = (got[0], rev.id)
                except Conflict as exc:
                    conflicts.append(exc)
                    continue
                decided[uid].append(made)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=annotate, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "annotator threads stuck"
    assert errors == [] and conflicts == []

    # Every item was leased once, to one annotator, and decided once by that annotator.
    all_claims = [i for c in claims.values() for i in c]
    assert sorted(all_claims) == item_ids
    made = {pair for d in decided.values() for pair in d}
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            rows = s.execute(sa.select(Review.item_id, Review.id, Review.annotator_id)).all()
            states = Counter(s.scalars(sa.select(ReviewItem.state)).all())
            stats = review.round_stats(s, round_id)
    finally:
        engine.dispose()
    assert {(r[0], r[1]) for r in rows} == made and len(rows) == items
    owner = {i: u for u, c in claims.items() for i in c}
    assert all(owner[item_id] == uid for item_id, _, uid in rows)
    assert states == {ReviewItemState.decided: items}
    assert (stats.decided, stats.pending, stats.leased, stats.reviews) == (items, 0, 0, items)
    assert sum(stats.decision_mix.values()) == items
    assert all(claims.values())  # the work was actually shared


def test_two_annotators_racing_on_one_version_one_wins(postgres_url):
    """Both load each item at the same version and submit together: one review, one 409."""
    round_id, (ann1, ann2), item_ids = _world(postgres_url, items=30, annotators=2)
    outcome: dict[int, dict[int, str]] = {i: {} for i in item_ids}
    errors: list[BaseException] = []
    together = threading.Barrier(2)

    def annotate(uid: int, decision: str) -> None:
        engine = make_engine(postgres_url)
        try:
            for item_id in item_ids:
                together.wait()
                try:
                    with session_scope(engine) as s:
                        review.decide(
                            s, item_id, uid, item_version=1, decision=decision, seconds_taken=2.0
                        )
                    outcome[item_id][uid] = "won"
                except Conflict:
                    outcome[item_id][uid] = "conflict"
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            errors.append(exc)
            together.abort()
        finally:
            engine.dispose()

    threads = [
        threading.Thread(target=annotate, args=(ann1, "true_negative")),
        threading.Thread(target=annotate, args=(ann2, "annotation_error")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    assert errors == []
    assert all(sorted(o.values()) == ["conflict", "won"] for o in outcome.values())

    engine = make_engine(postgres_url)
    try:
        with session_scope(engine) as s:
            rows = s.execute(sa.select(Review.item_id, Review.annotator_id, Review.decision)).all()
    finally:
        engine.dispose()
    assert sorted(r[0] for r in rows) == item_ids  # one review per item, nothing overwritten
    for item_id, annotator_id, decision in rows:
        winner = next(u for u, o in outcome[item_id].items() if o == "won")
        assert annotator_id == winner
        assert decision == ("true_negative" if winner == ann1 else "annotation_error")


def test_a_decision_blocked_behind_another_on_the_same_version_gets_409(postgres_url):
    """The compare-and-swap itself, not the pre-read, stops the second writer.

    The first decision is written and left uncommitted; the second, made on the same
    version, passes every read and blocks on the row lock. Once the first commits, the
    second's swap re-reads the row, finds a newer version and matches nothing.
    """
    round_id, (ann1, ann2), (item_id, *_) = _world(postgres_url, items=2, annotators=2)
    first_engine, second_engine = make_engine(postgres_url), make_engine(postgres_url)
    result: list[object] = []

    def second() -> None:
        try:
            with session_scope(second_engine) as s:
                review.decide(
                    s, item_id, ann2, item_version=1, decision="annotation_error", seconds_taken=1.0
                )
            result.append("won")
        except BaseException as exc:  # noqa: BLE001 - inspected below
            result.append(exc)

    try:
        with session_scope(first_engine) as s1:
            review.decide(
                s1, item_id, ann1, item_version=1, decision="true_negative", seconds_taken=1.0
            )
            thread = threading.Thread(target=second)
            thread.start()
            _wait_for_lock_waiter(postgres_url)
        thread.join(JOIN_TIMEOUT_S)
        assert len(result) == 1 and isinstance(result[0], Conflict)
        assert "changed since version 1" in str(result[0])
        with session_scope(first_engine) as s:
            rows = s.execute(sa.select(Review.annotator_id, Review.decision)).all()
            item = s.get(ReviewItem, item_id)
            assert rows == [(ann1, "true_negative")]
            assert (item.state, item.version) == (ReviewItemState.decided, 2)
    finally:
        first_engine.dispose()
        second_engine.dispose()


def _wait_for_lock_waiter(url: str) -> None:
    """Return once another backend of this database waits for a row lock."""
    engine = make_engine(url)
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                waiting = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                    )
                ).scalar()
                conn.rollback()
                if waiting:
                    return
                time.sleep(0.02)
    finally:
        engine.dispose()
    pytest.fail("the second decision never waited for the first one's row lock")
