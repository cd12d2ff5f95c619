"""Double review: which items get two reviews, when they disagree, and the admin's word.

A configurable fraction of a round's items need two reviews (`required_reviews=2`),
chosen deterministically from the seed and the image ids, so recreating the items of a
round picks the same images. The two reviews come from two different annotators, one
after the other (see `regrasp.refine.review.queue`). When both are in and they agree (same
decision and the same rectangles, see `reviews_agree`) the item is decided; otherwise it
waits in `adjudication` until an admin resolves it with a final decision, recorded as the
admin's review with `adjudication=True` (an admin may later replace their resolution, the
old one is kept, superseded). Agreement between annotators is reported per round as
Cohen's kappa on the decision kind (`regrasp.refine.review.stats`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from numpy.typing import ArrayLike
from sqlalchemy.orm import Session

from regrasp.platform.errors import InvalidInput
from regrasp.platform.store.db.tables import Review, ReviewDecision, ReviewItem, ReviewItemState
from regrasp.refine.review._common import check_id, get_round, reviews_agree
from regrasp.refine.review.decisions import WriteMode, record_review

__all__ = [
    "AdjudicationCase",
    "adjudication_queue",
    "double_review_mask",
    "resolve",
    "reviews_agree",
]


@dataclass(frozen=True)
class AdjudicationCase:
    """An item awaiting an admin, with the annotators' standing reviews, oldest first."""

    item: ReviewItem
    reviews: tuple[Review, ...]


def resolve(
    session: Session,
    item_id: int,
    admin_id: int,
    *,
    item_version: int,
    decision: ReviewDecision | str,
    accepted_predictions: Iterable[int] = (),
    removed_grasp_ids: Iterable[int] = (),
    drawn_grasps: Iterable[Sequence[float]] = (),
    seconds_taken: float,
    now: datetime | None = None,
) -> Review:
    """Settle a disagreement with the admin's final decision; the item becomes `decided`.

    The decision is checked like any other (see `regrasp.refine.review.decisions`) and carries
    the item version it was made on. PermissionDenied for a user who is not an active
    admin; Conflict when the item is not awaiting adjudication (or was not resolved
    before, for a replacement), for a stale version or a round not in review.
    """
    return record_review(
        session,
        item_id,
        admin_id,
        mode=WriteMode.resolve,
        item_version=item_version,
        decision=decision,
        accepted_predictions=accepted_predictions,
        removed_grasp_ids=removed_grasp_ids,
        drawn_grasps=drawn_grasps,
        seconds_taken=seconds_taken,
        now=now,
    )


def adjudication_queue(session: Session, round_id: int) -> list[AdjudicationCase]:
    """The round's items awaiting an admin, best priority first, with their reviews."""
    get_round(session, check_id(round_id, "round_id"))
    items = list(
        session.scalars(
            sa.select(ReviewItem)
            .where(
                ReviewItem.round_id == round_id,
                ReviewItem.state == ReviewItemState.adjudication,
            )
            .order_by(ReviewItem.priority.desc(), ReviewItem.id)
        )
    )
    by_item: dict[int, list[Review]] = {item.id: [] for item in items}
    if items:
        rows = session.scalars(
            sa.select(Review)
            .where(
                Review.item_id.in_(list(by_item)),
                Review.superseded.is_(False),
                Review.adjudication.is_(False),
            )
            .order_by(Review.id)
        )
        for review in rows:
            by_item[review.item_id].append(review)
    return [AdjudicationCase(item=item, reviews=tuple(by_item[item.id])) for item in items]


def double_review_mask(image_ids: ArrayLike, *, fraction: float, seed: int = 0) -> np.ndarray:
    """Which images get two reviews: (N,) bool, `round(fraction * N)` of them set.

    image_ids: (N,) distinct ints. Each id is hashed with the seed (SplitMix64) and the
    ids with the smallest hashes are chosen, so the choice depends only on the seed and
    the set of ids, not on their order, and looks random across objects.
    """
    ids = np.asarray(image_ids)
    if ids.size and (ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer)):
        raise InvalidInput("image_ids must be a 1-D array of integer ids")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise InvalidInput(f"double_review_fraction must be a number, got {fraction!r}")
    if not 0.0 <= fraction <= 1.0:
        raise InvalidInput(f"double_review_fraction must lie in [0, 1], got {fraction}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInput(f"seed must be an integer, got {seed!r}")
    ids = ids.astype(np.int64).reshape(-1)
    n = len(ids)
    k = int(round(fraction * n))
    mask = np.zeros(n, dtype=bool)
    if k == 0:
        return mask
    salt = _splitmix64(np.array([seed & _MASK64], dtype=np.uint64))[0]
    keys = _splitmix64(ids.astype(np.uint64) ^ salt)
    order = np.lexsort((ids, keys))  # by hash, ties (never in practice) by id
    mask[order[:k]] = True
    return mask


# --- private ----------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on (N,) uint64: a fast, well-mixed bijection."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
