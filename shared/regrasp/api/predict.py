"""The inference service's answers (`/predict`, `/predict_stored`, `/model`, `/warm`, `/stats`).

Grasps are in the pixels of the image that was sent (x right, y down, theta in degrees
in that frame, opening and jaw in pixels), best first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from regrasp.learn.predict import DEFAULT_K, MAX_K

__all__ = [
    "Grasp",
    "MAX_STORED_IMAGES",
    "ModelInfo",
    "PredictResponse",
    "PredictStoredRequest",
    "PredictStoredResponse",
    "ServingStats",
    "StoredPrediction",
    "Timings",
    "WarmRequest",
]

#: Most image ids one /predict_stored call takes; the orchestrator sends chunks.
MAX_STORED_IMAGES = 10_000


class _NamesAModel(BaseModel):
    """A call that names one model: by id, or by store name (a model with no `models` row)."""

    model_id: int | None = Field(None, ge=1, description="The model's id (`regrasp model list`).")
    model_name: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Or its object-store name: a model registered without a `models` row.",
    )

    @model_validator(mode="after")
    def _one_name(self) -> _NamesAModel:
        if (self.model_id is None) == (self.model_name is None):
            raise ValueError("name the model by model_id or by model_name (one of the two)")
        return self


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Grasp(_Schema):
    """One grasp in the input image's pixels (Jacquard convention) and its quality."""

    x: float = Field(description="Centre, pixels to the right of the left edge.")
    y: float = Field(description="Centre, pixels down from the top edge.")
    theta: float = Field(description="Jaw axis angle, degrees in the y-down image frame.")
    opening: float = Field(description="Distance between the jaws, pixels.")
    jaw: float = Field(description="Jaw size across the opening, pixels.")
    quality: float = Field(description="Predicted grasp quality (higher is better).")


class Timings(_Schema):
    """Where the time of one request went, in milliseconds."""

    decode_ms: float = Field(description="Image decoding and preprocessing.")
    forward_ms: float = Field(description="Network forward pass of the batch this ran in.")
    postprocess_ms: float = Field(description="Map decoding and mapping back to image px.")
    total_ms: float = Field(description="Whole request inside the service.")
    batch_size: int = Field(description="Images in the forward pass this request shared.")


class PredictResponse(_Schema):
    """Ranked grasps for one uploaded image."""

    model_id: int | None = Field(
        description="Model that predicted (the production one unless named): its id, None "
        "for a model registered without a `models` row."
    )
    model_name: str | None = Field(description="That model's store name.")
    width: int = Field(description="Width of the input image, pixels.")
    height: int = Field(description="Height of the input image, pixels.")
    grasps: list[Grasp] = Field(description="Best first; may be empty.")
    timings: Timings


class PredictStoredRequest(_NamesAModel, _Schema):
    """Top-k grasps for stored images of one dataset version with one model (rounds)."""

    dataset_id: int = Field(ge=1)
    version: int = Field(ge=0)
    image_ids: list[int] = Field(min_length=1, max_length=MAX_STORED_IMAGES)
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K)
    min_quality: float | None = Field(None, description="Drop grasps scored below this.")


class StoredPrediction(_Schema):
    """One stored image's grasps (image px), or the error that stopped it."""

    image_id: int
    grasps: list[Grasp] = Field(default_factory=list)
    error: str | None = Field(None, description="Why this image has no prediction.")


class PredictStoredResponse(_Schema):
    model_id: int | None = Field(description="Model that predicted: its id (None: no row).")
    model_name: str | None = Field(description="That model's store name.")
    results: list[StoredPrediction] = Field(description="One per requested id, in order.")
    elapsed_ms: float


class WarmRequest(_NamesAModel, _Schema):
    """Load a model into a replica's cache."""


class ModelInfo(_Schema):
    """Which model the service serves (the production one, unless a call named another)."""

    model_id: int | None = Field(
        description="The model's id; None: no production model (/predict answers 503), or "
        "a model registered without a `models` row."
    )
    model_name: str | None = Field(None, description="The model's store name.")
    loaded: bool
    architecture: str | None = None
    channels: str | None = None
    input_size: int | None = None
    device: str | None = None
    loaded_at: datetime | None = None
    dataset: str | None = None
    dataset_version: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    cached: list[str] = Field(
        default_factory=list, description="Models this replica holds, least recently used first."
    )
    error: str | None = Field(None, description="Why the production model is not served.")


class ServingStats(_Schema):
    """What one replica has done: the proof that batching merges requests, and its load."""

    batch_sizes: dict[int, int] = Field(
        description="{requests in one forward pass: forward passes} since the replica started."
    )
    in_flight: dict[str, int] = Field(description="Requests being served now, by route.")
