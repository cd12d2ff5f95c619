"""Review items of a round: created from its flagged predictions, read back as final decisions.

`create_items` turns every flagged prediction of a round into one queue entry with the
prediction's priority (items most likely to be label errors first); it is idempotent, the
unique `(round_id, image_id)` key making a second call (or two concurrent ones) add only
what is missing. `final_decisions` is what the apply step reads: one decision per decided
item, the admin's resolution where there is one, otherwise the annotators' (agreeing)
decision, with the accepted predicted grasps already looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.platform.errors import Conflict
from regrasp.platform.store.db.tables import (
    Prediction,
    Review,
    ReviewDecision,
    ReviewItem,
    ReviewItemState,
    Round,
    RoundState,
)
from regrasp.refine.review._common import (
    APPLIED_STATES,
    check_id,
    get_round,
    insert_ignoring_duplicates,
    is_postgres,
)
from regrasp.refine.review.adjudication import double_review_mask

__all__ = [
    "DEFAULT_REVIEW_SECONDS",
    "FinalDecision",
    "budget_items",
    "confirmed_images",
    "create_items",
    "final_decisions",
    "queue_items",
    "review_pace",
]

#: Seconds per review decision assumed for a dataset that has no recorded review yet
#: (a careful look at an image and its ranked predictions; the lab's own median replaces
#: it after its first reviewed round).
DEFAULT_REVIEW_SECONDS = 20.0

#: Recorded decisions the pace is measured on (the latest ones: a team speeds up).
_PACE_WINDOW = 500

#: Rounds that can no longer receive items.
_CLOSED = APPLIED_STATES | {RoundState.failed, RoundState.cancelled}


@dataclass(frozen=True)
class FinalDecision:
    """The decision that counts for one image of a round.

    accepted_grasps: (K, 5) float64 `(x, y, theta, opening, jaw)` in pixels and degrees,
    the predicted grasps at `accepted_prediction_indices` (K may be 0); drawn_grasps: (D, 5)
    the rectangles the reviewer drew (D may be 0). `review_id` and
    `reviewer_id` name the review that counts (the admin's for an adjudicated item);
    `reviewer_ids` every standing reviewer of the item, annotators first.
    """

    item_id: int
    image_id: int
    prediction_id: int | None
    decision: ReviewDecision
    accepted_prediction_indices: tuple[int, ...]
    accepted_grasps: np.ndarray
    removed_grasp_ids: tuple[int, ...]
    drawn_grasps: np.ndarray
    review_id: int
    reviewer_id: int
    reviewer_ids: tuple[int, ...]
    adjudicated: bool


def create_items(
    session: Session,
    round_id: int,
    *,
    double_review_fraction: float = 0.0,
    seed: int = 0,
    budget: int | None = None,
) -> int:
    """Create the review items of the round's flagged predictions; returns how many were new.

    With a `budget`, only that many flagged images get an item: the highest priorities
    (ties by image id), so a round's review time goes where the errors likeliest are. A
    fraction `double_review_fraction` of them (chosen by `double_review_mask` over all
    flagged images, so the same ones on every call) need two reviews. Items that already
    exist are left as they are. NotFound for an unknown round; Conflict for an applied,
    failed or cancelled one.
    """
    rnd = get_round(session, check_id(round_id, "round_id"))
    if rnd.state in _CLOSED:
        raise Conflict(f"round {round_id} is {rnd.state}; it takes no new review items")
    rows = session.execute(
        sa.select(Prediction.id, Prediction.image_id, Prediction.priority)
        .where(Prediction.round_id == round_id, Prediction.flagged.is_(True))
        .order_by(Prediction.image_id)
    ).all()
    if not rows:
        return 0
    pred_ids, image_ids, priorities = (np.asarray(c) for c in zip(*rows, strict=True))
    if budget is not None and budget < len(rows):
        keep = np.sort(np.lexsort((image_ids, -priorities))[:budget])
        pred_ids, image_ids, priorities = pred_ids[keep], image_ids[keep], priorities[keep]
    double = double_review_mask(
        image_ids.astype(np.int64), fraction=double_review_fraction, seed=seed
    )
    return queue_items(
        session,
        round_id,
        image_ids=image_ids,
        prediction_ids=pred_ids,
        required_reviews=np.where(double, 2, 1),
        priorities=priorities,
    )


def confirmed_images(session: Session, dataset_id: int, version: int) -> np.ndarray:
    """Images of `version` that a reviewer judged true negative in an earlier applied round
    of the dataset and whose labels have not changed since: (N,) int64, sorted.

    A round flags what its model disagrees with, and a model trained on the same labels
    disagrees with the same images again: without this, most of a second round's budget
    goes to images someone already looked at and kept (half of round 1's items in the
    efficacy bench). An image whose labels changed since (a fix, an accepted prediction, a
    rollback) is not confirmed any more.
    """
    from regrasp.data import versions

    rounds = session.execute(
        sa.select(Round.id, Round.base_version).where(
            Round.dataset_id == dataset_id,
            Round.state == RoundState.done,
            Round.base_version <= version,
        )
    ).all()
    confirmed: list[np.ndarray] = []
    for round_id, base in rounds:
        kept = np.asarray(
            [
                f.image_id
                for f in final_decisions(session, round_id)
                if f.decision == ReviewDecision.true_negative
            ],
            dtype=np.int64,
        )
        if not kept.size:
            continue
        d = versions.diff(session, dataset_id, base, version)
        changed = np.concatenate(
            [d.added.image_ids, d.removed.image_ids, d.removed_image_ids]
        ).astype(np.int64)
        confirmed.append(np.setdiff1d(kept, changed))
    if not confirmed:
        return np.zeros(0, dtype=np.int64)
    present = versions.images_at(session, dataset_id, version)
    return np.intersect1d(np.concatenate(confirmed), present)


def review_pace(session: Session, dataset_id: int) -> float | None:
    """Median seconds per review decision recorded on the dataset's earlier rounds, or None.

    The latest `_PACE_WINDOW` annotator reviews with a positive time count (adjudications
    and decisions without a time do not): the figure a review budget in hours is turned
    into items with, so "two hours" means what this team does in two hours.
    """
    seconds = session.scalars(
        sa.select(Review.seconds_taken)
        .join(ReviewItem, ReviewItem.id == Review.item_id)
        .join(Round, Round.id == ReviewItem.round_id)
        .where(
            Round.dataset_id == dataset_id,
            Review.adjudication.is_(False),
            Review.seconds_taken > 0,
        )
        .order_by(Review.id.desc())
        .limit(_PACE_WINDOW)
    ).all()
    return float(np.median(np.asarray(seconds, dtype=float))) if seconds else None


def budget_items(
    items: int | None, hours: float | None, seconds_per_item: float | None
) -> int | None:
    """The round's item budget from a budget in items and/or in review hours (the smaller).

    `seconds_per_item`: the team's pace (`review_pace`), `DEFAULT_REVIEW_SECONDS` when
    unknown. None: no budget. At least one item whenever any budget is set.
    """
    if hours is None:
        return items
    pace = seconds_per_item if seconds_per_item and seconds_per_item > 0 else DEFAULT_REVIEW_SECONDS
    from_hours = max(1, int(hours * 3600.0 // pace))
    return from_hours if items is None else min(items, from_hours)


def queue_items(
    session: Session,
    round_id: int,
    *,
    image_ids: np.ndarray,
    prediction_ids: np.ndarray,
    required_reviews: np.ndarray,
    priorities: np.ndarray,
    audit_top: bool = False,
) -> int:
    """Add pending review items for these images (aligned arrays); returns how many were new.

    The one writer of review items: items that already exist for an image are left as
    they are, so every caller (flagged images, audits of unflagged ones) is idempotent.
    `audit_top` marks them as the audit's census of the highest-ranked unflagged images.
    """
    before = _count_items(session, round_id)
    insert_ignoring_duplicates(
        session,
        ReviewItem,
        [
            {
                "round_id": round_id,
                "image_id": int(image_ids[i]),
                "prediction_id": int(prediction_ids[i]),
                "state": ReviewItemState.pending,
                "version": 1,
                "required_reviews": int(required_reviews[i]),
                "priority": float(priorities[i]),
                "audit_top": audit_top,
            }
            for i in range(len(image_ids))
        ],
        ("round_id", "image_id"),
    )
    added = _count_items(session, round_id) - before
    if added and is_postgres(session):
        # Fresh statistics now, not when autovacuum gets round to it: a new round can
        # double the table, and a claim planned on stale counts sorted every row.
        session.execute(sa.text("ANALYZE review_items"))
    return added


def _count_items(session: Session, round_id: int) -> int:
    count = sa.select(sa.func.count(ReviewItem.id)).where(ReviewItem.round_id == round_id)
    return int(session.scalar(count) or 0)


def final_decisions(
    session: Session, round_id: int, *, require_complete: bool = False
) -> list[FinalDecision]:
    """The decision that counts for every decided item of the round, by item id.

    Items still pending, leased or awaiting adjudication are left out, or, with
    `require_complete`, make the call raise Conflict with their counts. Read this after
    the round's state left `reviewing` (committed): decisions hold the round row FOR SHARE
    while they write, so none can land after that.
    """
    get_round(session, check_id(round_id, "round_id"))
    if require_complete:
        open_counts = dict(
            session.execute(
                sa.select(ReviewItem.state, sa.func.count())
                .where(
                    ReviewItem.round_id == round_id,
                    ReviewItem.state != ReviewItemState.decided,
                )
                .group_by(ReviewItem.state)
            ).all()
        )
        if open_counts:
            summary = ", ".join(f"{n} {s}" for s, n in sorted(open_counts.items()))
            raise Conflict(f"round {round_id} still has undecided review items: {summary}")
    rows = session.execute(
        sa.select(ReviewItem, Review, Prediction.grasps)
        .join(Review, Review.item_id == ReviewItem.id)
        .outerjoin(Prediction, Prediction.id == ReviewItem.prediction_id)
        .where(
            ReviewItem.round_id == round_id,
            ReviewItem.state == ReviewItemState.decided,
            Review.superseded.is_(False),
        )
        # Per item: the admin's resolution first, then the newest review.
        .order_by(ReviewItem.id, Review.adjudication.desc(), Review.id.desc())
    ).all()
    out: list[FinalDecision] = []
    i = 0
    while i < len(rows):
        item, review, predicted = rows[i]
        j = i
        while j < len(rows) and rows[j][0].id == item.id:
            j += 1
        group = [r[1] for r in rows[i:j]]
        reviewers = [r.annotator_id for r in sorted(group, key=lambda r: (r.adjudication, r.id))]
        out.append(_final(item, review, predicted, tuple(reviewers)))
        i = j
    return out


# --- private ----------------------------------------------------------------------------


def _final(
    item: ReviewItem, review: Review, predicted: list[Any] | None, reviewers: tuple[int, ...]
) -> FinalDecision:
    indices = tuple(int(k) for k in review.accepted_prediction_indices)
    # Rows are [x, y, theta, opening, jaw, quality, ...]; the grasp is the first five.
    table = np.asarray(predicted or [], dtype=np.float64)
    table = table.reshape(len(table), -1) if table.size else np.empty((0, 5))
    return FinalDecision(
        item_id=item.id,
        image_id=item.image_id,
        prediction_id=item.prediction_id,
        decision=ReviewDecision(review.decision),
        accepted_prediction_indices=indices,
        accepted_grasps=np.ascontiguousarray(table[list(indices), :5]),
        removed_grasp_ids=tuple(int(g) for g in review.removed_grasp_ids),
        drawn_grasps=np.asarray(review.drawn_grasps or [], dtype=np.float64).reshape(-1, 5),
        review_id=review.id,
        reviewer_id=review.annotator_id,
        reviewer_ids=reviewers,
        adjudicated=review.adjudication,
    )
