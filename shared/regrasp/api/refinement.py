"""Refinement statistics: per-round label noise and yield, the stopping advice
(`/datasets/{id}/refinement`), and audits of unflagged images (`/rounds/{id}/audit`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from regrasp.api.common import fields_of
from regrasp.refine.refinement_stats import RoundRefinement, StopAdvice

__all__ = [
    "AuditCreate",
    "AuditPublic",
    "RefinementPublic",
    "RoundRefinementPublic",
    "StopAdvicePublic",
]


class RoundRefinementPublic(fields_of(RoundRefinement)):  # type: ignore[misc]
    """One round's refinement numbers (`regrasp.refine.refinement_stats.RoundRefinement`)."""

    estimated_noise: float | None = Field(description="Share of images with label errors.")
    estimated_noise_high: float | None = Field(description="None without an audit.")
    yield_per_hour: float | None = Field(description="Label errors found per review hour.")


class StopAdvicePublic(fields_of(StopAdvice)):  # type: ignore[misc]
    """Whether to stop refining, and why (`regrasp.refine.refinement_stats.StopAdvice`)."""


class RefinementPublic(BaseModel):
    """A dataset's rounds with their refinement numbers, and whether to stop."""

    dataset_id: int
    rounds: list[RoundRefinementPublic]
    stop: StopAdvicePublic


class AuditCreate(BaseModel):
    """Review a reviewing round's unflagged images: a random sample (`count` or `fraction`,
    one of the two) and, with `top`, first every one of the `top` the flag ranks highest."""

    count: int | None = Field(None, ge=0, le=1_000_000)
    fraction: float | None = Field(None, ge=0.0, le=1.0)
    seed: int = 0
    top: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Unflagged images the flag ranks highest, all reviewed (a census): "
        "errors the flag missed sit there; fixed by the round's first audit.",
    )


class AuditPublic(BaseModel):
    round_id: int
    added: int
    audited: int = Field(description="Audit items of the round in all.")
