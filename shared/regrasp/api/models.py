"""The model registry (`/models`, `/model-aliases`): registered models and promotion."""

from __future__ import annotations

from pydantic import BaseModel, Field

from regrasp.api.common import UtcDatetime, fields_of
from regrasp.learn.model_registry import RegisteredModel

__all__ = [
    "ModelPromote",
    "ModelPublic",
]


class ModelPublic(fields_of(RegisteredModel)):  # type: ignore[misc]
    """A registered model, with what an admin weighs before promoting it."""

    name: str = Field(description="Object-store name; what the inference service loads.")
    accuracy: float | None = Field(description="Evaluation accuracy (test, else validation).")
    accuracy_metric: str | None = Field(description="Which metric `accuracy` is.")
    aliases: list[str] = Field(description="Aliases pointing at it, e.g. ['production'].")
    created_at: UtcDatetime


class ModelPromote(BaseModel):
    alias: str = Field(
        "production", min_length=1, max_length=64, description="Alias to point at the model."
    )
