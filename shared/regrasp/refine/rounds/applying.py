"""The applying step: a round's final review decisions become dataset version n + 1.

Every flagged image's review item ends with one final decision (`regrasp.refine.review`: the
annotator's, or an admin's resolution of a double-review disagreement). Their effect, as
one `ChangeSet` on top of the round's base version (DESIGN's decisions table):

- true negative: nothing;
- missing label: the accepted predictions become labels (source "prediction", with the
  round, the prediction row and the reviewer as provenance), their jaw set by the round's
  `jaw_rule`; the grasps the reviewer drew become labels as drawn (source "manual");
- annotation error: the image is removed (its labels go with it);
- fix: the named label rectangles are removed, the accepted predictions and the drawn
  grasps added.

Undecided items (pending, leased, or waiting for an admin's resolution) block the apply;
with `force` they count as true negatives (the image keeps its labels), which is what an
admin wants when the rest of the queue is not worth waiting for.

Exactly once: the version is created and the round marked `done` with its
`result_version` in the caller's ONE transaction, under a row lock on the round (FOR
UPDATE on PostgreSQL; SQLite serialises writers), so a crash before the commit leaves
nothing and a rerun after it finds the round done and returns its version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.data import versions
from regrasp.platform.clock import utcnow
from regrasp.platform.errors import Conflict, InvalidInput, NotFound
from regrasp.platform.store.db.tables import (
    GraspSource,
    Prediction,
    ReviewDecision,
    ReviewItem,
    Round,
    RoundState,
)
from regrasp.refine.rounds.config import parse_config
from regrasp.refine.rounds.run import load_run, save_run

__all__ = [
    "ApplyPreview",
    "FinalDecision",
    "apply_round",
    "build_change_set",
    "final_decisions",
    "preview_apply",
]


@dataclass(frozen=True)
class FinalDecision:
    """The decision that counts for one review item (None: undecided)."""

    item_id: int
    image_id: int
    prediction_id: int | None
    decision: ReviewDecision | None
    reviewer_id: int | None = None
    accepted_prediction_indices: list[int] = field(default_factory=list)
    removed_grasp_ids: list[int] = field(default_factory=list)
    drawn_grasps: list[list[float]] = field(default_factory=list)


def final_decisions(session: Session, round_id: int) -> list[FinalDecision]:
    """Every review item of the round with its final decision, by item id."""
    from regrasp.refine.review.items import final_decisions as decided_items

    items = {
        i.id: i
        for i in session.scalars(sa.select(ReviewItem).where(ReviewItem.round_id == round_id))
    }
    out: dict[int, FinalDecision] = {
        i.id: FinalDecision(i.id, i.image_id, i.prediction_id, None) for i in items.values()
    }
    for d in decided_items(session, round_id):
        item = items[d.item_id]
        out[item.id] = FinalDecision(
            item_id=item.id,
            image_id=item.image_id,
            prediction_id=item.prediction_id,
            decision=ReviewDecision(d.decision),
            reviewer_id=d.reviewer_id,
            accepted_prediction_indices=[int(i) for i in d.accepted_prediction_indices],
            removed_grasp_ids=[int(i) for i in d.removed_grasp_ids],
            drawn_grasps=d.drawn_grasps.tolist(),
        )
    return [out[k] for k in sorted(out)]


def build_change_set(
    session: Session, rnd: Round, decisions: Sequence[FinalDecision], *, force: bool = False
) -> versions.ChangeSet:
    """The ChangeSet of the decisions on the round's base version (rules in the module doc).

    Conflict when an item is undecided and not `force`; InvalidInput when a decision names
    a prediction index the prediction does not have, or a grasp that is not a label of
    the item's image in the base version.
    """
    undecided = [d.item_id for d in decisions if d.decision is None]
    if undecided and not force:
        raise Conflict(
            f"round {rnd.id} has {len(undecided)} undecided review items (e.g. "
            f"{undecided[:5]}); decide them or apply with force (undecided = true negative)"
        )
    config = parse_config(rnd.config)
    labels = versions.labels_at(session, rnd.dataset_id, rnd.base_version)
    pred_ids = [d.prediction_id for d in decisions if d.prediction_id is not None]
    preds = {
        p.id: p for p in session.scalars(sa.select(Prediction).where(Prediction.id.in_(pred_ids)))
    }
    add_img: list[int] = []
    add_rows: list[list[float]] = []
    add_pred: list[int] = []
    add_rev: list[int] = []
    add_notes: list[str] = []
    add_src: list[GraspSource] = []
    rm_grasps: list[int] = []
    rm_grasp_rev: list[int] = []
    rm_grasp_why: list[str] = []
    rm_img: list[int] = []
    rm_img_rev: list[int] = []
    reviewer = versions.NO_ID
    for d in decisions:
        reviewer = d.reviewer_id if d.reviewer_id is not None else versions.NO_ID
        if d.decision in (None, ReviewDecision.true_negative):
            continue
        if d.decision == ReviewDecision.annotation_error:
            rm_img.append(d.image_id)
            rm_img_rev.append(reviewer)
            continue
        own = labels.grasp_ids[labels.image_ids == d.image_id]
        own_jaws = labels.grasps[labels.image_ids == d.image_id, 4]
        if d.decision == ReviewDecision.fix:
            foreign = sorted(set(d.removed_grasp_ids) - set(own.tolist()))
            if foreign:
                raise InvalidInput(
                    f"item {d.item_id}: grasps {foreign[:5]} are not labels of image "
                    f"{d.image_id} in version {rnd.base_version}"
                )
            rm_grasps.extend(d.removed_grasp_ids)
            rm_grasp_rev.extend([reviewer] * len(d.removed_grasp_ids))
            rm_grasp_why.extend([f"round {rnd.id}: fix"] * len(d.removed_grasp_ids))
        for row in d.drawn_grasps:
            add_img.append(d.image_id)
            add_rows.append([float(v) for v in row])
            add_pred.append(versions.NO_ID)
            add_rev.append(reviewer)
            add_notes.append(f"round {rnd.id}: drawn by the reviewer")
            add_src.append(GraspSource.manual)
        if not d.accepted_prediction_indices:
            continue
        pred = preds.get(d.prediction_id) if d.prediction_id is not None else None
        if pred is None:
            raise InvalidInput(f"item {d.item_id} accepts predictions but has none")
        ranked = np.asarray(pred.grasps, dtype=np.float64).reshape(-1, 6)
        for index in d.accepted_prediction_indices:
            if not 0 <= index < len(ranked):
                raise InvalidInput(
                    f"item {d.item_id}: prediction index {index} out of range "
                    f"(the prediction has {len(ranked)} grasps)"
                )
            row = ranked[index, :5].copy()
            row[4] = _jaw(config.jaw_rule, row, own_jaws)
            add_img.append(d.image_id)
            add_rows.append(row.tolist())
            add_pred.append(pred.id)
            add_rev.append(reviewer)
            add_notes.append(f"round {rnd.id}: accepted prediction #{index}")
            add_src.append(GraspSource.prediction)
    return versions.ChangeSet(
        add_image_ids=np.asarray(add_img, dtype=np.int64),
        add_grasps=np.asarray(add_rows, dtype=np.float64).reshape(-1, 5),
        add_source=add_src,
        add_prediction_ids=np.asarray(add_pred, dtype=np.int64),
        add_reviewer_ids=np.asarray(add_rev, dtype=np.int64),
        add_notes=add_notes,
        remove_grasp_ids=np.asarray(rm_grasps, dtype=np.int64),
        remove_grasp_reasons=rm_grasp_why,
        remove_grasp_reviewer_ids=np.asarray(rm_grasp_rev, dtype=np.int64),
        remove_image_ids=np.asarray(rm_img, dtype=np.int64),
        remove_image_reasons=f"round {rnd.id}: annotation error",
        remove_image_reviewer_ids=np.asarray(rm_img_rev, dtype=np.int64),
    )


@dataclass(frozen=True)
class ApplyPreview:
    """What applying a round now would change: the confirmation an admin reads first.

    Counts come from the same `build_change_set` the apply runs (undecided items taken
    as true negatives, as `force` would), so the preview and the new version agree.
    """

    round_id: int
    base_version: int
    items: int
    decided: int
    undecided: int
    decisions: dict[str, int]
    images_removed: int
    grasps_added: int
    grasps_removed: int  # by fixes
    grasps_removed_with_images: int  # the labels of the removed images
    images_before: int
    grasps_before: int

    @property
    def images_after(self) -> int:
        return self.images_before - self.images_removed

    @property
    def grasps_after(self) -> int:
        return (
            self.grasps_before
            + self.grasps_added
            - self.grasps_removed
            - self.grasps_removed_with_images
        )


def preview_apply(session: Session, round_id: int) -> ApplyPreview:
    """The changes the round's decisions make to its base version (nothing is written).

    NotFound for an unknown round; InvalidInput when a decision no longer fits the base
    version (as the apply itself would say).
    """
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    decisions = final_decisions(session, round_id)
    change = build_change_set(session, rnd, decisions, force=True)
    labels = versions.labels_at(session, rnd.dataset_id, rnd.base_version)
    mix = {d.value: 0 for d in ReviewDecision}
    for d in decisions:
        if d.decision is not None:
            mix[d.decision.value] += 1
    decided = sum(mix.values())
    removed_images = np.asarray(change.remove_image_ids, dtype=np.int64)
    return ApplyPreview(
        round_id=round_id,
        base_version=rnd.base_version,
        items=len(decisions),
        decided=decided,
        undecided=len(decisions) - decided,
        decisions=mix,
        images_removed=len(removed_images),
        grasps_added=len(change.add_grasps),
        grasps_removed=len(change.remove_grasp_ids),
        grasps_removed_with_images=int(np.isin(labels.image_ids, removed_images).sum()),
        images_before=len(versions.images_at(session, rnd.dataset_id, rnd.base_version)),
        grasps_before=len(labels),
    )


def apply_round(
    session: Session,
    round_id: int,
    *,
    force: bool | None = None,
    before_commit: Callable[[], None] | None = None,
) -> int:
    """Create the round's result version and mark it done; returns the version number.

    The round must be `applying` (the state `POST /rounds/{id}/apply` puts it in); a round
    already `done` returns its version (idempotent). `force` defaults to what the apply
    request recorded. Runs in the caller's transaction: commit it to make it count.
    `before_commit` (tests) runs after every write, just before returning.
    """
    rnd = locked_round(session, round_id)
    if rnd.state == RoundState.done and rnd.result_version is not None:
        return rnd.result_version
    if rnd.state != RoundState.applying:
        raise Conflict(f"round {round_id} is {rnd.state}, not applying")
    run = load_run(rnd)
    if force is None:
        force = run.apply.force if run.apply is not None else False
    change_set = build_change_set(session, rnd, final_decisions(session, round_id), force=force)
    number = versions.create_version(
        session,
        rnd.dataset_id,
        rnd.base_version,
        change_set,
        round_id=rnd.id,
        message=f"round {rnd.id}",
    )
    now = utcnow()
    run.finished(RoundState.applying.value)
    save_run(rnd, run)
    rnd.result_version = number
    rnd.state = RoundState.done
    rnd.finished_at = now
    rnd.error = None
    session.flush()
    if before_commit is not None:
        before_commit()
    return number


def locked_round(session: Session, round_id: int) -> Round:
    """The round row, locked for update (PostgreSQL) and read fresh; NotFound if absent."""
    rnd = session.scalars(
        sa.select(Round)
        .where(Round.id == round_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    return rnd


def _jaw(rule: str, grasp: np.ndarray, label_jaws: np.ndarray) -> float:
    if rule == "predicted" and grasp[4] > 0:
        return float(grasp[4])
    if rule == "label_median" and len(label_jaws):
        return float(np.median(label_jaws))
    return float(grasp[3]) / 2.0
