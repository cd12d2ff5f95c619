"""The inference service's answers (`/predict`, `/predict_stored`, `/model`, `/warm`, `/stats`).

Grasps are in the pixels of the image that was sent (x right, y down, theta in degrees
in that frame, opening and jaw in pixels), best first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from regrasp.learn.predict import DEFAULT_K, MAX_K

__all__ = [
    "Grasp",
    "MAX_STORED_IMAGES",
    "ModelInfo",
    "ModelRef",
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


#: A model named by a call: its `models` row id (int, or digits) or its object-store name.
ModelRef = Annotated[
    int | str,
    Field(description='A registered model: its id (e.g. 7 or "7") or its store name.'),
]


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

    model_id: str | None = Field(
        description="Model that predicted (its store name; the production one unless named)."
    )
    width: int = Field(description="Width of the input image, pixels.")
    height: int = Field(description="Height of the input image, pixels.")
    grasps: list[Grasp] = Field(description="Best first; may be empty.")
    timings: Timings


class PredictStoredRequest(_Schema):
    """Top-k grasps for stored images of one dataset version with one model (rounds)."""

    model_id: ModelRef
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
    model_id: str | None
    results: list[StoredPrediction] = Field(description="One per requested id, in order.")
    elapsed_ms: float


class WarmRequest(_Schema):
    model_id: ModelRef


class ModelInfo(_Schema):
    """Which model the service serves (the production one, unless a call named another)."""

    model_id: str | None = Field(description="None: no production model, /predict answers 503.")
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
