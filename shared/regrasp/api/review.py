"""The review queue: items, leases, decisions, adjudication and per-round statistics
(`/rounds/{id}/review/...`, `/review/items/...`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from regrasp.api.common import GraspTuple, Public, UtcDatetime, fields_of
from regrasp.refine.review.decisions import MAX_DRAWN
from regrasp.refine.review.stats import AnnotatorStats, RoundStats

__all__ = [
    "AdjudicationCasePublic",
    "AnnotatorStatsPublic",
    "DecisionCreate",
    "DecisionName",
    "DECISIONS",
    "LabelPublic",
    "LabelQualityPublic",
    "LeaseRequest",
    "PredictedGraspPublic",
    "ReviewItemPublic",
    "ReviewItemStateName",
    "ReviewPublic",
    "ReviewStatsPublic",
    "UndoPublic",
]

DecisionName = Literal["true_negative", "missing_label", "annotation_error", "fix"]


ReviewItemStateName = Literal["pending", "leased", "decided", "adjudication"]


#: The decision kinds in the order the review UI lists them.
DECISIONS: tuple[str, ...] = ("true_negative", "missing_label", "annotation_error", "fix")


class PredictedGraspPublic(BaseModel):
    """One of the model's top-k grasps; `index` (0-based, best first) is what a decision
    names in `accepted_predictions` (the UI shows it as index + 1)."""

    index: int
    grasp: GraspTuple
    quality: float | None = None


class LabelPublic(BaseModel):
    """A ground-truth rectangle of the image at the round's base version."""

    grasp_id: int
    grasp: GraspTuple


class ReviewPublic(Public):
    id: int
    item_id: int
    annotator_id: int
    decision: DecisionName
    accepted_prediction_indices: list[int]
    removed_grasp_ids: list[int]
    drawn_grasps: list[GraspTuple] = Field(
        default_factory=list, description="Grasps the reviewer drew (x, y, theta, opening, jaw)."
    )
    seconds_taken: float | None
    created_at: UtcDatetime
    item_version: int = Field(description="The item version the decision was made on.")
    superseded: bool = Field(description="Replaced by a later change, an undo or a resolution.")
    adjudication: bool = Field(description="An admin's resolution of a disagreement.")


class LabelQualityPublic(BaseModel):
    """Why an item was queued: the grasp label-quality score (`regrasp.refine.label_quality`)."""

    quality: float = Field(
        description="In [0, 1], 1 clean; the item's priority is about 1 − quality (wrong "
        "rectangles first at nearly equal quality)."
    )
    kind: Literal["missing", "badly_placed", "wrong_action"] | None = Field(
        description="The kind of issue that set the score (None: nothing suspicious)."
    )
    unmatched: list[int] = Field(
        description="Confident predictions (indices) that match no label: candidate new labels."
    )
    suspect_grasp_ids: list[int] = Field(
        description="Labels (grasp ids) the score finds badly placed or of the wrong action."
    )
    coverage: float | None = Field(
        None, description="Share of the object the labels reach (None: no mask, or unscored)."
    )
    grasp_coverage: float | None = Field(
        None,
        description="Share of the grasps the object's outline allows that a label matches "
        "(None: no mask, labels the mask test does not describe, or unscored).",
    )


class ReviewItemPublic(BaseModel):
    """An image to review: what the model predicted, what the labels say, the lease.

    `version` must come back with the decision (`DecisionCreate.item_version`); a decision
    on an older version is refused with 409.
    """

    id: int
    round_id: int
    image_id: int
    image: str
    object: str
    width: int
    height: int
    state: ReviewItemStateName
    version: int
    required_reviews: int
    priority: float
    best_iou: float | None = Field(description="Top-1 prediction's best gated IoU.")
    lease_owner_id: int | None
    lease_expires_at: UtcDatetime | None
    predictions: list[PredictedGraspPublic]
    labels: list[LabelPublic]
    quality: LabelQualityPublic | None = Field(
        None, description="What triggered the item (None for rounds scored before 0006)."
    )
    my_review: ReviewPublic | None = Field(
        None, description="The caller's standing decision on the item, if any."
    )
    proposed_grasps: list[GraspTuple] = Field(
        default_factory=list,
        description=(
            "Grasps other reviewers drew on this item, for a second reviewer to confirm: "
            "drawn grasps agree when they match one to one (IoU > 0.25 within 30°)."
        ),
    )


class LeaseRequest(BaseModel):
    lease_seconds: float | None = Field(
        None, gt=0, le=3600, description="Lease length (default: the server's)."
    )


class DecisionCreate(BaseModel):
    """A decision on an item, made on the item version the annotator saw."""

    item_version: int = Field(ge=1)
    decision: DecisionName
    accepted_predictions: list[int] = Field(
        default_factory=list, description="Prediction indices that become labels."
    )
    removed_grasp_ids: list[int] = Field(
        default_factory=list, description="Label grasp ids that are wrong (fix)."
    )
    drawn_grasps: list[GraspTuple] = Field(
        default_factory=list,
        max_length=MAX_DRAWN,
        description=(
            "Grasps the reviewer drew that no label or prediction shows, (x, y, theta, "
            "opening, jaw) in image pixels and degrees; they become labels (missing label, fix)."
        ),
    )
    seconds_taken: float = Field(ge=0, description="Time from showing the item to deciding.")


class UndoPublic(BaseModel):
    """The item whose decision was withdrawn, leased back to the caller."""

    item: ReviewItemPublic
    undone_review_id: int | None


class AdjudicationCasePublic(BaseModel):
    item: ReviewItemPublic
    reviews: list[ReviewPublic]
    usernames: dict[int, str] = Field(default_factory=dict, description="Reviewer names by id.")


class AnnotatorStatsPublic(fields_of(AnnotatorStats)):  # type: ignore[misc]
    """One person's work in a round (`regrasp.refine.review.stats.AnnotatorStats`)."""


class ReviewStatsPublic(fields_of(RoundStats)):  # type: ignore[misc]
    """A round's queue counts, decision mix, seconds per decision and agreement."""

    kappa: float | None = Field(description="Cohen's kappa of double reviews (decision kind).")
    annotators: list[AnnotatorStatsPublic]
