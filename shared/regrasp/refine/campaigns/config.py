"""`CampaignConfig`: which networks to train on which dataset versions, and how.

The paper trained ten networks on versions 0, 2, 6, 8 and 10 of Jacquard V2 and scored
each on one test split. Here every (network, version) pair is one trainer job with the
same `train` options (the network's name replacing `architecture`), and every model is
scored on the test part of `test_version` (default: the highest version listed): the
split recorded at import when the images carry one (`test_split="auto"` or "imported"),
else the split recipe of `train.split` ("recipe"). Those test images are excluded from
every training run (`TrainConfig.exclude_image_ids`), so no model of any version has
seen them, even where removed images shift an object-wise split between versions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from regrasp.platform.errors import InvalidInput
from regrasp.platform.store.db.tables import Campaign

__all__ = ["CampaignConfig", "parse_config"]


class CampaignConfig(BaseModel):
    """Options of one campaign."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", max_length=128, description="A label for people.")
    networks: list[str] = Field(
        min_length=1, max_length=32, description="Registered network names (`regrasp.learn.nets`)."
    )
    versions: list[int] = Field(
        min_length=1, max_length=64, description="Dataset versions to train on."
    )
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields shared by every run (architecture is set per network).",
    )
    test_version: int | None = Field(
        None, ge=0, description="Version whose test split scores every model (None: the highest)."
    )
    test_split: Literal["auto", "imported", "recipe"] = Field(
        "auto",
        description="Which test images: 'imported' the split recorded at import, 'recipe' "
        "train.split's recipe, 'auto' the imported one when the import recorded test images.",
    )

    @field_validator("networks")
    @classmethod
    def _unique_networks(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value) or not all(v.strip() for v in value):
            raise ValueError("networks must be distinct, non-empty names")
        return value

    @field_validator("versions")
    @classmethod
    def _unique_versions(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or min(value) < 0:
            raise ValueError("versions must be distinct and >= 0")
        return sorted(value)

    @property
    def scored_version(self) -> int:
        """The version whose test split scores every model."""
        return self.test_version if self.test_version is not None else max(self.versions)

    def train_config(self, network: str, *, exclude: list[int]) -> dict[str, Any]:
        """The normalised TrainConfig (JSON) of one run: `train`, the network, `exclude`."""
        from regrasp.learn.training.config import TrainConfig

        values = {**self.train, "architecture": network}
        values["exclude_image_ids"] = [*(values.get("exclude_image_ids") or ()), *exclude]
        try:
            return TrainConfig(**values).model_dump(mode="json")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'train'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"invalid training config: {problems}") from None


def parse_config(campaign: Campaign) -> CampaignConfig:
    """The campaign's stored `CampaignConfig`."""
    return CampaignConfig(**(campaign.config or {}))
