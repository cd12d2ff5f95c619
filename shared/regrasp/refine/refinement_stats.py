"""Refinement statistics per round: label noise, review yield, and when to stop the loop.

The paper reports how many images each round flags and how the reviews split (its Figures
4 and 5). A lab running the loop every week also needs to know what the data still costs
it, and whether another round is worth a day of reviewing:

- **estimated label noise** — the share of the dataset whose labels are wrong or
  incomplete. Among the F flagged images of a round the reviewed share found to be label
  errors (missing label, annotation error or fix) is p_f. Flagging only looks where the
  model disagrees, so the U unflagged images are unknown; an optional **audit**
  (`add_audit_items`) reviews a small random sample of them, whose error share is p_u,
  and optionally first a *census* of the T unflagged images the flag ranks highest
  (all of them reviewed, error share p_t). Errors the flag missed gather just below its
  threshold and among images a reviewer kept in an earlier round, so a census reviews
  them first and they are fixed in the round (the efficacy bench's second setting: 43
  corrupted images found by a census of 25 and 25 at random, against 19 by 50 at
  random; docs/benchmarks.md), while the estimate stays unbiased: the strata are
  estimated apart. Then

      noise = (F · p_f + B · (p_f + p_n) / 2 + T · p_t + (U − T) · p_u) / (F + B + U)

  with 95 % Wilson intervals of p_f, p_t and p_u carried through as the bounds, where F
  are the flagged images reviewed and B those flagged past the round's review budget
  (they rank below every reviewed one and above the unflagged, so their share is
  bounded by p_u's low and p_f's high bound, and p_n is the next stratum's share: p_t
  with a census, p_u without). Census items not yet decided count as B does. Each bound
  adds up the strata's one-sided 97.5 % bounds, so it is conservative: it misses the
  truth only when some stratum's own bound does. An auditor reviews for completeness: a
  missing_label without an accepted prediction records grasps missing that no prediction
  shows. Without a random sample, the unflagged images outside the census are taken as
  clean: `noise` is then a lower bound (`noise_basis == "flagged_only"`) and has no
  upper bound.
- **yield per review hour** — label errors found (flagged and audited) per hour of
  review time (the `seconds_taken` of every review of the round, changed ones included:
  time spent is spent).
- **stopping suggestion** (`suggest_stop`) — the loop has converged when, from one round
  to the next, neither the flagged count nor the yield falls by at least `min_drop`
  (relative): the remaining flags are then mostly the model's own mistakes and each hour
  of review finds no fewer errors than before only because errors have become rare. A
  round that finds no label error at all is also a reason to stop.

An audit item is a review item whose prediction is not flagged (`audit_top` tells the
census from the sample); it is queued with priority 0 (after every flagged item) and
applied like any other decision, so an error an auditor finds is fixed too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.platform.errors import Conflict, InvalidInput, NotFound
from regrasp.platform.store.db.tables import (
    Prediction,
    Review,
    ReviewDecision,
    ReviewItem,
    Round,
    RoundState,
)

__all__ = [
    "LABEL_ERRORS",
    "RoundRefinement",
    "StopAdvice",
    "Stratum",
    "add_audit_items",
    "dataset_refinement",
    "item_strata",
    "round_refinement",
    "suggest_stop",
    "wilson_interval",
]

#: Decisions that say the labels were wrong (the paper's "false negatives" of the flag).
LABEL_ERRORS = frozenset(
    {ReviewDecision.missing_label, ReviewDecision.annotation_error, ReviewDecision.fix}
)
#: z of a two-sided 95 % interval.
_Z95 = 1.959963984540054
#: Where a review item comes from (`item_strata`): the flag's queue or the audit's census
#: or random sample; the noise estimate weighs each apart.
Stratum = Literal["flagged", "top", "sample"]
#: Rounds that never got (or will never get) predictions worth counting.
_SKIPPED = (RoundState.cancelled,)


@dataclass(frozen=True)
class RoundRefinement:
    """One round's refinement numbers (see the module docstring for the formulas).

    Shares are fractions in [0, 1] (None where nothing was decided); seconds and hours of
    review time; `decisions` / `audit_decisions` count final decisions by kind (the audit's
    census and sample together); `audited` counts every audit item, `audited_top` those
    of the census; `audit_error_*` is the random sample's share, `audit_top_error_*` the
    census's.
    """

    round_id: int
    base_version: int
    result_version: int | None
    state: str
    images: int
    flagged: int
    audited: int
    decided_flagged: int
    decided_audit: int
    decisions: dict[str, int]
    audit_decisions: dict[str, int]
    audited_top: int
    decided_audit_top: int
    true_negative_share: float | None
    false_negative_share: float | None
    label_errors_found: int
    flagged_error_rate: float | None
    flagged_error_interval: tuple[float, float] | None
    audit_error_rate: float | None
    audit_error_interval: tuple[float, float] | None
    audit_top_error_rate: float | None
    audit_top_error_interval: tuple[float, float] | None
    estimated_noise: float | None
    estimated_noise_low: float | None
    estimated_noise_high: float | None
    noise_basis: Literal["flagged_only", "flagged_and_audit"] | None
    review_seconds: float
    yield_per_hour: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        return asdict(self)


@dataclass(frozen=True)
class StopAdvice:
    """Whether to stop refining, and why in one sentence for the lab lead."""

    stop: bool
    reason: str


def round_refinement(session: Session, round_id: int) -> RoundRefinement:
    """The refinement numbers of one round (its predictions, review items and reviews)."""
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    return _compute(session, rnd)


def dataset_refinement(session: Session, dataset_id: int) -> list[RoundRefinement]:
    """Every round of a dataset that has predictions, oldest base version first."""
    rounds = session.scalars(
        sa.select(Round)
        .where(
            Round.dataset_id == dataset_id,
            Round.state.not_in(_SKIPPED),
            sa.exists().where(Prediction.round_id == Round.id),
        )
        .order_by(Round.base_version, Round.id)
    ).all()
    return [_compute(session, r) for r in rounds]


def add_audit_items(
    session: Session,
    round_id: int,
    *,
    count: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
    top: int = 0,
) -> int:
    """Queue an audit of the round's unflagged images; returns how many items were added.

    With `top`, every one of the `top` unflagged images the flag ranks highest (priority
    descending, then best IoU ascending, then image id) is reviewed: a census of where the
    errors it missed are likeliest (module docstring). Of the other unflagged images a
    random sample is reviewed: `count` images or `fraction` of them (rounded up); give
    exactly one. The sample depends only on those images' ids and `seed`; images already
    queued are skipped, so calling again with the same arguments adds nothing, and a larger
    count extends the sample. The census is fixed by the round's first audit (a later call
    with another `top` is a Conflict: the strata would overlap). The round must be reviewing
    (Conflict otherwise).
    """
    from regrasp.refine.review.items import queue_items

    if (count is None) == (fraction is None):
        raise InvalidInput("give exactly one of count and fraction")
    if count is not None and (isinstance(count, bool) or count < 0):
        raise InvalidInput(f"count must be >= 0, got {count!r}")
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        raise InvalidInput(f"fraction must be in [0, 1], got {fraction!r}")
    if isinstance(top, bool) or top < 0:
        raise InvalidInput(f"top must be >= 0, got {top!r}")
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    if rnd.state != RoundState.reviewing:
        raise Conflict(f"round {round_id} is {rnd.state}; audits are added while reviewing")
    rows = session.execute(
        sa.select(Prediction.id, Prediction.image_id)
        .where(Prediction.round_id == round_id, Prediction.flagged.is_(False))
        .order_by(Prediction.priority.desc(), Prediction.best_iou, Prediction.image_id)
    ).all()
    if not rows:
        return 0
    pred_ids = np.array([r[0] for r in rows], dtype=np.int64)
    image_ids = np.array([r[1] for r in rows], dtype=np.int64)
    n_top = min(int(top), len(rows))
    audited, census = session.execute(
        sa.select(
            sa.func.count(ReviewItem.id),
            sa.func.coalesce(sa.func.sum(sa.case((ReviewItem.audit_top, 1), else_=0)), 0),
        )
        .join(Prediction, Prediction.id == ReviewItem.prediction_id)
        .where(ReviewItem.round_id == round_id, Prediction.flagged.is_(False))
    ).one()
    if int(audited) and int(census) != n_top:
        raise Conflict(
            f"round {round_id}'s audit has a census of the top {int(census)} unflagged "
            f"images; a later audit must keep it (top={int(census)})"
        )
    added = queue_items(
        session,
        round_id,
        image_ids=image_ids[:n_top],
        prediction_ids=pred_ids[:n_top],
        required_reviews=np.ones(n_top, dtype=np.int64),
        priorities=np.zeros(n_top),
        audit_top=True,
    )
    rest = np.argsort(image_ids[n_top:], kind="stable") + n_top  # by image id
    n = count if count is not None else math.ceil(float(fraction) * len(rest))  # type: ignore[arg-type]
    n = min(int(n), len(rest))
    picks = rest[np.sort(np.random.default_rng(seed).permutation(len(rest))[:n])]
    return added + queue_items(
        session,
        round_id,
        image_ids=image_ids[picks],
        prediction_ids=pred_ids[picks],
        required_reviews=np.ones(len(picks), dtype=np.int64),
        priorities=np.zeros(len(picks)),
    )


def suggest_stop(
    rounds: Sequence[RoundRefinement], *, min_drop: float = 0.1, min_decided: int = 1
) -> StopAdvice:
    """Stop when the last round found no label error, or when neither the flagged count
    nor the yield fell by `min_drop` (relative) since the round before.

    Only rounds with at least `min_decided` decided flagged items count. Without review
    times the yield is replaced by the error share of the flagged images.
    """
    if not 0.0 <= min_drop < 1.0:
        raise InvalidInput(f"min_drop must be in [0, 1), got {min_drop!r}")
    done = [r for r in rounds if r.decided_flagged >= min_decided]
    if not done:
        return StopAdvice(False, "no round has been reviewed yet")
    last = done[-1]
    if last.label_errors_found == 0:
        return StopAdvice(True, f"round {last.round_id} found no label error in its reviews")
    if len(done) < 2:
        return StopAdvice(False, "one reviewed round so far: continue to see the trend")
    prev = done[-2]
    flag_drop = _drop(prev.flagged, last.flagged)
    use_yield = prev.yield_per_hour is not None and last.yield_per_hour is not None
    name = "yield per review hour" if use_yield else "error share of the flagged images"
    before = prev.yield_per_hour if use_yield else prev.flagged_error_rate
    after = last.yield_per_hour if use_yield else last.flagged_error_rate
    yield_drop = _drop(before, after)
    if flag_drop < min_drop and yield_drop < min_drop:
        return StopAdvice(
            True,
            f"flagged images {prev.flagged} → {last.flagged} and {name} "
            f"{_fmt(before)} → {_fmt(after)} stopped falling (< {min_drop:.0%} drop): "
            "further rounds mostly re-review the model's own mistakes",
        )
    return StopAdvice(
        False,
        f"flagged images {prev.flagged} → {last.flagged}, {name} {_fmt(before)} → "
        f"{_fmt(after)}: still falling, another round is likely to pay",
    )


def item_strata(session: Session, round_id: int) -> dict[int, Stratum]:
    """The stratum of every review item of the round, by item id: "flagged" (the queue),
    "top" (the audit's census) or "sample" (the audit's random sample)."""
    return {
        item_id: "flagged" if flagged else "top" if top else "sample"
        for item_id, flagged, top in session.execute(
            sa.select(ReviewItem.id, Prediction.flagged, ReviewItem.audit_top)
            .join(Prediction, Prediction.id == ReviewItem.prediction_id)
            .where(ReviewItem.round_id == round_id)
        ).all()
    }


def wilson_interval(successes: int, trials: int, *, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial share (0, 1 for no trial)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# --- private ----------------------------------------------------------------------------


def _compute(session: Session, rnd: Round) -> RoundRefinement:
    from regrasp.refine.review.items import final_decisions

    images, flagged = session.execute(
        sa.select(
            sa.func.count(Prediction.id),
            sa.func.coalesce(sa.func.sum(sa.case((Prediction.flagged, 1), else_=0)), 0),
        ).where(Prediction.round_id == rnd.id)
    ).one()
    images, flagged = int(images), int(flagged)
    stratum_of = item_strata(session, rnd.id)
    # Flagged images that got a review item (all of them without a budget).
    queued = sum(v == "flagged" for v in stratum_of.values())
    audited = sum(v != "flagged" for v in stratum_of.values())
    audited_top = census = sum(v == "top" for v in stratum_of.values())
    decisions = {d.value: 0 for d in ReviewDecision}
    audit = {d.value: 0 for d in ReviewDecision}
    decided: dict[Stratum, int] = {"flagged": 0, "top": 0, "sample": 0}
    errors: dict[Stratum, int] = {"flagged": 0, "top": 0, "sample": 0}
    for final in final_decisions(session, rnd.id):
        stratum = stratum_of.get(final.item_id, "flagged")
        target = decisions if stratum == "flagged" else audit
        target[final.decision.value] += 1
        decided[stratum] += 1
        errors[stratum] += final.decision in LABEL_ERRORS
    decided_f = decided["flagged"]
    decided_a = decided["top"] + decided["sample"]
    errors_f = errors["flagged"]
    errors_a = errors["top"] + errors["sample"]
    seconds = float(
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(Review.seconds_taken), 0.0))
            .join(ReviewItem, ReviewItem.id == Review.item_id)
            .where(ReviewItem.round_id == rnd.id)
        )
        or 0.0
    )
    share = {k: errors[k] / decided[k] if decided[k] else None for k in decided}
    ci = {k: wilson_interval(errors[k], decided[k]) if decided[k] else None for k in decided}
    p_f, ci_f = share["flagged"], ci["flagged"]
    p_u, ci_u = share["sample"], ci["sample"]
    p_t, ci_t = share["top"], ci["top"]
    unflagged = images - flagged
    beyond = flagged - queued  # flagged, but past the round's review budget
    rest = unflagged - census  # the random sample's stratum
    top_mid = top_low = top_high = 0.0  # the census's images with errors, and bounds
    if p_t is not None and ci_t is not None:
        top_mid, top_low, top_high = census * p_t, census * ci_t[0], census * ci_t[1]
    else:  # a census nobody has decided yet counts as the images past the budget do
        beyond, census = beyond + census, 0
    noise = low = high = None
    basis: Literal["flagged_only", "flagged_and_audit"] | None = None
    if images and p_f is not None and ci_f is not None:
        if p_u is not None and ci_u is not None:
            basis = "flagged_and_audit"
            # Images past the budget were ranked below every reviewed one and above
            # none of the unflagged: their share lies between the strata around them.
            p_next = p_u if p_t is None else p_t
            noise = (queued * p_f + beyond * (p_f + p_next) / 2 + top_mid + rest * p_u) / images
            low = (queued * ci_f[0] + beyond * ci_u[0] + top_low + rest * ci_u[0]) / images
            high = (queued * ci_f[1] + beyond * ci_f[1] + top_high + rest * ci_u[1]) / images
        else:
            basis = "flagged_only"
            noise = (queued * p_f + top_mid) / images
            low = (queued * ci_f[0] + top_low) / images
    found = errors_f + errors_a
    return RoundRefinement(
        round_id=rnd.id,
        base_version=rnd.base_version,
        result_version=rnd.result_version,
        state=rnd.state.value,
        images=images,
        flagged=flagged,
        audited=audited,
        decided_flagged=decided_f,
        decided_audit=decided_a,
        decisions=decisions,
        audit_decisions=audit,
        audited_top=audited_top,
        decided_audit_top=decided["top"],
        true_negative_share=(decisions["true_negative"] / decided_f) if decided_f else None,
        false_negative_share=p_f,
        label_errors_found=found,
        flagged_error_rate=p_f,
        flagged_error_interval=ci_f,
        audit_error_rate=p_u,
        audit_error_interval=ci_u,
        audit_top_error_rate=p_t,
        audit_top_error_interval=ci_t,
        estimated_noise=noise,
        estimated_noise_low=low,
        estimated_noise_high=high,
        noise_basis=basis,
        review_seconds=seconds,
        yield_per_hour=found / (seconds / 3600.0) if seconds > 0 else None,
    )


def _drop(before: float | None, after: float | None) -> float:
    """Relative fall from `before` to `after` (negative when it rose; 0 when unknown)."""
    if before is None or after is None or before <= 0:
        return 0.0
    return (before - after) / before


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
