"""The inference service: a BentoML 1.4 shell over `regrasp.serving` and `regrasp.learn.predict`.

    bentoml serve services.inference.service:InferenceService --host 127.0.0.1 --port 3000

Endpoints (all but probes, metrics and docs need `Authorization: Bearer <key>`):

- `POST /predict` (multipart: `depth` float32 TIFF in metres and/or `rgb` PNG/JPEG, any
  size, any content type; form fields `k`, `min_quality`, and `model_id` or `model_name`)
  → ranked grasps in the uploaded image's pixels, from the `production` model unless the
  caller names another it may use (a robot key may not); the answer names its model;
- `POST /predict_stored` (`{model_id | model_name, dataset_id, version, image_ids, k}`,
  for rounds) → top-k grasps per stored image with that model, per-image errors;
- `GET /model` → the production model and the models this replica holds; `GET /stats` →
  how many requests each forward pass held, and the requests in flight;
- `POST /warm {model_id | model_name}` (admins, services) → load a model into the cache;
- `/healthz`, `/livez`, `/readyz` (ready once the production model is loaded), `/metrics`.

What a replica knows and does is `regrasp.serving.replica.Replica`; the gate in front of
every route (auth, key scopes, body limits, one error shape) is `regrasp.serving.gate`.
This file only binds them to BentoML: the routes, and `forward_batch`, the batchable API
through which BentoML's adaptive batcher merges concurrent requests' forward passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import bentoml
import numpy as np
import sqlalchemy as sa
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from regrasp.api.predict import (
    MAX_STORED_IMAGES,
    Grasp,
    ModelInfo,
    PredictResponse,
    PredictStoredResponse,
    StoredPrediction,
    Timings,
)
from regrasp.learn.predict import DEFAULT_K, MAX_K, Ranked
from regrasp.platform.accounts import Principal
from regrasp.platform.errors import InvalidInput, RegraspError
from regrasp.platform.settings import load_settings
from regrasp.serving import batching
from regrasp.serving.batching import Ticket
from regrasp.serving.gate import CALLER, Gate, OneLineClientErrors, Routes, remember_server_error
from regrasp.serving.replica import Replica

logger = logging.getLogger(__name__)

ROUTES = Routes(
    service="inference",
    public=frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json"}),
    public_prefixes=("/static_content/", "/assets/", "/schema.json"),
    internal=frozenset({"/forward_batch"}),
    admin=frozenset({"/warm"}),
)


class RequestRejected(BentoMLException):
    """A request the service will not run; carries the domain error's status and message."""

    @classmethod
    def from_error(cls, error: RegraspError) -> RequestRejected:
        # BentoML hides the message of a 401, 403 or 5xx: the gate puts this one back.
        remember_server_error(str(error))
        return cls(str(error), error_code=HTTPStatus(error.http_status))


class Overloaded(ServiceUnavailable):
    """BentoML's batching dispatcher shed the request (its latency budget was exceeded)."""


def _batching_options() -> dict[str, Any]:
    # BentoML reads batching options from the decorator when it builds the app, before
    # __init__ runs: they are the one setting this module reads when imported.
    settings = load_settings()
    size = batching.batch_size(settings.inference_max_batch_size, settings.inference_device)
    return {
        "batchable": size > 1,
        "max_batch_size": max(size, 2),  # BentoML requires > 1 even when not batchable
        "max_latency_ms": settings.inference_max_latency_ms,
    }


@bentoml.service(
    name="regrasp_inference",
    resources={"gpu": 1},  # reserved when present; on a CPU-only machine BentoML warns and runs
    workers=1,  # one process owns the GPU; scale with replicas
    traffic={"timeout": 300},
    # The self-calls to `forward_batch` share one client session; BentoML replaces it
    # after `max_requests` calls by closing it under the requests still using it.
    runner_connection={"max_requests": 2**31 - 1, "max_age": 1e12},
)
class InferenceService:
    """Grasp prediction for robots (production model) and rounds (their own models)."""

    def __init__(self) -> None:
        # torch loads here, not at import (BentoML imports this module in its supervisor).
        from services.inference.model import configure_threads, load_served, resolve_device

        _exit_with_supervisor()
        _one_line_client_errors()
        self.settings = load_settings()
        device = resolve_device(self.settings.inference_device)
        configure_threads(device, self.settings.inference_cpu_threads)
        self.replica = Replica(
            self.settings, load=lambda store, name: load_served(store, name, device=device)
        )
        self.replica.start()  # the production model loads before BentoML reports ready
        self._self_client_ready = False
        logger.info("inference on %s, production model %s", device, self.replica.production.target)

    # -- what the gate, the probes and /metrics ask ------------------------------------------

    def __is_ready__(self) -> bool:
        """Ready when the database answers and the promoted model (if any) is loaded."""
        try:
            with self.replica.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            logger.warning("readiness: database unreachable", exc_info=True)
            return False
        return self.replica.ready

    def __metrics__(self, content: str) -> str:
        """BentoML's /metrics plus the batch-size histogram and the in-flight gauge."""
        return content + self.replica.metrics_text()

    def authenticate(self, credential: str) -> Principal:
        return self.replica.authenticate(credential)

    @property
    def max_request_bytes(self) -> int:
        return self.settings.inference_max_request_bytes

    # -- APIs ------------------------------------------------------------------------------

    @bentoml.api(route="/predict")
    async def predict(
        self,
        # Plain paths, no content-type check: curl sends `-F depth=@f.tiff` as
        # application/octet-stream; the bytes themselves are checked when decoded.
        depth: Path = None,  # type: ignore[assignment]
        rgb: Path = None,  # type: ignore[assignment]
        k: Annotated[int, Field(ge=1, le=MAX_K)] = DEFAULT_K,
        min_quality: float | None = None,
        model_id: Annotated[int, Field(ge=1)] | None = None,
        model_name: str | None = None,
    ) -> PredictResponse:
        """Ranked grasps (input image pixels) for an uploaded depth and/or RGB image."""
        start = time.perf_counter()
        with self.replica.in_flight("predict"):
            try:
                served = await anyio.to_thread.run_sync(
                    self.replica.model_for, model_id, model_name, CALLER.get()
                )
                prepared, ticket, ranked = await self.replica.predict_upload(
                    served,
                    depth.read_bytes() if depth is not None else None,
                    rgb.read_bytes() if rgb is not None else None,
                    k=k,
                    min_quality=min_quality,
                    forward=self._forward,
                )
            except RegraspError as exc:
                raise RequestRejected.from_error(exc) from exc
        return PredictResponse(
            model_id=served.spec.model_id,
            model_name=served.name,
            width=prepared.letterbox.width,
            height=prepared.letterbox.height,
            grasps=_grasps(ranked),
            timings=Timings(
                decode_ms=prepared.decode_ms,
                forward_ms=ticket.forward_ms,
                postprocess_ms=ticket.decode_ms,
                total_ms=(time.perf_counter() - start) * 1000.0,
                batch_size=ticket.batch_size,
            ),
        )

    @bentoml.api(route="/predict_stored")
    async def predict_stored(
        self,
        dataset_id: Annotated[int, Field(ge=1)],
        version: Annotated[int, Field(ge=0)],
        image_ids: Annotated[list[int], Field(min_length=1, max_length=MAX_STORED_IMAGES)],
        k: Annotated[int, Field(ge=1, le=MAX_K)] = DEFAULT_K,
        min_quality: float | None = None,
        model_id: Annotated[int, Field(ge=1)] | None = None,
        model_name: str | None = None,
    ) -> PredictStoredResponse:
        """Top-k grasps (image px) of stored images with the model named by `model_id` or
        `model_name`; per-image errors."""
        start = time.perf_counter()
        with self.replica.in_flight("predict_stored"):
            try:
                if model_id is None and model_name is None:
                    raise InvalidInput("name the model by model_id or by model_name")
                served = await anyio.to_thread.run_sync(
                    self.replica.model_for, model_id, model_name, CALLER.get()
                )
                outcome = await self.replica.predict_stored(
                    served,
                    dataset_id,
                    version,
                    image_ids,
                    k=k,
                    min_quality=min_quality,
                    forward=self._forward,
                )
            except RegraspError as exc:  # includes an unreachable store: 503, retried
                raise RequestRejected.from_error(exc) from exc
        results = [
            StoredPrediction(image_id=i, error=o)
            if isinstance(o, str)
            else StoredPrediction(image_id=i, grasps=_grasps(o))
            for i, o in ((i, outcome[i]) for i in image_ids)
        ]
        return PredictStoredResponse(
            model_id=served.spec.model_id,
            model_name=served.name,
            results=results,
            elapsed_ms=(time.perf_counter() - start) * 1000.0,
        )

    @bentoml.api(route="/warm")
    async def warm(
        self, model_id: Annotated[int, Field(ge=1)] | None = None, model_name: str | None = None
    ) -> ModelInfo:
        """Load a model, named by id or by store name, into this replica's cache ahead of
        use (admins and services)."""
        try:
            served = await anyio.to_thread.run_sync(self.replica.warm, model_id, model_name)
        except RegraspError as exc:
            raise RequestRejected.from_error(exc) from exc
        return self.replica.model_info(served)

    @bentoml.api(route="/forward_batch", **_batching_options())
    def forward_batch(self, tickets: list[str]) -> list[str]:
        """Internal (services only): one forward pass per model over the inputs parked
        under `tickets` by this process's own requests; BentoML batches concurrent calls."""
        self.replica.tickets.run_batch(tickets)
        return tickets

    # -- the self-call through the batcher ---------------------------------------------------

    async def _forward(self, inputs: Sequence[np.ndarray], served: Any) -> list[Ticket]:
        names, parked = self.replica.tickets.park(inputs, served)
        try:
            for attempt in (1, 2):
                try:
                    await self._self_client().forward_batch(tickets=names)
                    break
                except BentoMLException as exc:  # shed by the dispatcher (or a 5xx)
                    raise Overloaded(f"inference is overloaded, retry later ({exc})") from exc
                except Exception:  # a transport failure of the in-process call: rerunning
                    if attempt == 2:  # the batch is harmless (the tickets are still parked)
                        raise
                    logger.warning("self-call to forward_batch failed; retrying", exc_info=True)
        finally:
            self.replica.tickets.release(names, parked)
        return parked

    def _self_client(self) -> Any:
        # `to_async` is set by BentoML after __init__: a client of this process's own app.
        # Its sessions are built lazily from `default_headers`, so the service key added
        # before the first call authenticates every self-call at the gate.
        client = self.to_async  # type: ignore[attr-defined]
        if not self._self_client_ready:
            key = self.settings.service_api_key.get_secret_value()
            client.default_headers["Authorization"] = f"Bearer {key}"
            self._self_client_ready = True
        return client


def _grasps(ranked: Ranked) -> list[Grasp]:
    return [
        Grasp(x=g[0], y=g[1], theta=g[2], opening=g[3], jaw=g[4], quality=q)
        for g, q in zip(ranked.grasps.tolist(), ranked.scores.tolist(), strict=True)
    ]


def _current_service() -> InferenceService | None:
    try:
        return bentoml.get_current_service()
    except BentoMLException:
        return None


async def _get_model(_: Request) -> JSONResponse:
    return JSONResponse(_current_service().replica.model_info().model_dump(mode="json"))


async def _get_stats(_: Request) -> JSONResponse:
    return JSONResponse(_current_service().replica.stats().model_dump(mode="json"))


# BentoML APIs are POST-only; this small app answers GET /model and GET /stats beside them
# (a passive mount: it only takes requests no BentoML route matched).
InferenceService.mount_asgi_app(
    Starlette(
        routes=[
            Route("/model", _get_model, methods=["GET"]),
            Route("/stats", _get_stats, methods=["GET"]),
        ]
    ),
    path="/",
    name="model",
)
InferenceService.add_asgi_middleware(Gate, routes=ROUTES, service=_current_service)


def _one_line_client_errors() -> None:
    """BentoML logs each 4xx with a traceback; the caller's mistake needs one line."""
    log = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, OneLineClientErrors) for f in log.filters):
        log.addFilter(OneLineClientErrors())


def _exit_with_supervisor() -> None:
    """Ask Linux to send this worker SIGTERM when its supervisor dies (BentoML starts each
    worker in a session of its own: a SIGKILLed supervisor would leave it running with
    the model and its GPU memory). Not available elsewhere: no-op."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the supervisor's own shutdown still applies
        logger.warning("could not tie the worker's lifetime to its supervisor")
