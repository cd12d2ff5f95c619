"""The review queue: claim, heartbeat, release, skip, decide, change, undo, adjudicate, stats.

Thin shells over `regrasp.refine.review`: the lease, version and double-review rules live there.
Reviews are made by people, so these routes refuse the shared service key (no user id).
Every item answer carries what the screen needs in one response (the model's numbered
predictions, the labels with their grasp ids, the lease expiry and the item version that
the decision must send back), so showing an item costs one call plus the image bytes.

The annotators' routes are async and run their database work through `Work`: one worker
thread and one session per request (a sync route costs five thread hops, see
`services.orchestrator.deps.RequestWork`), the caller resolved in that same session. The
admin's adjudication routes stay sync with `AdminUser` (403 before the body is read).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Query, Response, status
from sqlalchemy.orm import Session

from regrasp.api.review import (
    AdjudicationCasePublic,
    AnnotatorStatsPublic,
    DecisionCreate,
    LabelPublic,
    LabelQualityPublic,
    LeaseRequest,
    PredictedGraspPublic,
    ReviewItemPublic,
    ReviewPublic,
    ReviewStatsPublic,
    UndoPublic,
)
from regrasp.data.versions import labels_of_known_image
from regrasp.platform.accounts import Principal
from regrasp.platform.errors import NotFound, PermissionDenied
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import core_connection
from regrasp.platform.store.db.tables import (
    DatasetObject,
    Image,
    Prediction,
    Review,
    ReviewItem,
    Round,
    User,
)
from regrasp.refine import review as R
from services.orchestrator.deps import AdminUser, SessionDep, Work
from services.orchestrator.routes import ERRORS

router = APIRouter(tags=["review"], responses=ERRORS)

LeaseBody = Annotated[LeaseRequest | None, Body()]


@router.post(
    "/rounds/{round_id}/review/claim",
    response_model=ReviewItemPublic,
    responses={204: {"description": "Nothing is left for the caller in this round."}},
)
async def claim(round_id: int, work: Work, body: LeaseBody = None) -> ReviewItemPublic | Response:
    """Lease the round's next item to the caller (or renew the one they hold)."""
    lease = _lease(body, work.settings)

    def run(session: Session, user: Principal) -> ReviewItemPublic | None:
        item = R.claim_next(session, round_id, _person(user), lease_seconds=lease)
        return None if item is None else _item_public(session, item, user)

    answer = await work(run)
    if answer is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return answer


@router.get("/rounds/{round_id}/review/upcoming", response_model=list[ReviewItemPublic])
async def upcoming(
    round_id: int, work: Work, limit: Annotated[int, Query(ge=1, le=10)] = 2
) -> list[ReviewItemPublic]:
    """Items the caller's next claims will most likely get, not leased (for prefetching)."""

    def run(session: Session, user: Principal) -> list[ReviewItemPublic]:
        annotator = _person(user)
        _round(session, round_id)
        items = R.peek(session, round_id, annotator, limit=limit)
        return [_item_public(session, i, user) for i in items]

    return await work(run)


@router.get("/review/items/{item_id}", response_model=ReviewItemPublic)
async def get_item(item_id: int, work: Work) -> ReviewItemPublic:
    """One item with its predictions, labels, lease and the caller's standing decision."""

    def run(session: Session, user: Principal) -> ReviewItemPublic:
        return _item_public(session, _get_item(session, item_id), user)

    return await work(run)


@router.post("/review/items/{item_id}/heartbeat", response_model=ReviewItemPublic)
async def heartbeat(item_id: int, work: Work, body: LeaseBody = None) -> ReviewItemPublic:
    """Extend the caller's lease on the item."""
    lease = _lease(body, work.settings)

    def run(session: Session, user: Principal) -> ReviewItemPublic:
        item = R.heartbeat(session, item_id, _person(user), lease_seconds=lease)
        return _item_public(session, item, user)

    return await work(run)


@router.post("/review/items/{item_id}/release", response_model=ReviewItemPublic)
async def release(item_id: int, work: Work) -> ReviewItemPublic:
    """Give the item back to the pool."""

    def run(session: Session, user: Principal) -> ReviewItemPublic:
        return _item_public(session, R.release(session, item_id, _person(user)), user)

    return await work(run)


@router.post("/review/items/{item_id}/skip", response_model=ReviewItemPublic)
async def skip(item_id: int, work: Work) -> ReviewItemPublic:
    """Give the item back; the caller sees it again only when nothing else is left."""

    def run(session: Session, user: Principal) -> ReviewItemPublic:
        return _item_public(session, R.skip(session, item_id, _person(user)), user)

    return await work(run)


@router.post(
    "/review/items/{item_id}/decision",
    response_model=ReviewPublic,
    status_code=status.HTTP_201_CREATED,
)
async def decide(item_id: int, body: DecisionCreate, work: Work) -> ReviewPublic:
    """Record a decision made on `item_version`; 409 when the item changed since."""

    def run(session: Session, user: Principal) -> ReviewPublic:
        review = R.decide(session, item_id, _person(user), **_decision_args(body))
        return ReviewPublic.model_validate(review)

    return await work(run)


@router.put("/review/items/{item_id}/decision", response_model=ReviewPublic)
async def change_decision(item_id: int, body: DecisionCreate, work: Work) -> ReviewPublic:
    """Replace the caller's own decision on the item (until the round is applied)."""

    def run(session: Session, user: Principal) -> ReviewPublic:
        review = R.change_decision(session, item_id, _person(user), **_decision_args(body))
        return ReviewPublic.model_validate(review)

    return await work(run)


@router.post("/rounds/{round_id}/review/undo", response_model=UndoPublic)
async def undo(round_id: int, work: Work) -> UndoPublic:
    """Withdraw the caller's last decision in the round; the item is leased back to them."""

    def run(session: Session, user: Principal) -> UndoPublic:
        annotator = _person(user)
        item = R.undo_last(session, annotator, round_id)
        undone = session.scalar(
            sa.select(sa.func.max(Review.id)).where(
                Review.item_id == item.id,
                Review.annotator_id == annotator,
                Review.superseded.is_(True),
            )
        )
        return UndoPublic(item=_item_public(session, item, user), undone_review_id=undone)

    return await work(run)


@router.get("/review/items/{item_id}/reviews", response_model=list[ReviewPublic])
async def item_reviews(item_id: int, work: Work) -> list[ReviewPublic]:
    """The item's reviews, superseded ones included (annotators see only their own)."""

    def run(session: Session, user: Principal) -> list[ReviewPublic]:
        reviews = R.history(session, item_id)
        if not user.is_admin:
            reviews = [r for r in reviews if r.annotator_id == user.user_id]
        return [ReviewPublic.model_validate(r) for r in reviews]

    return await work(run)


@router.get("/rounds/{round_id}/review/adjudication", response_model=list[AdjudicationCasePublic])
def adjudication_queue(
    round_id: int, admin: AdminUser, session: SessionDep
) -> list[AdjudicationCasePublic]:
    """Items whose two reviews disagree, best priority first, with both reviews."""
    cases = R.adjudication_queue(session, round_id)
    names = _usernames(session, {r.annotator_id for c in cases for r in c.reviews})
    return [
        AdjudicationCasePublic(
            item=_item_public(session, c.item, admin),
            reviews=[ReviewPublic.model_validate(r) for r in c.reviews],
            usernames={r.annotator_id: names.get(r.annotator_id, "?") for r in c.reviews},
        )
        for c in cases
    ]


@router.post(
    "/review/items/{item_id}/resolve",
    response_model=ReviewPublic,
    status_code=status.HTTP_201_CREATED,
)
def resolve(
    item_id: int, body: DecisionCreate, admin: AdminUser, session: SessionDep
) -> ReviewPublic:
    """Settle a disagreement with the admin's final decision."""
    review = R.resolve(session, item_id, _person(admin), **_decision_args(body))
    return ReviewPublic.model_validate(review)


@router.get("/rounds/{round_id}/review/stats", response_model=ReviewStatsPublic)
async def stats(round_id: int, work: Work) -> ReviewStatsPublic:
    """Queue counts, decision mix, seconds per decision and agreement (Cohen's kappa).

    Admins see every annotator's row; an annotator sees only their own.
    """

    def run(session: Session, user: Principal) -> ReviewStatsPublic:
        s = R.round_stats(session, round_id)
        rows = [a for a in s.annotators if user.is_admin or a.annotator_id == user.user_id]
        public = ReviewStatsPublic.model_validate(s, from_attributes=True)
        return public.model_copy(
            update={"annotators": [AnnotatorStatsPublic.model_validate(a) for a in rows]}
        )

    return await work(run)


# --- helpers --------------------------------------------------------------------------------


def _person(principal: Principal) -> int:
    """The caller's user id: reviews are made by people, not by the shared service key."""
    if principal.user_id is None:
        raise PermissionDenied("reviews need a user: sign in, or use a user's API key")
    return principal.user_id


def _lease(body: LeaseRequest | None, settings: Settings) -> float:
    if body is None or body.lease_seconds is None:
        return settings.review_lease_seconds
    return body.lease_seconds


def _decision_args(body: DecisionCreate) -> dict[str, object]:
    return {
        "item_version": body.item_version,
        "decision": body.decision,
        "accepted_predictions": body.accepted_predictions,
        "removed_grasp_ids": body.removed_grasp_ids,
        "drawn_grasps": body.drawn_grasps,
        "seconds_taken": body.seconds_taken,
    }


def _round(session: Session, round_id: int) -> Round:
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    return rnd


def _get_item(session: Session, item_id: int) -> ReviewItem:
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise NotFound(f"review item {item_id} does not exist")
    return item


def _item_public(session: Session, item: ReviewItem, caller: Principal) -> ReviewItemPublic:
    """Everything the review screen needs about one item, in one answer.

    Two queries whatever the item, both built once: its image, object, round version,
    prediction and the caller's standing review in one statement, then the image's labels
    at that version.
    """
    row = (
        core_connection(session)
        .execute(
            _ITEM_VIEW,
            {
                "p_image": item.image_id,
                "p_round": item.round_id,
                "p_prediction": item.prediction_id,
                "p_item": item.id,
                "p_caller": caller.user_id if caller.user_id is not None else -1,
            },
        )
        .one_or_none()
    )
    if row is None:
        raise NotFound(f"round {item.round_id} does not exist")
    predicted = row.predicted or []
    labels = labels_of_known_image(session, item.image_id, row.base_version)
    return ReviewItemPublic(
        id=item.id,
        round_id=item.round_id,
        image_id=item.image_id,
        image=row.image,
        object=row.object,
        width=row.width,
        height=row.height,
        state=item.state.value,
        version=item.version,
        required_reviews=item.required_reviews,
        priority=item.priority,
        best_iou=row.best_iou,
        lease_owner_id=item.lease_owner_id,
        lease_expires_at=item.lease_expires_at,
        predictions=[
            PredictedGraspPublic(
                index=k,
                grasp=tuple(float(v) for v in grasp[:5]),
                quality=float(grasp[5]) if len(grasp) > 5 else None,
            )
            for k, grasp in enumerate(predicted)
        ],
        labels=[
            LabelPublic(grasp_id=gid, grasp=tuple(g))
            for gid, g in zip(labels.grasp_ids.tolist(), labels.grasps.tolist(), strict=True)
        ],
        quality=_quality_public(row.quality, labels.grasp_ids),
        my_review=_my_review(row),
        proposed_grasps=_proposed(session, item, caller) if item.required_reviews > 1 else [],
    )


def _proposed(session: Session, item: ReviewItem, caller: Principal) -> list[Any]:
    """Grasps other annotators drew on the item in their standing reviews: what a second
    reviewer confirms (only items that need two reviews ask; one query)."""
    rows = session.scalars(
        sa.select(Review.drawn_grasps).where(
            Review.item_id == item.id,
            Review.superseded.is_(False),
            Review.adjudication.is_(False),
            Review.annotator_id.is_distinct_from(caller.user_id),
        )
    )
    return [tuple(float(v) for v in g) for drawn in rows for g in (drawn or [])]


def _my_review(row: sa.Row[Any]) -> ReviewPublic | None:
    """The caller's standing review from `_ITEM_VIEW`'s `my_*` columns (None if none)."""
    if row.my_id is None:
        return None
    return ReviewPublic.model_validate({c: row._mapping[f"my_{c}"] for c in _REVIEW_FIELDS})


def _quality_public(stored: dict | None, grasp_ids: Iterable[int]) -> LabelQualityPublic | None:
    """The stored score with label positions turned into grasp ids (labels by grasp id)."""
    if not stored:
        return None
    ids = [int(g) for g in grasp_ids]
    return LabelQualityPublic(
        quality=float(stored["quality"]),
        kind=stored.get("kind"),
        unmatched=[int(i) for i in stored.get("unmatched", [])],
        suspect_grasp_ids=[ids[i] for i in stored.get("suspect_labels", []) if i < len(ids)],
        coverage=stored.get("coverage"),
        grasp_coverage=stored.get("grasp_coverage"),
    )


_REVIEW_FIELDS = tuple(c.key for c in Review.__table__.c)

#: The item answer's one statement besides the labels (bound parameters p_*): the image
#: and its object, the round's base version, the prediction (none when `p_prediction` is
#: NULL: `id = NULL` matches nothing) and the caller's newest standing review.
_ITEM_VIEW = (
    sa.select(
        Image.name.label("image"),
        Image.width,
        Image.height,
        DatasetObject.name.label("object"),
        Round.base_version,
        Prediction.grasps.label("predicted"),
        Prediction.best_iou,
        Prediction.quality,
        *(c.label(f"my_{c.key}") for c in Review.__table__.c),
    )
    .join(DatasetObject, DatasetObject.id == Image.object_id)
    .join(Round, Round.id == sa.bindparam("p_round", type_=sa.Integer))
    .outerjoin(Prediction, Prediction.id == sa.bindparam("p_prediction", type_=sa.Integer))
    .outerjoin(
        Review,
        sa.and_(
            Review.item_id == sa.bindparam("p_item", type_=sa.Integer),
            Review.annotator_id == sa.bindparam("p_caller", type_=sa.Integer),
            Review.superseded.is_(False),
        ),
    )
    .where(Image.id == sa.bindparam("p_image", type_=sa.Integer))
    .order_by(Review.id.desc())
    .limit(1)
)


def _usernames(session: Session, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = session.execute(sa.select(User.id, User.username).where(User.id.in_(user_ids)))
    return {int(i): name for i, name in rows}
