"""Client of the inference service; its schemas are `regrasp.api.predict`.

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

import httpx

from regrasp.api.predict import (
    ModelInfo,
    PredictResponse,
    PredictStoredRequest,
    PredictStoredResponse,
    ServingStats,
    WarmRequest,
)
from regrasp.clients.base import ServiceClient
from regrasp.learn.predict import DEFAULT_K

__all__ = ["InferenceClient", "replica_urls"]


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
        model_id: int | None = None,
        model_name: str | None = None,
    ) -> PredictResponse:
        """Ranked grasps for a depth frame (float32 TIFF, metres) and/or an RGB image, from
        the production model unless `model_id` or `model_name` names another (not allowed
        to robots)."""
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
        if model_name is not None:
            data["model_name"] = model_name
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

    def warm(self, model_id: int | None = None, model_name: str | None = None) -> ModelInfo:
        """Load the model with this id or store name into the replica's cache (admins,
        services); what callers get does not change."""
        body = WarmRequest(model_id=model_id, model_name=model_name).model_dump()
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
