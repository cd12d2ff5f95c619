"""The inference service: a BentoML 1.4 shell over `regrasp.predict` and `regrasp.serving`.

    bentoml serve services.inference.service:InferenceService --host 127.0.0.1 --port 3000

Endpoints (all but probes, metrics and docs need `Authorization: Bearer <key>`):

- `POST /predict` (multipart: `depth` float32 TIFF in metres and/or `rgb` PNG/JPEG, any
  size, any content type; form fields `k`, `min_quality`, `model_id`) → ranked grasps in
  the uploaded image's pixels, from the `production` model unless the caller names another
  it may use (a robot key may not); the answer names its model;
- `POST /predict_stored` (`{model_id, dataset_id, version, image_ids, k}`, for rounds) →
  top-k grasps per stored image with that model, per-image errors;
- `GET /model` → the production model and the models this replica holds; `GET /stats` →
  how many requests each forward pass held, and the requests in flight;
- `POST /warm {model_id}` (admins, services) → load a model into the cache ahead of use;
  it changes what no caller gets;
- `/healthz`, `/livez`, `/readyz` (ready once the production model is loaded), `/metrics`.

A replica holds several models (`regrasp.serving.models`): production pinned, the rest
least-recently-used. Promotion (`regrasp model promote`) reaches it within
`REGRASP_INFERENCE_ALIAS_POLL_SECONDS` plus one load, with no restart and no failed
request. Every forward pass goes through `forward_batch`, the batchable API BentoML's
adaptive batcher merges concurrent calls of (`regrasp.serving.batching`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
import numpy as np
import sqlalchemy as sa
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from regrasp import model_registry
from regrasp.accounts import Principal, authenticate_bearer
from regrasp.clients.inference import (
    MAX_STORED_IMAGES,
    Grasp,
    ModelInfo,
    ModelRef,
    PredictResponse,
    PredictStoredResponse,
    ServingStats,
    StoredPrediction,
    Timings,
)
from regrasp.errors import NotFound, PermissionDenied, RegraspError
from regrasp.predict import DEFAULT_K, MAX_K, Prepared, Ranked, prepare, to_image
from regrasp.serving import batching, stored
from regrasp.serving.gate import CALLER, Gate, OneLineClientErrors, Routes, remember_server_error
from regrasp.serving.models import ModelCache, NoProductionModel, ProductionFollower
from regrasp.settings import Settings, load_settings
from regrasp.store.db import migrations
from regrasp.store.db.engine import make_engine, session_scope
from regrasp.store.objects import store_from_settings

if TYPE_CHECKING:
    from services.inference.model import ServedModel

logger = logging.getLogger(__name__)

#: How long a successful credential check is reused, seconds.
AUTH_CACHE_SECONDS = 10.0
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
        self.settings: Settings = load_settings()
        self._engine = make_engine(self.settings.database_url)
        migrations.prepare(self._engine, mode=self.settings.mode)
        self._store = store_from_settings(self.settings)
        self._device = resolve_device(self.settings.inference_device)
        configure_threads(self._device, self.settings.inference_cpu_threads)
        self._service_key = self.settings.service_api_key.get_secret_value()
        self._token_secret = self.settings.secret_key.get_secret_value()
        self._auth_lock = threading.Lock()
        self._auth_cache: dict[str, tuple[Principal, float]] = {}
        self._names: dict[str, str] = {}
        self._self_client_ready = False
        self.tickets = batching.TicketBook()
        self.in_flight = batching.InFlight()
        self.models: ModelCache[ServedModel] = ModelCache(
            lambda name: load_served(self._store, name, device=self._device),
            capacity=self.settings.inference_model_cache_size,
        )
        pinned = self.settings.inference_model_id
        self.production = ProductionFollower(
            self.models,
            self._production_name,
            pinned=self._resolve_name(pinned) if pinned else None,
        )
        try:  # loaded before BentoML reports this worker ready
            self.production.sync()
        except RegraspError:
            logger.exception("production model not loaded at start; retrying in the background")
        self.production.start(self.settings.inference_alias_poll_seconds)
        logger.info("inference on %s, production model %s", self._device, self.production.target)

    # -- probes, auth, state ---------------------------------------------------------------

    def __is_ready__(self) -> bool:
        """Ready when the database answers and the promoted model (if any) is loaded."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            logger.warning("readiness: database unreachable", exc_info=True)
            return False
        return self.production.ready

    def __metrics__(self, content: str) -> str:
        """BentoML's /metrics plus ours: the batch-size histogram (proof that concurrent
        requests share forward passes) and the in-flight gauge the autoscaler follows."""
        return content + self.tickets.history.prometheus() + self.in_flight.prometheus()

    @property
    def max_request_bytes(self) -> int:
        return self.settings.inference_max_request_bytes

    def authenticate(self, credential: str) -> Principal:
        """The caller behind a bearer credential; Unauthenticated otherwise.

        Successes are remembered for `AUTH_CACHE_SECONDS` (a robot sends the same key many
        times a second); a revoked key is refused within that time. Database checks run one
        at a time: concurrent writers of `last_used_at` make SQLite answer "locked".
        """
        if self._service_key and hmac.compare_digest(
            credential.encode(), self._service_key.encode()
        ):
            return authenticate_bearer(None, credential, service_key=self._service_key)
        digest = hashlib.sha256(credential.encode()).hexdigest()
        cached = self._auth_cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        with self._auth_lock, session_scope(self._engine) as session:
            principal = authenticate_bearer(
                session,
                credential,
                token_secret=self._token_secret,
                service_key=self._service_key,
            )
        if len(self._auth_cache) > 10_000:
            self._auth_cache.clear()
        self._auth_cache[digest] = (principal, time.monotonic() + AUTH_CACHE_SECONDS)
        return principal

    def model_info(self, served: ServedModel | None = None) -> ModelInfo:
        """`served` (default: the production model) and what this replica holds."""
        served = served if served is not None else self.production.current
        held = self.models.names()
        if served is None:
            return ModelInfo(model_id=None, loaded=False, cached=held, error=self.production.error)
        meta, spec = served.metadata, served.spec
        return ModelInfo(
            model_id=spec.model_id,
            loaded=True,
            architecture=spec.architecture,
            channels=spec.channels,
            input_size=spec.input_size,
            device=served.device,
            loaded_at=served.loaded_at,
            dataset=meta.get("dataset"),
            dataset_version=meta.get("dataset_version"),
            metrics=dict(meta.get("metrics") or {}),
            cached=held,
        )

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
        model_id: ModelRef | None = None,
    ) -> PredictResponse:
        """Ranked grasps (input image pixels) for an uploaded depth and/or RGB image."""
        start = time.perf_counter()
        with self.in_flight("predict"):
            try:
                served = await self._model_for(model_id)
                prepared = await asyncio.to_thread(self._prepare_upload, served, depth, rgb)
                (ticket,) = await self._forward([prepared.inputs], served)
                if ticket.error is not None:
                    raise RequestRejected(ticket.error, error_code=HTTPStatus.INTERNAL_SERVER_ERROR)
                post_start = time.perf_counter()
                ranked = to_image(
                    ticket.raw, letterbox=prepared.letterbox, k=k, min_quality=min_quality
                )
            except RegraspError as exc:
                raise RequestRejected.from_error(exc) from exc
        now = time.perf_counter()
        return PredictResponse(
            model_id=served.model_id,
            width=prepared.letterbox.width,
            height=prepared.letterbox.height,
            grasps=_grasps(ranked),
            timings=Timings(
                decode_ms=prepared.decode_ms,
                forward_ms=ticket.forward_ms,
                postprocess_ms=ticket.decode_ms + (now - post_start) * 1000.0,
                total_ms=(now - start) * 1000.0,
                batch_size=ticket.batch_size,
            ),
        )

    @bentoml.api(route="/predict_stored")
    async def predict_stored(
        self,
        model_id: ModelRef,
        dataset_id: Annotated[int, Field(ge=1)],
        version: Annotated[int, Field(ge=0)],
        image_ids: Annotated[list[int], Field(min_length=1, max_length=MAX_STORED_IMAGES)],
        k: Annotated[int, Field(ge=1, le=MAX_K)] = DEFAULT_K,
        min_quality: float | None = None,
    ) -> PredictStoredResponse:
        """Top-k grasps (image px) of stored images with `model_id`; per-image errors."""
        start = time.perf_counter()
        outcome: dict[int, Ranked | str] = {}
        with self.in_flight("predict_stored"):
            try:
                served = await self._model_for(model_id)
                rows = await asyncio.to_thread(
                    stored.stored_keys, self._engine, dataset_id, version, image_ids
                )
                unique = list(dict.fromkeys(image_ids))
                chunk = max(
                    1, batching.batch_size(self.settings.inference_max_batch_size, served.device)
                )
                for first in range(0, len(unique), chunk):
                    ids = unique[first : first + chunk]
                    prepared = await asyncio.to_thread(
                        stored.prepare_stored,
                        self._store,
                        served.spec,
                        ids,
                        rows,
                        max_side=self.settings.inference_max_side,
                    )
                    ok = [i for i in ids if isinstance(prepared[i], Prepared)]
                    outcome.update({i: prepared[i] for i in ids if isinstance(prepared[i], str)})
                    if not ok:
                        continue
                    tickets = await self._forward([prepared[i].inputs for i in ok], served)
                    for image_id, ticket in zip(ok, tickets, strict=True):
                        outcome[image_id] = ticket.error or to_image(
                            ticket.raw,
                            letterbox=prepared[image_id].letterbox,
                            k=k,
                            min_quality=min_quality,
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
            model_id=served.model_id,
            results=results,
            elapsed_ms=(time.perf_counter() - start) * 1000.0,
        )

    @bentoml.api(route="/warm")
    async def warm(self, model_id: ModelRef) -> ModelInfo:
        """Load a model into this replica's cache ahead of use (admins and services)."""
        try:
            name = await asyncio.to_thread(self._resolve_name, model_id)
            served = await asyncio.to_thread(self.models.get, name)
        except RegraspError as exc:
            raise RequestRejected.from_error(exc) from exc
        return self.model_info(served)

    @bentoml.api(route="/forward_batch", **_batching_options())
    def forward_batch(self, tickets: list[str]) -> list[str]:
        """Internal (services only): one forward pass per model over the inputs parked
        under `tickets` by this process's own requests; BentoML batches concurrent calls."""
        self.tickets.run_batch(tickets)
        return tickets

    # -- private ---------------------------------------------------------------------------

    async def _model_for(self, ref: str | int | None) -> ServedModel:
        """The model a request runs on: production unless it names one the caller may use."""
        production = self.production.current
        if ref is None:
            if production is None:
                raise NoProductionModel(self._no_model_message())
            return production
        name = await asyncio.to_thread(self._resolve_name, ref)
        caller = CALLER.get()
        if caller is not None and caller.is_robot:
            if production is None or name != production.model_id:
                raise PermissionDenied(
                    f"a robot key gets the production model only (asked for {ref!r})"
                )
            return production
        return await asyncio.to_thread(self.models.get, name)

    def _no_model_message(self) -> str:
        if self.production.target is None:
            return (
                "no production model: an admin promotes one "
                "(`regrasp model promote MODEL_ID`, or the UI's Models page)"
            )
        return self.production.error or (
            f"production model {self.production.target} is loading, retry shortly"
        )

    def _production_name(self) -> str | None:
        with session_scope(self._engine) as session:
            found = model_registry.resolve_alias(session, model_registry.PRODUCTION)
        return found[1] if found is not None else None

    def _resolve_name(self, ref: str | int) -> str:
        """A model reference (row id or store name) as the store name (ids looked up once)."""
        key = model_registry.model_ref(ref)
        if not key.isdigit():
            return key
        name = self._names.get(key)
        if name is None:
            with session_scope(self._engine) as session:
                try:
                    name = model_registry.store_name(model_registry.find_model(session, key))
                except NotFound:
                    name = key  # a store name made of digits, with no row (tests, imports)
            self._names[key] = name
        return name

    async def _forward(self, inputs: Sequence[np.ndarray], served: ServedModel) -> list[Any]:
        names, parked = self.tickets.park(inputs, served)
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
            self.tickets.release(names, parked)
        return parked

    def _self_client(self) -> Any:
        # `to_async` is set by BentoML after __init__: a client of this process's own app.
        # Its sessions are built lazily from `default_headers`, so the service key added
        # before the first call authenticates every self-call at the gate.
        client = self.to_async  # type: ignore[attr-defined]
        if not self._self_client_ready:
            client.default_headers["Authorization"] = f"Bearer {self._service_key}"
            self._self_client_ready = True
        return client

    def _prepare_upload(
        self, served: ServedModel, depth: Path | None, rgb: Path | None
    ) -> Prepared:
        return prepare(
            spec=served.spec,
            depth=depth.read_bytes() if depth is not None else None,
            rgb=rgb.read_bytes() if rgb is not None else None,
            max_side=self.settings.inference_max_side,
        )


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
    service = _current_service()
    return JSONResponse(service.model_info().model_dump(mode="json"))


async def _get_stats(_: Request) -> JSONResponse:
    """The batch-size history and the requests in flight (what /metrics exports), as JSON."""
    service = _current_service()
    return JSONResponse(
        ServingStats(
            batch_sizes=service.tickets.history.histogram(),
            in_flight=service.in_flight.counts(),
        ).model_dump(mode="json")
    )


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
    """Ask Linux to send this worker SIGTERM when its supervisor dies.

    BentoML's supervisor starts each worker in a session of its own, so a supervisor
    killed with SIGKILL would otherwise leave the worker running with the model and its
    GPU memory. Not available elsewhere: no-op.
    """
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
