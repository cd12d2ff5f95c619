"""`RoundConfig`: every option of a refinement round, validated when the round is created.

A round trains a network on a dataset version (or reuses a registered model), predicts the
top-k grasps of every image, flags the images whose top-1 prediction overlaps none of
their labels (best gated IoU < `flag_threshold`, the paper's 0.2), queues them for review
and applies the decisions as the next version. The config is stored on the `rounds` row
(`Round.config`; the run's own bookkeeping is `Round.run`, `regrasp.refine.rounds.run`),
so a restarted orchestrator resumes with exactly the options the round was started with.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from regrasp.grasp.metrics import FLAG_IOU
from regrasp.platform.errors import InvalidInput

__all__ = ["JAW_RULES", "JawRule", "RoundConfig", "parse_config"]

JawRule = Literal["half_opening", "label_median", "predicted"]
#: How the jaw of an accepted prediction is set: "half_opening" jaw = opening / 2 (the
#: GG-CNN convention); "label_median" the median jaw of the image's labels in the base
#: version (opening / 2 when it has none); "predicted" the jaw the model returned.
JAW_RULES: tuple[str, ...] = ("half_opening", "label_median", "predicted")


class RoundConfig(BaseModel):
    """Options of one round (what `POST /rounds` accepts besides the dataset version)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields of the round's network (unset ones: the paper's).",
    )
    model_id: int | None = Field(
        None,
        ge=1,
        description="Use this registered, ready model instead of training one (skips training).",
    )
    flag_threshold: float = Field(
        FLAG_IOU, ge=0.0, le=1.0, description="Flag an image when its top-1 best IoU is below."
    )
    top_k: int = Field(5, ge=1, le=100, description="Predicted grasps kept per image.")
    flag: Literal["paper", "score"] = Field(
        "paper",
        description="'paper': the paper's rule, top-1 best IoU below `flag_threshold`; "
        "'score': flag images by the grasp label-quality score (`regrasp.refine.label_quality`: "
        "missing grasps, wrong action groups, badly placed labels over the top-k) and "
        "review the likeliest errors first. The score is stored either way. It wins on the "
        "synthetic efficacy bench, but its mask terms queue 19 of 33 real Jacquard samples "
        "on their labels alone (bench/real_labels.py), so it stays opt-in "
        "(docs/benchmarks.md).",
    )
    score_threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="With flag 'score': flag when 1 − quality is at least."
    )
    review_budget: int | None = Field(
        None,
        ge=1,
        description="Most review items of the round, highest priority first (None: every "
        "flagged image). The same budget makes two flags comparable.",
    )
    review_budget_hours: float | None = Field(
        None,
        gt=0.0,
        le=10_000.0,
        description="Review time of the round, in hours: turned into items with the team's "
        "median seconds per decision on this dataset's earlier rounds (20 s before any "
        "review). With review_budget too, the smaller of the two.",
    )
    skip_confirmed: bool = Field(
        True,
        description="Do not flag again an image a reviewer kept (true negative) in an "
        "earlier applied round whose labels have not changed since; it stays in the "
        "unflagged pool that the audit samples.",
    )
    double_review_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="Fraction of review items that need two reviews."
    )
    review_seed: int = Field(0, description="Seed choosing the double-reviewed items.")
    confirm_changes: bool = Field(
        False,
        description="Every decision that changes labels (all but true negative) needs a "
        "second annotator's agreement; disagreements go to an admin, so one annotator's "
        "slip removes or adds nothing on its own.",
    )
    confirm_keeps: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="A true negative on an image the label-quality score is this sure of "
        "(1 − quality at least this) needs a second annotator's agreement, as a label change "
        "does with confirm_changes; a disagreement goes to an admin. With skip_confirmed one "
        "annotator's slip would otherwise keep a wrong image out of every later round. None: "
        "one keep decides.",
    )
    folds: int = Field(
        0,
        ge=0,
        le=20,
        description="0: one model predicts every image. k >= 2: out-of-fold, k models each "
        "trained without one fold and predicting only that fold.",
    )
    fold_seed: int = Field(0, description="Seed assigning images to folds.")
    jaw_rule: JawRule = Field("half_opening", description="Jaw of accepted predictions.")
    chunk_size: int = Field(
        64, ge=1, le=10_000, description="Images per inference request of the predicting step."
    )
    auto_apply: bool = Field(
        False, description="Apply as soon as every review item is decided (default: an admin)."
    )

    @model_validator(mode="after")
    def _folds_and_model(self) -> RoundConfig:
        if self.folds == 1:
            raise ValueError("folds must be 0 (no folds) or at least 2")
        if self.folds and self.model_id is not None:
            raise ValueError("out-of-fold rounds train their own models; drop model_id")
        return self

    def train_config(self) -> dict[str, Any]:
        """The training config normalised as the trainer stores it (`TrainConfig` dump)."""
        from regrasp.learn.training.config import TrainConfig

        try:
            return TrainConfig(**self.train).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidInput(f"invalid training config: {_problems(exc)}") from None


def parse_config(stored: dict[str, Any]) -> RoundConfig:
    """The `RoundConfig` of a `Round.config` value."""
    try:
        return RoundConfig(**(stored or {}))
    except ValidationError as exc:
        raise InvalidInput(f"invalid round config: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
    )
