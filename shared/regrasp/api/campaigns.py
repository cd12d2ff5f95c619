"""Benchmark campaigns (`/campaigns`): the paper's Table I, its runs and its report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from regrasp.api.common import UtcDatetime, fields_of
from regrasp.api.refinement import RoundRefinementPublic, StopAdvicePublic
from regrasp.api.rounds import RoundRetry
from regrasp.refine.campaigns.config import CampaignConfig
from regrasp.refine.campaigns.report import CampaignReport, Cell

__all__ = [
    "CampaignCellPublic",
    "CampaignCreate",
    "CampaignFigure",
    "CampaignPublic",
    "CampaignReportPublic",
    "CampaignRunPublic",
    "CampaignSamplePublic",
    "CampaignStateName",
]

CampaignStateName = Literal["created", "running", "done", "failed", "cancelled"]


CampaignFigure = Literal["flagged", "review_outcome", "accuracy", "train_loss", "overlays"]


class CampaignCreate(CampaignConfig):
    """A campaign on a dataset: `CampaignConfig`'s options plus which dataset."""

    dataset_id: int = Field(ge=1)


class CampaignRunPublic(BaseModel):
    """One (network, version) run: its jobs, model and results so far."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    network: str
    version: int
    state: Literal["pending", "training", "evaluating", "done", "failed", "cancelled"]
    train_job_id: int | None = None
    eval_job_id: int | None = None
    model_id: int | None = None
    accuracy: float | None = None
    successes: int | None = None
    images: int | None = None
    train_loss: float | None = None
    epochs: int | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None


class CampaignPublic(BaseModel):
    """A campaign: its options, state and runs."""

    id: int
    dataset_id: int
    name: str
    state: CampaignStateName
    config: dict[str, Any]
    test_version: int
    test_images: int
    runs: list[CampaignRunPublic]
    error: str | None
    retry: RoundRetry | None = Field(
        None, description="Passes that could not reach the trainer, retried with backoff."
    )
    created_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None


class CampaignCellPublic(fields_of(Cell)):  # type: ignore[misc]
    """One (network, version) cell of the table (`regrasp.refine.campaigns.report.Cell`)."""

    best: bool = Field(description="The best accuracy of its version.")


class CampaignSamplePublic(BaseModel):
    image_id: int
    name: str
    labels_before: int
    labels_after: int
    image_removed: bool


class CampaignReportPublic(fields_of(CampaignReport, omit=("samples",))):  # type: ignore[misc]
    """The accuracy table and the numbers behind every figure of a campaign."""

    state: CampaignStateName
    cells: list[CampaignCellPublic]
    rounds: list[RoundRefinementPublic]
    stop: StopAdvicePublic
    samples: list[CampaignSamplePublic]
    figures: list[CampaignFigure]
