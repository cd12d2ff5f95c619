"""Pieces shared by the review modules: clock, input checks, SQL predicates, round locks.

Private to `regrasp.refine.review`; the public API is re-exported by the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from numbers import Integral
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from regrasp.grasp.metrics import SUCCESS_IOU, iou
from regrasp.platform.clock import as_utc
from regrasp.platform.errors import Conflict, InvalidInput, NotFound
from regrasp.platform.store.db.tables import Review, ReviewItem, ReviewItemState, Round, RoundState

#: Lease length when the caller gives none, in seconds: long enough to look at an image
#: and its rectangles, short enough that an abandoned tab frees its item soon.
DEFAULT_LEASE_SECONDS = 300.0

#: Round states in which the queue may change (claims, decisions, undo).
OPEN_STATE = RoundState.reviewing
APPLIED_STATES = frozenset({RoundState.applying, RoundState.done})


def lease_duration(seconds: float) -> timedelta:
    """A lease length in seconds (positive, finite) as a timedelta."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidInput(f"lease_seconds must be a number, got {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(f"lease_seconds must be positive and finite, got {seconds!r}")
    return timedelta(seconds=float(seconds))


def check_id(value: Any, name: str) -> int:
    """A positive integer id (database ids start at 1)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def int_list(values: Iterable[Any], name: str, *, minimum: int) -> list[int]:
    """Distinct integers >= minimum, in the order given (bools and floats refused)."""
    if isinstance(values, str | bytes):
        raise InvalidInput(f"{name} must be a list of integers")
    out: list[int] = []
    for v in values:
        if hasattr(v, "item") and not isinstance(v, bool):  # numpy scalars
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidInput(f"{name} must contain integers, got {v!r}")
        if v < minimum:
            raise InvalidInput(f"{name} must be >= {minimum}, got {v}")
        out.append(v)
    if len(set(out)) != len(out):
        raise InvalidInput(f"{name} contains duplicates")
    return out


# --- SQL predicates ----------------------------------------------------------------------


def live_lease(item: Any, now: datetime) -> sa.ColumnElement[bool]:
    """The item is leased and its lease has not expired at `now`."""
    return sa.and_(item.state == ReviewItemState.leased, item.lease_expires_at > now)


def in_pool(item: Any, now: datetime) -> sa.ColumnElement[bool]:
    """The item waits for a review: pending, or leased with an expired lease."""
    return sa.or_(
        item.state == ReviewItemState.pending,
        sa.and_(item.state == ReviewItemState.leased, item.lease_expires_at <= now),
    )


def reviewed_by(item: Any, annotator_id: int) -> sa.Exists:
    """The annotator has a standing (not superseded) review of the item, not a resolution."""
    return sa.exists().where(
        Review.item_id == item.id,
        Review.annotator_id == annotator_id,
        Review.superseded.is_(False),
        Review.adjudication.is_(False),
    )


def round_is_open(round_id: int | sa.ColumnElement[int]) -> sa.Exists:
    """The round (an id, or a column correlated to the enclosing statement) is in review."""
    return sa.exists().where(Round.id == round_id, Round.state == OPEN_STATE)


# --- rounds ------------------------------------------------------------------------------


#: The round row by id (bound parameter `p_round_id`), built once; FOR SHARE variant too.
_ROUND_BY_ID = (
    sa.select(Round)
    .where(Round.id == sa.bindparam("p_round_id", type_=sa.Integer))
    .execution_options(populate_existing=True)
)
_ROUND_BY_ID_SHARED = _ROUND_BY_ID.with_for_update(read=True)


def get_round(session: Session, round_id: int, *, share_lock: bool = False) -> Round:
    """The round row; with `share_lock`, locked FOR SHARE on PostgreSQL.

    Decisions hold the share lock until they commit, so the apply step's update of the
    round's state waits for decisions in flight, and no decision lands after it.
    """
    stmt = _ROUND_BY_ID_SHARED if share_lock else _ROUND_BY_ID
    rnd = session.scalars(stmt, {"p_round_id": round_id}).one_or_none()
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    return rnd


def require_open(rnd: Round) -> None:
    """Conflict unless the round is in review (applied rounds are frozen)."""
    require_open_state(rnd.id, rnd.state)


def require_open_state(round_id: int, state: RoundState) -> None:
    """`require_open` for a round known by its id and state (no ORM object at hand)."""
    if state in APPLIED_STATES:
        raise Conflict(f"round {round_id} is already applied ({state}); its reviews are final")
    if state != OPEN_STATE:
        raise Conflict(f"round {round_id} is not in review (state {state})")


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def get_item(session: Session, item_id: int) -> ReviewItem:
    """The item as stored now (fresh from the database); NotFound if absent."""
    item = session.get(ReviewItem, item_id, populate_existing=True)
    if item is None:
        raise NotFound(f"review item {item_id} does not exist")
    # Callers serialise the lease time: hand it out aware on SQLite too, without making
    # the row dirty.
    set_committed_value(item, "lease_expires_at", as_utc(item.lease_expires_at))
    return item


def standing_reviews(session: Session, item_id: int) -> list[Review]:
    """The item's reviews that are not superseded, oldest first."""
    return list(
        session.scalars(
            sa.select(Review)
            .where(Review.item_id == item_id, Review.superseded.is_(False))
            .order_by(Review.id)
        )
    )


def insert_ignoring_duplicates(
    session: Session, table: Any, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert rows, skipping those whose `keys` already exist (safe under concurrency)."""
    if not rows:
        return
    dialect = postgresql if is_postgres(session) else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    session.execute(stmt, list(rows))


def reviews_agree(reviews: Sequence[Review]) -> bool:
    """Whether annotators' reviews of one item say the same thing.

    Same decision kind, and for the kinds that carry rectangles the same ones: the same
    accepted predictions (missing label, fix), the same removed grasps (fix) and drawn
    grasps that match one to one (`drawn_match`). The apply step needs one set of
    rectangles per image, so two reviewers who both say "missing label" but accept
    different predictions disagree as much as a kind mismatch does. Agreement
    statistics (Cohen's kappa) look at the kind only.
    """
    first = reviews[0]
    return all(
        r.decision == first.decision
        and sorted(r.accepted_prediction_indices) == sorted(first.accepted_prediction_indices)
        and sorted(r.removed_grasp_ids) == sorted(first.removed_grasp_ids)
        and drawn_match(r.drawn_grasps or [], first.drawn_grasps or [])
        for r in reviews[1:]
    )


def drawn_match(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> bool:
    """Two people's drawn grasps are the same set: as many, and each of either matches
    one of the other under the rectangle metric (IoU > 0.25 within the 30° gate). Two
    hands never draw the same pixels; they draw the same grasp."""
    if len(a) != len(b):
        return False
    if not a:
        return True
    hit = iou(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)) > SUCCESS_IOU
    return bool(hit.any(axis=1).all() and hit.any(axis=0).all())
