"""The review queue: claim the next item, keep it with heartbeats, release or skip it.

A claim leases the round's highest-priority waiting item (ties by id) to one annotator
for `lease_seconds`. Nothing sweeps leases for correctness: an item whose lease expired
simply counts as waiting again, so the next claim takes it (`expire_leases` exists to
tidy the table and the statistics, not because the queue needs it).

How two claimers never get the same item:

- PostgreSQL: the candidate row is selected `FOR UPDATE SKIP LOCKED`, so concurrent
  claimers each lock a different row and none waits on another's;
- SQLite: one guarded `UPDATE … WHERE id = (best candidate) AND <still waiting> RETURNING
  id`; SQLite serialises writers, and the guard makes a second claimer of the same row
  update nothing. Every function here starts with its write, so on SQLite the write lock
  is taken before anything is read (a read-then-write transaction in WAL mode can fail
  with "database is locked" when another writer commits in between).

Rules, in the order a claim applies them:

1. An annotator who holds a live lease in the round gets that item back (idempotent: a
   page reload does not lose the item), with the lease renewed.
2. Otherwise the best waiting item they have not reviewed yet and have not skipped; then,
   when nothing else is left, the best one they skipped.
3. Double review: an item with `required_reviews=2` goes back to the pool after its first
   review and is leased to a *different* annotator for the second one (never to the one
   who already reviewed it). Leases are therefore always one per item; the two reviews
   are sequential, and blind as far as the queue is concerned.

`version` (the item's optimistic-concurrency token) is bumped by claims, releases, skips
and decisions; heartbeats and lease expiry do not bump it, so a decision made on an
expired lease that nobody has taken over since still lands (see `regrasp.refine.review.decisions`).

Times are timezone-aware UTC from the caller's clock (`now=` exists for tests). Every
function works in the caller's session and leaves the commit to it.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from regrasp.platform.clock import as_utc, now_or
from regrasp.platform.errors import Conflict
from regrasp.platform.store.db.tables import (
    POOL_STATES_SQL,
    ReviewItem,
    ReviewItemState,
    ReviewSkip,
)
from regrasp.refine.review._common import (
    DEFAULT_LEASE_SECONDS,
    check_id,
    get_item,
    get_round,
    in_pool,
    insert_ignoring_duplicates,
    is_postgres,
    lease_duration,
    live_lease,
    require_open,
    reviewed_by,
    round_is_open,
)

__all__ = ["claim_next", "expire_leases", "heartbeat", "peek", "release", "skip"]


def claim_next(
    session: Session,
    round_id: int,
    annotator_id: int,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    now: datetime | None = None,
) -> ReviewItem | None:
    """Lease the next item of the round to the annotator; None when nothing is left for them.

    Returns the item the annotator already holds (lease renewed) when there is one.
    NotFound if the round does not exist, Conflict if it is not in review.
    """
    check_id(round_id, "round_id")
    check_id(annotator_id, "annotator_id")
    now = now_or(now)
    expires = now + lease_duration(lease_seconds)
    params = {"p_round": round_id, "p_annotator": annotator_id, "p_now": now, "p_expires": expires}
    if is_postgres(session):
        # One statement per try: renew a held lease, else lease the best waiting item.
        for skipped in (False, True):
            rows = _claimed(session, _pg_claim(skipped), params)
            if rows:
                return min(rows, key=lambda item: item.id)
    else:
        rows = _claimed(session, _RENEW_HELD, params)
        if rows:
            return min(rows, key=lambda item: item.id)
        for skipped in (False, True):
            rows = _claimed(session, _sqlite_lease(skipped), params)
            if rows:
                return rows[0]
    require_open(get_round(session, round_id))
    return None


def heartbeat(
    session: Session,
    item_id: int,
    annotator_id: int,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    now: datetime | None = None,
) -> ReviewItem:
    """Extend the annotator's lease to `now + lease_seconds`; returns the item.

    A lease that expired but that nobody took over since is revived. Conflict when the
    annotator does not hold the item (someone else claimed it, it was released or
    decided) or the round left review; NotFound for an unknown item.
    """
    check_id(item_id, "item_id")
    check_id(annotator_id, "annotator_id")
    now = now_or(now)
    expires = now + lease_duration(lease_seconds)
    done = session.execute(
        sa.update(ReviewItem)
        .where(
            ReviewItem.id == item_id,
            ReviewItem.state == ReviewItemState.leased,
            ReviewItem.lease_owner_id == annotator_id,
            round_is_open(ReviewItem.round_id),
        )
        .values(lease_expires_at=expires)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        _explain_not_held(session, item_id, annotator_id)
    return get_item(session, item_id)


def release(session: Session, item_id: int, annotator_id: int) -> ReviewItem:
    """Give the item back to the pool (state pending); returns it. Conflict if not held."""
    check_id(item_id, "item_id")
    check_id(annotator_id, "annotator_id")
    done = session.execute(
        sa.update(ReviewItem)
        .where(
            ReviewItem.id == item_id,
            ReviewItem.state == ReviewItemState.leased,
            ReviewItem.lease_owner_id == annotator_id,
        )
        .values(
            state=ReviewItemState.pending,
            lease_owner_id=None,
            lease_expires_at=None,
            version=ReviewItem.version + 1,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        _explain_not_held(session, item_id, annotator_id, check_round=False)
    return get_item(session, item_id)


def skip(
    session: Session, item_id: int, annotator_id: int, *, now: datetime | None = None
) -> ReviewItem:
    """Release the item and remember that this annotator passed on it.

    The item returns to the pool for everyone at its own priority; for this annotator it
    comes after every item they have not skipped, so "skip" shows them the next item and
    the skipped one only when nothing else is left. Others are unaffected. Conflict if
    the annotator does not hold the item.
    """
    item = release(session, item_id, annotator_id)
    insert_ignoring_duplicates(
        session,
        ReviewSkip,
        [{"item_id": item_id, "annotator_id": annotator_id, "skipped_at": now_or(now)}],
        ("item_id", "annotator_id"),
    )
    return item


def expire_leases(
    session: Session, *, round_id: int | None = None, now: datetime | None = None
) -> int:
    """Return every item whose lease expired by `now` to pending; the number returned.

    Claims already treat expired leases as free, so this is housekeeping (a periodic task
    may call it); it does not bump item versions, exactly like a lease that lapses
    without a sweep.
    """
    now = now_or(now)
    where = [ReviewItem.state == ReviewItemState.leased, ReviewItem.lease_expires_at <= now]
    if round_id is not None:
        where.append(ReviewItem.round_id == check_id(round_id, "round_id"))
    return session.execute(
        sa.update(ReviewItem)
        .where(*where)
        .values(state=ReviewItemState.pending, lease_owner_id=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount


# --- private ----------------------------------------------------------------------------


def peek(
    session: Session,
    round_id: int,
    annotator_id: int,
    *,
    limit: int = 3,
    now: datetime | None = None,
) -> list[ReviewItem]:
    """The items the annotator's next claims would most likely get, in claim order.

    Read-only: nothing is leased, so a concurrent claim may take one of them first and
    the real claim decides. The review UI uses it to download and draw the next images
    while the annotator is still deciding.
    """
    now = now_or(now)
    skip_row = sa.exists().where(
        ReviewSkip.item_id == ReviewItem.id, ReviewSkip.annotator_id == annotator_id
    )
    stmt = (
        sa.select(ReviewItem)
        .where(
            ReviewItem.round_id == round_id,
            in_pool(ReviewItem, now),
            ~reviewed_by(ReviewItem, annotator_id),
        )
        .order_by(sa.case((skip_row, 1), else_=0), ReviewItem.priority.desc(), ReviewItem.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


# The claim statements, built once (bound parameters: round, annotator, now and
# expires, as p_*). The pick-next query walks `ix_review_items_pick` in claim order: it repeats
# the index's predicate verbatim (`POOL_STATES_SQL`) so PostgreSQL can use the partial
# index, then keeps the waiting rows among them (pending, or leased with a lapsed lease).

_ROUND = sa.bindparam("p_round", type_=sa.Integer)
_ANNOTATOR = sa.bindparam("p_annotator", type_=sa.Integer)
_NOW = sa.bindparam("p_now", type_=ReviewItem.lease_expires_at.type)
_EXPIRES = sa.bindparam("p_expires", type_=ReviewItem.lease_expires_at.type)

_RENEW_HELD = (
    sa.update(ReviewItem)
    .where(
        ReviewItem.round_id == _ROUND,
        ReviewItem.lease_owner_id == _ANNOTATOR,
        live_lease(ReviewItem, _NOW),
        round_is_open(_ROUND),
    )
    .values(lease_expires_at=_EXPIRES)
    .returning(*ReviewItem.__table__.c)
)

_LEASE_VALUES = {
    "state": ReviewItemState.leased,
    "lease_owner_id": _ANNOTATOR,
    "lease_expires_at": _EXPIRES,
    "version": ReviewItem.version + 1,
}


def _best_waiting(cand: Any, *, skipped: bool) -> sa.Select[Any]:
    """The id of the round's best waiting item for the annotator (skipped by them or not)."""
    skip_row = sa.exists().where(
        ReviewSkip.item_id == cand.id, ReviewSkip.annotator_id == _ANNOTATOR
    )
    return (
        sa.select(cand.id)
        .where(
            cand.round_id == _ROUND,
            sa.text(f"cand.{POOL_STATES_SQL}"),
            in_pool(cand, _NOW),
            ~reviewed_by(cand, _ANNOTATOR),
            skip_row if skipped else ~skip_row,
            round_is_open(_ROUND),
        )
        .order_by(cand.priority.desc(), cand.id)
        .limit(1)
    )


@functools.cache
def _pg_claim(skipped: bool) -> sa.Select[Any]:
    """PostgreSQL: renew the annotator's live lease, or else lock (SKIP LOCKED) and lease
    the best waiting item; one statement that returns the item's row either way."""
    cand = aliased(ReviewItem, name="cand")
    held = _RENEW_HELD.cte("held")
    best = (
        _best_waiting(cand, skipped=skipped)
        .where(~sa.exists(sa.select(held.c.id)))
        .with_for_update(skip_locked=True, of=cand)
        .cte("best")
    )
    picked = (
        sa.update(ReviewItem)
        .where(ReviewItem.id == best.c.id)
        .values(_LEASE_VALUES)
        .returning(*ReviewItem.__table__.c)
        .cte("picked")
    )
    return sa.select(held).union_all(sa.select(picked))


@functools.cache
def _sqlite_lease(skipped: bool) -> sa.Update:
    """SQLite: one guarded UPDATE of the best waiting item. The guard repeats the pool
    condition: SQLite serialises writers, so it holds at the moment of the write, and a
    second claimer of the row updates nothing."""
    cand = aliased(ReviewItem, name="cand")
    return (
        sa.update(ReviewItem)
        .where(
            ReviewItem.id == _best_waiting(cand, skipped=skipped).scalar_subquery(),
            in_pool(ReviewItem, _NOW),
        )
        .values(_LEASE_VALUES)
        .returning(*ReviewItem.__table__.c)
    )


def _claimed(session: Session, stmt: sa.Executable, params: dict[str, Any]) -> list[ReviewItem]:
    """Run a claim statement; the items it returned, as fresh ORM objects (no extra query)."""
    items = list(session.scalars(_as_items(stmt), params))
    for item in items:
        set_committed_value(item, "lease_expires_at", as_utc(item.lease_expires_at))
    return items


@functools.cache
def _as_items(stmt: sa.Executable) -> sa.Select[Any]:
    """`stmt`'s returned rows as fresh `ReviewItem` objects; built once per statement, so
    its cache key is computed once, not on every claim."""
    return sa.select(ReviewItem).from_statement(stmt).execution_options(populate_existing=True)


def _explain_not_held(
    session: Session, item_id: int, annotator_id: int, *, check_round: bool = True
) -> None:
    """Raise the error that says why the annotator's lease write matched nothing."""
    item = get_item(session, item_id)
    if check_round:
        require_open(get_round(session, item.round_id))
    if item.state == ReviewItemState.leased and item.lease_owner_id != annotator_id:
        raise Conflict(f"review item {item_id} is now leased to another annotator")
    raise Conflict(
        f"annotator {annotator_id} holds no lease on review item {item_id} ({item.state})"
    )
