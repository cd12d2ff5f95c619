"""Client of the inference service, and the schemas the service answers with.

    with InferenceClient("http://127.0.0.1:3000", credential="rgk_...") as client:
        best = client.predict(depth=open("frame.tiff", "rb").read(), k=1).grasps[0]

Grasps are in the pixels of the image that was sent (x right, y down, theta in degrees
in that frame, opening and jaw in pixels), best first. Error responses become domain
errors (`regrasp.clients.base`): 401 `Unauthenticated`, 4xx `InvalidInput` & co., and a
503 (no production model, overloaded) `ServiceUnavailable` after the retries.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from regrasp.clients.base import ServiceClient
from regrasp.predict import DEFAULT_K, MAX_K

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


class InferenceClient(ServiceClient):
    """Typed calls to the inference service; `credential` is an API key or the service key."""

    def predict(
        self,
        *,
        depth: bytes | None = None,
        rgb: bytes | None = None,
        k: int = DEFAULT_K,
        min_quality: float | None = None,
        rgb_content_type: str = "image/png",
        model_id: int | str | None = None,
    ) -> PredictResponse:
        """Ranked grasps for a depth frame (float32 TIFF, metres) and/or an RGB image, from
        the production model unless `model_id` names another (not allowed to robots)."""
        files: dict[str, tuple[str, bytes, str]] = {}
        if depth is not None:
            files["depth"] = ("depth.tiff", depth, "image/tiff")
        if rgb is not None:
            suffix = "jpg" if rgb_content_type == "image/jpeg" else "png"
            files["rgb"] = (f"rgb.{suffix}", rgb, rgb_content_type)
        data: dict[str, str] = {"k": str(k)}
        if min_quality is not None:
            data["min_quality"] = str(min_quality)
        if model_id is not None:
            data["model_id"] = str(model_id)
        response = self.request("POST", "/predict", retry=True, files=files, data=data)
        return PredictResponse.model_validate(response.json())

    def predict_stored(self, request: PredictStoredRequest) -> PredictStoredResponse:
        """Top-k grasps of stored images; per-image failures come back in `error`."""
        return self.post_model(
            "/predict_stored",
            PredictStoredResponse,
            retry=True,
            json=request.model_dump(mode="json"),
        )

    def model(self) -> ModelInfo:
        return self.get_model("/model", ModelInfo)

    def stats(self) -> ServingStats:
        return self.get_model("/stats", ServingStats)

    def warm(self, model_id: int | str) -> ModelInfo:
        """Load model `model_id` into the replica's cache (admins, services); what callers
        get does not change."""
        body = WarmRequest(model_id=model_id).model_dump()
        return self.post_model("/warm", ModelInfo, retry=True, json=body)

    def ready(self) -> bool:
        """Whether /readyz answers 200 (no credential needed)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except Exception:  # noqa: BLE001 - any transport failure means "not ready"
            return False


def replica_urls(urls: Sequence[str]) -> list[str]:
    """Every inference replica behind `urls`, looked up now.

    A host name that resolves to several addresses (a Kubernetes headless Service: one A
    record per ready pod) becomes one URL per address, so a round fans out over the pods
    that exist when it predicts, scaled up or down since it started. IP literals,
    `localhost` and names that do not resolve are kept as given (a call to one that is
    down fails and names it).
    """
    out: list[str] = []
    for url in urls:
        parsed = httpx.URL(url)
        host = parsed.host
        if host == "localhost" or _is_ip(host):
            out.append(url)
            continue
        try:
            infos = socket.getaddrinfo(host, parsed.port or 80, type=socket.SOCK_STREAM)
        except OSError:
            out.append(url)
            continue
        addresses = sorted({info[4][0] for info in infos})
        if len(addresses) <= 1:
            out.append(url)
        else:
            out.extend(str(parsed.copy_with(host=a)).rstrip("/") for a in addresses)
    return list(dict.fromkeys(out))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
