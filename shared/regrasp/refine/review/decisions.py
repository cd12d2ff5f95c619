"""Decisions on review items: decide, change one's own decision, undo the last one.

A decision carries the item `version` it was made on and is written by a compare-and-swap
on it, `UPDATE review_items SET version = version + 1, state = … WHERE id = :id AND
version = :v AND <no one else holds a live lease>`. Zero rows means the item changed since
the annotator loaded it: Conflict (HTTP 409), never a silent overwrite. On PostgreSQL two
concurrent swaps of one version serialise on the row lock and the second re-reads the row,
finds the new version and matches nothing; on SQLite writers are serialised anyway.

Everything else (round state, who may decide, the rectangles, the item's next state) is
decided before the swap, from one read of the item, its round, its prediction and its
standing reviews. That read cannot go stale unnoticed: every change of an item's state
or of its reviews (claim, release, decision, change, undo, resolution) bumps its version,
so when the swap still finds the version read, nothing the checks looked at has changed
(heartbeats and lease expiry do not bump it, and the swap's guard re-checks the lease on
the locked row). A refusal therefore writes nothing, and a decision costs three
statements: read, swap, insert the review.

Who may decide an item:

- its lease holder, even after the lease expired as long as nobody claimed the item
  since (a claim bumps the version, so a taken-over item answers Conflict);
- anyone when no one else holds a live lease (a UI may open a given item rather than
  claim the next one): leases distribute the work, the version guards correctness;
- someone with a standing review of the item only to *change* it: `decide` treats a
  second call as a change, `change_decision` insists on one.

What each decision carries (checked before anything is written; InvalidInput otherwise):

| decision          | accepted predictions, drawn grasps | removed grasps |
|-------------------|------------------------------------|----------------|
| true_negative     | none                               | none           |
| missing_label     | at least one of either (*)         | none           |
| annotation_error  | none                               | none           |
| fix               | any (new labels)                   | at least one   |

(*) An audit item (an unflagged image sampled for the noise estimate) may carry a
missing_label with none: the auditor saw grasps missing and did not draw them.

A round may ask for a second annotator's agreement beyond its double-reviewed items
(`RoundConfig.confirm_changes`: every label change; `confirm_keeps`: a true negative on an
image the label-quality score is sure of); the item then waits for a second decision, and
a disagreement goes to an admin.

Accepted predictions are indices into the item's prediction (its top-k grasps, best
first); drawn grasps are rectangles the reviewer drew, `(x, y, theta, opening, jaw)` rows
with their centre on the image, at most `MAX_DRAWN`; removed grasps are ids of the
image's labels at the round's base version. A fix may not remove every label without
adding one: that is an annotation error.

History is never lost: a change or an undo marks the old review `superseded` and keeps
it. Changes are possible until the round is applied; decisions hold the round row FOR
SHARE (PostgreSQL) until they commit, so once the apply step has committed the round's
new state no decision can land any more.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from regrasp.data.versions import labels_of_known_image
from regrasp.grasp.rectangles import as_grasps
from regrasp.platform.clock import as_utc, now_or
from regrasp.platform.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from regrasp.platform.store.db.engine import core_connection
from regrasp.platform.store.db.tables import (
    Image,
    Prediction,
    Review,
    ReviewDecision,
    ReviewItem,
    ReviewItemState,
    Round,
    RoundState,
    User,
    UserRole,
)
from regrasp.refine.review._common import (
    DEFAULT_LEASE_SECONDS,
    check_id,
    get_item,
    get_round,
    int_list,
    is_postgres,
    lease_duration,
    live_lease,
    require_open,
    require_open_state,
    reviews_agree,
    standing_reviews,
)

__all__ = ["MAX_DRAWN", "change_decision", "decide", "history", "parse_decision", "undo_last"]

#: Most grasps one decision may draw: a person draws a few missing grasps, not a dataset.
MAX_DRAWN = 50


def decide(
    session: Session,
    item_id: int,
    annotator_id: int,
    *,
    item_version: int,
    decision: ReviewDecision | str,
    accepted_predictions: Iterable[int] = (),
    removed_grasp_ids: Iterable[int] = (),
    drawn_grasps: Iterable[Sequence[float]] = (),
    seconds_taken: float,
    now: datetime | None = None,
) -> Review:
    """Record the annotator's decision on the item made on `item_version`; returns the review.

    The item becomes `decided`, or `pending` while a double review waits for its second
    reviewer, or `adjudication` when two reviews disagree. Its lease is cleared and its
    version bumped. Conflict for a stale version, an item leased to someone else, an
    item already decided or a round not in review; InvalidInput for rectangles that do not
    fit the decision or the item; NotFound for an unknown item.
    """
    return record_review(
        session,
        item_id,
        annotator_id,
        mode=WriteMode.decide,
        item_version=item_version,
        decision=decision,
        accepted_predictions=accepted_predictions,
        removed_grasp_ids=removed_grasp_ids,
        drawn_grasps=drawn_grasps,
        seconds_taken=seconds_taken,
        now=now,
    )


def change_decision(
    session: Session,
    item_id: int,
    annotator_id: int,
    *,
    item_version: int,
    decision: ReviewDecision | str,
    accepted_predictions: Iterable[int] = (),
    removed_grasp_ids: Iterable[int] = (),
    drawn_grasps: Iterable[Sequence[float]] = (),
    seconds_taken: float,
    now: datetime | None = None,
) -> Review:
    """Replace the annotator's standing decision on the item; the old review is superseded.

    NotFound when the annotator has no standing decision on the item; Conflict once an
    admin resolved the item or the round is applied; otherwise as `decide`.
    """
    return record_review(
        session,
        item_id,
        annotator_id,
        mode=WriteMode.change,
        item_version=item_version,
        decision=decision,
        accepted_predictions=accepted_predictions,
        removed_grasp_ids=removed_grasp_ids,
        drawn_grasps=drawn_grasps,
        seconds_taken=seconds_taken,
        now=now,
    )


def undo_last(
    session: Session,
    annotator_id: int,
    round_id: int,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    now: datetime | None = None,
) -> ReviewItem:
    """Withdraw the annotator's most recent standing decision in the round; returns its item.

    The review is kept, superseded. The item goes back to the annotator, leased for
    `lease_seconds`, so they can decide it again (an admin's withdrawn resolution puts the
    item back in `adjudication` instead). NotFound when there is nothing to undo; Conflict
    when another annotator holds a live lease on the item, an admin already resolved it,
    or the round is not in review.
    """
    check_id(annotator_id, "annotator_id")
    check_id(round_id, "round_id")
    now = now_or(now)
    expires = now + lease_duration(lease_seconds)
    pg = is_postgres(session)
    with session.begin_nested():
        if pg:  # lock order on PostgreSQL: the round first, as every decision does
            require_open(get_round(session, round_id, share_lock=True))
        row = session.execute(
            _WITHDRAW_LATEST, {"p_annotator": annotator_id, "p_round": round_id}
        ).one_or_none()
        if not pg:
            require_open(get_round(session, round_id))
        if row is None:
            raise NotFound(f"annotator {annotator_id} has no decision to undo in round {round_id}")
        _, item_id, was_resolution = row
        item = get_item(session, item_id)
        if was_resolution:
            values = {
                "state": ReviewItemState.adjudication,
                "lease_owner_id": None,
                "lease_expires_at": None,
            }
            guard = sa.true()
        else:
            if any(r.adjudication for r in standing_reviews(session, item_id)):
                raise Conflict(f"review item {item_id} was resolved by an admin; ask them")
            values = {
                "state": ReviewItemState.leased,
                "lease_owner_id": annotator_id,
                "lease_expires_at": expires,
            }
            guard = _not_leased_to_another(annotator_id, now)
        done = session.execute(
            sa.update(ReviewItem)
            .where(ReviewItem.id == item_id, ReviewItem.version == item.version, guard)
            .values(version=ReviewItem.version + 1, **values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not done:
            raise Conflict(
                f"review item {item_id} is being reviewed by another annotator right now; "
                "undo it later"
            )
    session.get(Review, row[0], populate_existing=True)  # refresh a copy the caller may hold
    return get_item(session, item_id)


def history(session: Session, item_id: int) -> list[Review]:
    """Every review of the item, superseded ones included, oldest first."""
    get_item(session, check_id(item_id, "item_id"))
    return list(
        session.scalars(sa.select(Review).where(Review.item_id == item_id).order_by(Review.id))
    )


def parse_decision(decision: ReviewDecision | str) -> ReviewDecision:
    """The decision kind for a value or its name; InvalidInput listing the known ones."""
    try:
        return ReviewDecision(decision)
    except ValueError:
        known = ", ".join(d.value for d in ReviewDecision)
        raise InvalidInput(f"unknown decision {decision!r}; known: {known}") from None


# --- shared with regrasp.refine.review.adjudication ----------------------------------------------


class WriteMode(enum.Enum):
    decide = "decide"  # a first decision, or a change of one's own
    change = "change"  # a change of one's own standing decision only
    resolve = "resolve"  # an admin's resolution of a disagreement


def record_review(
    session: Session,
    item_id: int,
    user_id: int,
    *,
    mode: WriteMode,
    item_version: int,
    decision: ReviewDecision | str,
    accepted_predictions: Iterable[int],
    removed_grasp_ids: Iterable[int],
    drawn_grasps: Iterable[Sequence[float]] = (),
    seconds_taken: float,
    now: datetime | None,
) -> Review:
    """The one write path of every review (see the module docstring for the rules).

    A handful of statements whatever the database: one reads the item with its round
    (FOR SHARE on PostgreSQL), its prediction and its standing reviews; every check runs
    on that; then one guarded UPDATE writes the item's new state and version (the
    compare-and-swap) and one INSERT the review. A change adds one UPDATE of the replaced
    review, a fix one read of the image's labels, a resolution one read of the admin.
    Nothing is written before every check has passed, so a refusal leaves the caller's
    transaction as it was (no SAVEPOINT needed).
    """
    check_id(item_id, "item_id")
    check_id(user_id, "annotator_id")
    check_id(item_version, "item_version")
    kind = parse_decision(decision)
    accepted = int_list(accepted_predictions, "accepted_predictions", minimum=0)
    removed = int_list(removed_grasp_ids, "removed_grasp_ids", minimum=1)
    drawn = _drawn(drawn_grasps)
    seconds = _seconds(seconds_taken)
    _check_shape(kind, accepted, removed, drawn)
    now = now_or(now)
    any_holder = mode is WriteMode.resolve

    seen = _ItemContext.read(session, item_id)
    require_open_state(seen.round_id, seen.round_state)
    _require_swappable(item_id, user_id, item_version, now, seen, any_holder=any_holder)
    standing = seen.standing
    resolutions = [r for r in standing if r.adjudication]
    if mode is WriteMode.resolve:
        _require_admin(session, user_id)
        replaced = resolutions
        if seen.state != ReviewItemState.adjudication and not replaced:
            raise Conflict(f"review item {item_id} is not awaiting adjudication ({seen.state})")
    else:
        replaced = [r for r in standing if r.annotator_id == user_id and not r.adjudication]
        if mode is WriteMode.change and not replaced:
            raise NotFound(f"annotator {user_id} has no standing decision on review item {item_id}")
        if replaced and resolutions:
            raise Conflict(f"review item {item_id} was resolved by an admin; ask them")
        if not replaced and seen.state == ReviewItemState.adjudication:
            raise Conflict(f"review item {item_id} awaits adjudication by an admin")
        if not replaced and seen.state == ReviewItemState.decided:
            raise Conflict(f"review item {item_id} is already decided")
    _check_rectangles(session, item_id, seen, kind, accepted, removed, drawn)

    review = Review(
        item_id=item_id,
        annotator_id=user_id,
        decision=kind,
        accepted_prediction_indices=accepted,
        removed_grasp_ids=removed,
        drawn_grasps=drawn,
        seconds_taken=seconds,
        created_at=now,
        item_version=item_version,
        superseded=False,
        adjudication=any_holder,
    )
    required = seen.required_reviews
    if mode is WriteMode.resolve:
        state = ReviewItemState.decided
    else:
        if _needs_confirmation(kind, seen):
            # A decision that changes labels (or keeps labels the score is sure are
            # wrong) needs a second annotator's agreement; a disagreement goes to an
            # admin like any double review's.
            required = max(required, 2)
        votes = [r for r in standing if not r.adjudication and r not in replaced]
        if len(votes) + 1 < required:
            state = ReviewItemState.pending
        elif votes and not reviews_agree([*votes, review]):
            state = ReviewItemState.adjudication
        else:
            state = ReviewItemState.decided

    # The compare-and-swap writes the state decided above: it holds because the row is
    # still at the version read (every change of an item's state or of its reviews bumps
    # the version), else the swap matches nothing and the caller gets 409.
    params = {
        "p_item": item_id,
        "p_version": item_version,
        "p_user": user_id,
        "p_now": now,
        "p_state": state,
        "p_required": required,
    }
    # Core statements on the session's connection: what they change in objects the
    # session holds is set by hand below, so the ORM's bookkeeping is not needed.
    db = core_connection(session)
    swapped = db.execute(_SWAP_ANY if any_holder else _SWAP_IF_FREE, params).one_or_none()
    if swapped is None:
        _explain_lost_swap(session, item_id, user_id, item_version, now, any_holder=any_holder)
    _sync_loaded_item(session, item_id, swapped.version, state, required)
    if replaced:
        ids = [r.id for r in replaced]
        db.execute(_SUPERSEDE, {"p_ids": ids})
        for review_id in ids:
            old = session.identity_map.get(identity_key(Review, review_id))
            if old is not None:
                set_committed_value(old, "superseded", True)
    review.id = db.execute(_INSERT_REVIEW, _review_row(review)).scalar_one()
    # The row is written: hand the object to the session as loaded, not as new.
    make_transient_to_detached(review)
    session.add(review)
    return review


def _review_row(review: Review) -> dict[str, Any]:
    return {c: getattr(review, c) for c in _REVIEW_COLUMNS}


# --- private ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Standing:
    """A standing review as the rules read it (the attributes `reviews_agree` compares)."""

    id: int
    annotator_id: int
    decision: ReviewDecision
    accepted_prediction_indices: list[int]
    removed_grasp_ids: list[int]
    drawn_grasps: list[list[float]]
    adjudication: bool


@dataclass(frozen=True)
class _ItemContext:
    """Everything a decision is checked against, read in one statement (`_CONTEXT`)."""

    round_id: int
    image_id: int
    image_size: tuple[int, int]
    prediction_id: int | None
    state: ReviewItemState
    version: int
    lease_owner_id: int | None
    lease_expires_at: datetime | None
    required_reviews: int
    round_state: RoundState
    base_version: int
    round_config: dict[str, Any]
    flagged: bool | None
    predicted: list[Any] | None
    predicted_quality: dict[str, Any] | None
    standing: list[_Standing]

    @classmethod
    def read(cls, session: Session, item_id: int) -> _ItemContext:
        """The item, its round, prediction and standing reviews (oldest first); NotFound
        if the item does not exist. On PostgreSQL the round row is locked FOR SHARE until
        commit: the lock order (round, then item) is the apply step's."""
        rows = core_connection(session).execute(_CONTEXT, {"p_item": item_id}).all()
        if not rows:
            raise NotFound(f"review item {item_id} does not exist")
        r = rows[0]
        return cls(
            round_id=r.round_id,
            image_id=r.image_id,
            image_size=(r.image_width, r.image_height),
            prediction_id=r.prediction_id,
            state=r.state,
            version=r.version,
            lease_owner_id=r.lease_owner_id,
            lease_expires_at=as_utc(r.lease_expires_at),
            required_reviews=r.required_reviews,
            round_state=r.round_state,
            base_version=r.base_version,
            round_config=r.round_config or {},
            flagged=r.flagged,
            predicted=r.predicted,
            predicted_quality=r.predicted_quality,
            standing=[
                _Standing(
                    id=s.review_id,
                    annotator_id=s.annotator_id,
                    decision=s.decision,
                    accepted_prediction_indices=s.accepted_prediction_indices,
                    removed_grasp_ids=s.removed_grasp_ids,
                    drawn_grasps=s.drawn_grasps or [],
                    adjudication=s.adjudication,
                )
                for s in rows
                if s.review_id is not None
            ],
        )


def _require_swappable(
    item_id: int,
    user_id: int,
    item_version: int,
    now: datetime,
    seen: _ItemContext | ReviewItem,
    *,
    any_holder: bool,
) -> None:
    """Conflict when the item is not at `item_version`, or (unless `any_holder`) another
    annotator holds a live lease on it: the swap's own guard, checked on a read row."""
    if seen.version != item_version:
        raise Conflict(
            f"review item {item_id} changed since version {item_version} (it is at version "
            f"{seen.version}): reload it; decisions are never overwritten"
        )
    expires = as_utc(seen.lease_expires_at)
    if (
        not any_holder
        and seen.state == ReviewItemState.leased
        and expires is not None
        and expires > now
        and seen.lease_owner_id != user_id
    ):
        raise Conflict(f"review item {item_id} is leased to another annotator")


def _explain_lost_swap(
    session: Session,
    item_id: int,
    user_id: int,
    item_version: int,
    now: datetime,
    *,
    any_holder: bool,
) -> NoReturn:
    """The swap matched nothing although the read said it would: a concurrent change
    committed in between. Raise the Conflict the item as it is now explains."""
    item = get_item(session, item_id)
    _require_swappable(item_id, user_id, item_version, now, item, any_holder=any_holder)
    raise Conflict(f"review item {item_id} changed while the decision was checked: reload it")


def _sync_loaded_item(
    session: Session, item_id: int, version: int, state: ReviewItemState, required: int
) -> None:
    """Keep a copy of the item that the caller's session holds equal to the row written
    (the swap is a Core UPDATE), without a query."""
    item = session.identity_map.get(identity_key(ReviewItem, item_id))
    if item is None:
        return
    for name, value in (
        ("version", version),
        ("state", state),
        ("required_reviews", required),
        ("lease_owner_id", None),
        ("lease_expires_at", None),
    ):
        set_committed_value(item, name, value)


def _not_leased_to_another(user_id: int, now: datetime) -> sa.ColumnElement[bool]:
    return sa.not_(
        sa.and_(live_lease(ReviewItem, now), ReviewItem.lease_owner_id.is_distinct_from(user_id))
    )


def _needs_confirmation(kind: ReviewDecision, seen: _ItemContext) -> bool:
    """Whether the round asks a second annotator to confirm this decision: a change of
    labels under `confirm_changes`, a keep of an image the score is sure of under
    `confirm_keeps` (`regrasp.refine.rounds.config.RoundConfig`)."""
    from regrasp.refine.rounds.config import parse_config

    config = parse_config(seen.round_config)
    if kind != ReviewDecision.true_negative:
        return config.confirm_changes
    quality = (seen.predicted_quality or {}).get("quality")
    return config.confirm_keeps is not None and (
        quality is not None and 1.0 - float(quality) >= config.confirm_keeps
    )


def _drawn(value: Iterable[Sequence[float]]) -> list[list[float]]:
    """Drawn grasps as JSON rows; InvalidInput for a malformed one or too many."""
    if isinstance(value, str | bytes):
        raise InvalidInput("drawn_grasps must be a list of [x, y, theta, opening, jaw] rows")
    try:
        rows = [list(r) for r in value]
        grasps = as_grasps(rows) if rows else np.empty((0, 5))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"drawn_grasps must be [x, y, theta, opening, jaw] rows of numbers: {exc}"
        ) from None
    except InvalidInput as exc:
        raise InvalidInput(f"drawn_grasps: {exc}") from None
    if len(grasps) > MAX_DRAWN:
        raise InvalidInput(f"a decision draws at most {MAX_DRAWN} grasps, got {len(grasps)}")
    return grasps.tolist()


def _check_shape(
    kind: ReviewDecision, accepted: list[int], removed: list[int], drawn: list[list[float]]
) -> None:
    if kind in (ReviewDecision.true_negative, ReviewDecision.annotation_error):
        if accepted or removed or drawn:
            raise InvalidInput(
                f"a {kind} decision carries no accepted or removed rectangles, and draws none"
            )
    elif kind == ReviewDecision.missing_label:
        # Without an accepted prediction it is allowed only on an audit item, which
        # `_check_rectangles` knows (it has the item).
        if removed:
            raise InvalidInput("a missing_label decision removes nothing; use fix to remove")
    elif not removed:
        raise InvalidInput("a fix decision needs at least one removed rectangle")


def _check_rectangles(
    session: Session,
    item_id: int,
    seen: _ItemContext,
    kind: ReviewDecision,
    accepted: list[int],
    removed: list[int],
    drawn: list[list[float]],
) -> None:
    """Accepted indices exist among the item's predictions; removed ids are its labels;
    drawn grasps have their centre on the image.

    A missing_label decision with no accepted prediction and nothing drawn is an
    auditor's completeness finding ("grasps are missing", not drawn): it changes no label
    but counts as a label error in the noise estimate, and only an audit item (an
    unflagged image sampled by `refinement_stats.add_audit_items`) may carry it.
    """
    if kind == ReviewDecision.missing_label and not accepted and not drawn:
        flagged = seen.flagged if seen.prediction_id else True
        if flagged is not False:
            raise InvalidInput(
                "a missing_label decision needs at least one accepted prediction or drawn "
                "grasp (only an audit of an unflagged image may record incomplete labels "
                "without one)"
            )
    if drawn:
        width, height = seen.image_size
        xy = np.asarray(drawn)[:, :2]
        off = np.flatnonzero((xy < 0).any(axis=1) | (xy[:, 0] > width) | (xy[:, 1] > height))
        if off.size:
            raise InvalidInput(
                f"drawn grasps {off[:10].tolist()} (0-based) have their centre outside the "
                f"{width}x{height} image"
            )
    if accepted:
        n = len(seen.predicted) if seen.prediction_id and seen.predicted is not None else 0
        bad = [i for i in accepted if i >= n]
        if bad:
            raise InvalidInput(
                f"accepted_predictions {bad} do not exist: review item {item_id} has {n} "
                "predicted grasps" + (f" (indices 0..{n - 1})" if n else "")
            )
    if removed:
        # The item's image and its round's base version exist (foreign keys): one query.
        labels = labels_of_known_image(session, seen.image_id, seen.base_version).grasp_ids
        bad_ids = np.setdiff1d(np.asarray(removed, dtype=np.int64), labels)
        if len(bad_ids):
            raise InvalidInput(
                f"removed_grasp_ids {bad_ids[:10].tolist()} are not labels of image "
                f"{seen.image_id} at version {seen.base_version}"
            )
        if (
            kind == ReviewDecision.fix
            and not accepted
            and not drawn
            and len(removed) == len(labels)
        ):
            raise InvalidInput(
                "this fix removes every label of the image and adds none: decide "
                "annotation_error instead"
            )


def _seconds(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"seconds_taken must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"seconds_taken must be finite and >= 0, got {value!r}")
    return float(value)


def _require_admin(session: Session, user_id: int) -> None:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    if user.role != UserRole.admin or not user.active:
        raise PermissionDenied("only an admin can resolve a disagreement")


# --- statements, built once (bound parameters p_*) ----------------------------------------

_P_ITEM = sa.bindparam("p_item", type_=sa.Integer)
_P_VERSION = sa.bindparam("p_version", type_=sa.Integer)
_P_USER = sa.bindparam("p_user", type_=sa.Integer)
_P_NOW = sa.bindparam("p_now", type_=ReviewItem.lease_expires_at.type)

#: The item, its round (FOR SHARE OF rounds on PostgreSQL; SQLite writers are serialised
#: by BEGIN IMMEDIATE anyway), its prediction and its standing reviews: one row per
#: standing review, or one row with NULL review columns.
_CONTEXT = (
    sa.select(
        ReviewItem.round_id,
        ReviewItem.image_id,
        Image.width.label("image_width"),
        Image.height.label("image_height"),
        ReviewItem.prediction_id,
        ReviewItem.state,
        ReviewItem.version,
        ReviewItem.lease_owner_id,
        ReviewItem.lease_expires_at,
        ReviewItem.required_reviews,
        Round.state.label("round_state"),
        Round.base_version,
        Round.config.label("round_config"),
        Prediction.flagged,
        Prediction.grasps.label("predicted"),
        Prediction.quality.label("predicted_quality"),
        Review.id.label("review_id"),
        Review.annotator_id,
        Review.decision,
        Review.accepted_prediction_indices,
        Review.removed_grasp_ids,
        Review.drawn_grasps,
        Review.adjudication,
    )
    .join(Round, Round.id == ReviewItem.round_id)
    .join(Image, Image.id == ReviewItem.image_id)
    .outerjoin(Prediction, Prediction.id == ReviewItem.prediction_id)
    .outerjoin(Review, sa.and_(Review.item_id == ReviewItem.id, Review.superseded.is_(False)))
    .where(ReviewItem.id == _P_ITEM)
    .order_by(Review.id)
    .with_for_update(read=True, of=Round)
)


def _swap(*, any_holder: bool) -> sa.Update:
    """The compare-and-swap that records a decision on the item: version bumped, the new
    state and required reviews, lease cleared; matches nothing unless the item is still
    at `p_version` and (unless `any_holder`) no one but `p_user` holds a live lease."""
    guard = [ReviewItem.id == _P_ITEM, ReviewItem.version == _P_VERSION]
    if not any_holder:
        guard.append(
            sa.not_(
                sa.and_(
                    live_lease(ReviewItem, _P_NOW),
                    ReviewItem.lease_owner_id.is_distinct_from(_P_USER),
                )
            )
        )
    return (
        sa.update(ReviewItem)
        .where(*guard)
        .values(
            version=ReviewItem.version + 1,
            state=sa.bindparam("p_state", type_=ReviewItem.state.type),
            required_reviews=sa.bindparam("p_required", type_=sa.Integer),
            lease_owner_id=None,
            lease_expires_at=None,
        )
        .returning(ReviewItem.version)
    )


_SWAP_IF_FREE = _swap(any_holder=False)
_SWAP_ANY = _swap(any_holder=True)

_SUPERSEDE = (
    sa.update(Review)
    .where(Review.id.in_(sa.bindparam("p_ids", expanding=True)))
    .values(superseded=True)
)


def _withdraw_latest() -> sa.Update:
    """Supersede the annotator's (`p_annotator`) newest standing review in round `p_round`;
    returns its id, item and whether it was a resolution (no row: nothing to undo)."""
    last, its_item = aliased(Review), aliased(ReviewItem)
    latest = (
        sa.select(sa.func.max(last.id))
        .join(its_item, its_item.id == last.item_id)
        .where(
            last.annotator_id == sa.bindparam("p_annotator", type_=sa.Integer),
            last.superseded.is_(False),
            its_item.round_id == sa.bindparam("p_round", type_=sa.Integer),
        )
        .scalar_subquery()
    )
    return (
        sa.update(Review)
        .where(Review.id == latest, Review.superseded.is_(False))
        .values(superseded=True)
        .returning(Review.id, Review.item_id, Review.adjudication)
        .execution_options(synchronize_session=False)
    )


_WITHDRAW_LATEST = _withdraw_latest()

_REVIEW_COLUMNS = tuple(c.key for c in Review.__table__.c if c.key != "id")
_INSERT_REVIEW = sa.insert(Review.__table__).returning(Review.__table__.c.id)
