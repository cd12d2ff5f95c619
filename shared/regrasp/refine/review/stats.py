"""Review statistics per round and per annotator, and Cohen's kappa for their agreement.

Counts describe the queue at `now`: an item leased with an expired lease counts as
pending, exactly as the queue treats it. Reviews that count are the standing ones (not
superseded); the superseded ones are counted as changes. Agreement is measured on the
items that two annotators reviewed (double review), on the decision kind only, as
Cohen's kappa between the first and the second review of each item; per annotator, as
the kappa between their decision and the other reviewer's on the items they shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import ArrayLike
from sqlalchemy.orm import Session

from regrasp.platform.clock import now_or
from regrasp.platform.errors import InvalidInput
from regrasp.platform.store.db.tables import (
    Review,
    ReviewDecision,
    ReviewItem,
    ReviewItemState,
    User,
)
from regrasp.refine.review._common import check_id, get_round, in_pool, live_lease
from regrasp.refine.review.items import final_decisions

__all__ = ["AnnotatorStats", "RoundStats", "cohens_kappa", "round_stats"]

#: Decision kinds in a fixed order: their codes in the arrays below.
_KINDS = tuple(ReviewDecision)


@dataclass(frozen=True)
class AnnotatorStats:
    """One person's work in a round.

    `decided`: their standing reviews as an annotator; `resolved`: their standing admin
    resolutions; `changed`: their superseded reviews (changes and undos); `leased`: live
    leases they hold; `in_adjudication`: items they reviewed that now wait for an admin.
    `decision_mix` and the seconds cover all their standing reviews. `double_reviewed`
    items they reviewed with another annotator; `agreement` the fraction of those where
    both chose the same kind, `kappa` Cohen's kappa of theirs against the other's.
    """

    annotator_id: int
    username: str
    decided: int
    resolved: int
    changed: int
    leased: int
    in_adjudication: int
    decision_mix: dict[str, int]
    mean_seconds: float | None
    median_seconds: float | None
    double_reviewed: int
    agreement: float | None
    kappa: float | None


@dataclass(frozen=True)
class RoundStats:
    """A round's queue and its reviews.

    `pending` includes items whose lease expired; `leased` counts live leases only.
    `decision_mix` counts the final decisions of decided items (what applying the round
    would do); `reviews` and the seconds per decision cover all standing reviews.
    `double_review_items` need two reviews, `double_reviewed` have both; `agreement` and
    `kappa` compare the two reviews' kinds over the latter (None when undefined).
    """

    round_id: int
    items: int
    pending: int
    leased: int
    decided: int
    adjudication: int
    double_review_items: int
    reviews: int
    decision_mix: dict[str, int]
    mean_seconds: float | None
    median_seconds: float | None
    double_reviewed: int
    agreement: float | None
    kappa: float | None
    annotators: tuple[AnnotatorStats, ...]


def cohens_kappa(
    first: ArrayLike, second: ArrayLike, *, labels: Sequence[Any] | None = None
) -> float | None:
    """Cohen's kappa of two raters who labelled the same N items: (p_o − p_e) / (1 − p_e).

    first, second: (N,) labels (any comparable values; `labels` fixes the categories, and
    values outside it are refused). p_o is the observed agreement, p_e the agreement
    expected by chance from each rater's own label frequencies. Returns None when it is
    undefined: no items, or p_e = 1 (both raters used one and the same category only).
    """
    a = np.asarray(first).reshape(-1)
    b = np.asarray(second).reshape(-1)
    if len(a) != len(b):
        raise InvalidInput(f"two raters must label the same items: {len(a)} != {len(b)} labels")
    if len(a) == 0:
        return None
    cats = np.unique(np.concatenate([a, b])) if labels is None else np.asarray(labels)
    if labels is not None:
        unknown = np.setdiff1d(np.concatenate([a, b]), cats)
        if len(unknown):
            raise InvalidInput(f"labels outside the given categories: {unknown[:5].tolist()}")
        cats = np.unique(cats)
    k = len(cats)
    ia, ib = np.searchsorted(cats, a), np.searchsorted(cats, b)
    joint = np.bincount(ia * k + ib, minlength=k * k).reshape(k, k) / len(a)
    p_o = float(np.trace(joint))
    p_e = float(joint.sum(axis=1) @ joint.sum(axis=0))
    if np.isclose(p_e, 1.0):
        return None
    return (p_o - p_e) / (1.0 - p_e)


def round_stats(session: Session, round_id: int, *, now: datetime | None = None) -> RoundStats:
    """Counts, decision mix, seconds per decision and agreement of one round at `now`."""
    get_round(session, check_id(round_id, "round_id"))
    now = now_or(now)
    state = ReviewItem.state
    counts = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(in_pool(ReviewItem, now)),
            sa.func.count().filter(live_lease(ReviewItem, now)),
            sa.func.count().filter(state == ReviewItemState.decided),
            sa.func.count().filter(state == ReviewItemState.adjudication),
            sa.func.count().filter(ReviewItem.required_reviews >= 2),
        ).where(ReviewItem.round_id == round_id)
    ).one()
    leases = dict(
        session.execute(
            sa.select(ReviewItem.lease_owner_id, sa.func.count())
            .where(ReviewItem.round_id == round_id, live_lease(ReviewItem, now))
            .group_by(ReviewItem.lease_owner_id)
        ).all()
    )
    r = _review_arrays(session, round_id)
    standing = ~r["superseded"]
    votes = standing & ~r["adjudication"]
    pairs = _pairs(r, votes)
    finals = final_decisions(session, round_id)
    mix = _mix(np.asarray([_KINDS.index(f.decision) for f in finals], dtype=np.int64))
    mean_s, median_s = _seconds(r["seconds"][standing])

    people = sorted(set(r["annotator"].tolist()) | set(leases))
    names = dict(
        session.execute(sa.select(User.id, User.username).where(User.id.in_(people))).all()
    )
    annotators = tuple(
        _annotator(uid, names.get(uid, ""), r, standing, votes, pairs, int(leases.get(uid, 0)))
        for uid in people
    )
    first, second = pairs["first"], pairs["second"]
    return RoundStats(
        round_id=round_id,
        items=int(counts[0]),
        pending=int(counts[1]),
        leased=int(counts[2]),
        decided=int(counts[3]),
        adjudication=int(counts[4]),
        double_review_items=int(counts[5]),
        reviews=int(standing.sum()),
        decision_mix=mix,
        mean_seconds=mean_s,
        median_seconds=median_s,
        double_reviewed=len(first),
        agreement=float(np.mean(first == second)) if len(first) else None,
        kappa=cohens_kappa(first, second, labels=range(len(_KINDS))),
        annotators=annotators,
    )


# --- private ----------------------------------------------------------------------------


def _review_arrays(session: Session, round_id: int) -> dict[str, np.ndarray]:
    """Every review of the round as (R,) arrays, sorted by (item, review id)."""
    rows = session.execute(
        sa.select(
            Review.id,
            Review.item_id,
            Review.annotator_id,
            Review.decision,
            Review.seconds_taken,
            Review.adjudication,
            Review.superseded,
            ReviewItem.state,
        )
        .join(ReviewItem, ReviewItem.id == Review.item_id)
        .where(ReviewItem.round_id == round_id)
        .order_by(Review.item_id, Review.id)
    ).all()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    return {
        "id": np.asarray(cols[0], dtype=np.int64),
        "item": np.asarray(cols[1], dtype=np.int64),
        "annotator": np.asarray(cols[2], dtype=np.int64),
        "kind": np.asarray([_KINDS.index(ReviewDecision(d)) for d in cols[3]], dtype=np.int64),
        "seconds": np.asarray([np.nan if s is None else s for s in cols[4]], dtype=np.float64),
        "adjudication": np.asarray(cols[5], dtype=bool),
        "superseded": np.asarray(cols[6], dtype=bool),
        "in_adjudication": np.asarray(
            [s == ReviewItemState.adjudication for s in cols[7]], dtype=bool
        ),
    }


def _pairs(r: dict[str, np.ndarray], votes: np.ndarray) -> dict[str, np.ndarray]:
    """The first two annotator reviews of every item that has two: (P,) arrays each."""
    idx = np.flatnonzero(votes)  # already sorted by (item, id)
    items = r["item"][idx]
    _, start, count = np.unique(items, return_index=True, return_counts=True)
    both = start[count >= 2]
    a, b = idx[both], idx[both + 1]
    return {
        "first": r["kind"][a],
        "second": r["kind"][b],
        "first_by": r["annotator"][a],
        "second_by": r["annotator"][b],
    }


def _annotator(
    uid: int,
    name: str,
    r: dict[str, np.ndarray],
    standing: np.ndarray,
    votes: np.ndarray,
    pairs: dict[str, np.ndarray],
    leased: int,
) -> AnnotatorStats:
    mine = r["annotator"] == uid
    theirs = standing & mine
    as_first, as_second = pairs["first_by"] == uid, pairs["second_by"] == uid
    own = np.concatenate([pairs["first"][as_first], pairs["second"][as_second]])
    other = np.concatenate([pairs["second"][as_first], pairs["first"][as_second]])
    mean_s, median_s = _seconds(r["seconds"][theirs])
    return AnnotatorStats(
        annotator_id=int(uid),
        username=name,
        decided=int((votes & mine).sum()),
        resolved=int((theirs & r["adjudication"]).sum()),
        changed=int((r["superseded"] & mine).sum()),
        leased=leased,
        in_adjudication=int((votes & mine & r["in_adjudication"]).sum()),
        decision_mix=_mix(r["kind"][theirs]),
        mean_seconds=mean_s,
        median_seconds=median_s,
        double_reviewed=len(own),
        agreement=float(np.mean(own == other)) if len(own) else None,
        kappa=cohens_kappa(own, other, labels=range(len(_KINDS))),
    )


def _mix(kinds: np.ndarray) -> dict[str, int]:
    """Counts per decision kind, every kind present (zeros included)."""
    counts = np.bincount(kinds, minlength=len(_KINDS))
    return {k.value: int(n) for k, n in zip(_KINDS, counts, strict=True)}


def _seconds(values: np.ndarray) -> tuple[float | None, float | None]:
    """Mean and median of the recorded times (NaN = not recorded), None when none."""
    known = values[np.isfinite(values)]
    if not len(known):
        return None, None
    return float(np.mean(known)), float(np.median(known))
