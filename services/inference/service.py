"""The inference service: a BentoML 1.4 shell over `regrasp.predict`.

    bentoml serve services.inference.service:InferenceService --host 127.0.0.1 --port 3000

Endpoints (every one but health, metrics and docs needs `Authorization: Bearer <key>`: a
robot's API key, a user token or the services' key):

- `POST /predict` (multipart: `depth` float32 TIFF in metres and/or `rgb` PNG/JPEG, any
  size; form fields `k`, `min_quality`) → ranked grasps in the uploaded image's pixels;
- `POST /predict_stored` (`{dataset_id, version, image_ids, k}`) → top-k grasps per stored
  image, a per-image `error` instead of a failed call (a bad or missing image); an
  unreachable object store fails the whole call with 503, so the caller retries it;
- `GET /model` → which registered model is served; `POST /reload {model_id}` (admins and
  services) → load another one, then swap;
- `/healthz`, `/livez`, `/readyz`, `/metrics` from BentoML, without auth.

Batching: every request's network input goes through `forward_batch`, a batchable
BentoML API. Calling it as `self.to_async.forward_batch(...)` routes the call through
this process's own app, where BentoML's adaptive batching dispatcher merges concurrent
calls into one forward pass. Inputs do not travel through that call: they are parked
in-process under random tickets, and only the tickets (and the caller's service key) go
over the in-process transport. A ticket also pins the model its request started with, so
a reload never mixes models within a request; requests in flight finish on the old one.

Errors: domain errors become `BentoMLException`s with the domain's HTTP status
(`InvalidInput` 422, `NotFound` 404, ...); tracebacks stay in the log. BentoML wraps a 4xx
message as `[{"error": ...}]` and replaces a 5xx message by a generic text; the gate
middleware rewrites every error body to `{"error": ..., "detail": ...}` so robots and
`regrasp.clients` read one shape, with a domain 5xx's own message (e.g. which store is
unreachable) put back.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
import bentoml
import numpy as np
import sqlalchemy as sa
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from bentoml.validators import ContentType
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from regrasp.accounts import SERVICE_ROLE, Principal, authenticate_bearer, authorize_route
from regrasp.body_limit import declared_length, too_large_message
from regrasp.clients.inference import (
    MAX_STORED_IMAGES,
    Grasp,
    ModelInfo,
    PredictResponse,
    PredictStoredResponse,
    StoredPrediction,
    Timings,
)
from regrasp.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    RegraspError,
    StorageError,
    Unauthenticated,
)
from regrasp.predict import DEFAULT_K, MAX_K, Prepared, Ranked, RawPrediction, prepare, to_image
from regrasp.settings import Settings, load_settings
from regrasp.store.db import migrations
from regrasp.store.db.engine import make_engine, session_scope
from regrasp.store.db.tables import Image
from regrasp.store.db.versions import select_images_at
from regrasp.store.objects import store_from_settings

if TYPE_CHECKING:
    from services.inference.model import ServedModel

logger = logging.getLogger(__name__)

#: How long a successful credential check is reused, seconds.
AUTH_CACHE_SECONDS = 10.0
#: Paths served without a credential: probes, metrics and the API docs.
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json"})
PUBLIC_PREFIXES = ("/static_content/", "/assets/", "/schema.json")
#: Paths that need more than any valid credential.
ADMIN_PATHS = frozenset({"/reload"})
SERVICE_PATHS = frozenset({"/forward_batch"})
MODEL_PATHS = frozenset({"/predict", "/predict_stored"})

ImageUpload = Annotated[Path, ContentType("image/*")]


# --- errors -----------------------------------------------------------------------------


#: Where a request's 5xx message waits for the gate: BentoML answers every 5xx with a
#: generic text, so the gate puts the domain error's own message back (a holder per
#: request, shared with the handler even when it runs in a copied context).
_SERVER_ERROR: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "regrasp_inference_server_error", default=None
)


class RequestRejected(BentoMLException):
    """A request the service will not run; carries the domain error's status and message."""

    @classmethod
    def from_error(cls, error: RegraspError) -> RequestRejected:
        holder = _SERVER_ERROR.get()
        if holder is not None and error.http_status >= 500:
            holder["message"] = str(error)  # e.g. "S3 store ... at host:port failed on <key>"
        return cls(str(error), error_code=HTTPStatus(error.http_status))


class NoModelLoaded(ServiceUnavailable):
    """No model is loaded yet: configure `REGRASP_INFERENCE_MODEL_ID` or POST /reload."""


class Overloaded(ServiceUnavailable):
    """BentoML's batching dispatcher shed the request (its latency budget was exceeded)."""


# --- the service -----------------------------------------------------------------------


def _batching_options() -> dict[str, Any]:
    # BentoML reads batching options from the decorator when it builds the app, before
    # __init__ runs: they are the one setting this module reads when imported.
    settings = load_settings()
    size = settings.inference_max_batch_size
    return {
        "batchable": size > 1,
        "max_batch_size": max(size, 2),  # BentoML requires > 1 even when not batchable
        "max_latency_ms": settings.inference_max_latency_ms,
    }


@dataclass
class _Ticket:
    """A network input parked for `forward_batch`, and what the batch made of it."""

    inputs: np.ndarray
    served: ServedModel
    raw: RawPrediction | None = None
    error: str | None = None
    forward_ms: float = 0.0
    decode_ms: float = 0.0
    batch_size: int = 0


@bentoml.service(
    name="regrasp_inference",
    resources={"gpu": 1},  # reserved when present; on a CPU-only machine BentoML warns and runs
    workers=1,  # one process owns the GPU; scale with replicas
    traffic={"timeout": 300},
    # The self-calls to `forward_batch` share one client session; BentoML replaces it
    # after `max_requests` calls by closing it under the requests still using it. The
    # session only talks to this process's own app, so it never needs replacing.
    runner_connection={"max_requests": 2**31 - 1, "max_age": 1e12},
)
class InferenceService:
    """Grasp prediction for robots and rounds, one registered model at a time."""

    def __init__(self) -> None:
        # torch and the network code load here, not at import (BentoML imports this module
        # in the supervisor process too).
        from services.inference.model import load_served, resolve_device

        _exit_with_supervisor()
        self.settings: Settings = load_settings()
        self._engine = make_engine(self.settings.database_url)
        migrations.prepare(self._engine, mode=self.settings.mode)
        self._store = store_from_settings(self.settings)
        self._device = resolve_device(self.settings.inference_device)
        self._load_served = load_served
        self._service_key = self.settings.service_api_key.get_secret_value()
        self._token_secret = self.settings.secret_key.get_secret_value()
        self._served: ServedModel | None = None
        self._reload_lock = threading.Lock()
        self._tickets: dict[str, _Ticket] = {}
        self._self_client_ready = False
        self._auth_lock = threading.Lock()
        self._auth_cache: dict[str, tuple[Principal, float]] = {}
        if self.settings.inference_model_id:
            self._served = self._load(self.settings.inference_model_id)
        logger.info("inference ready on %s, model %s", self._device, self.model_id)

    # -- probes and state ----------------------------------------------------------------

    def __is_ready__(self) -> bool:
        """Ready when the database answers (auth needs it); a missing model is not a reason
        to stop traffic, or /reload could never reach a fresh replica."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            logger.warning("readiness: database unreachable", exc_info=True)
            return False
        return True

    @property
    def model_id(self) -> str | None:
        served = self._served
        return served.model_id if served is not None else None

    @property
    def has_model(self) -> bool:
        return self._served is not None

    def authenticate(self, credential: str | None) -> Principal:
        """The caller behind a bearer credential; Unauthenticated otherwise.

        Successes are remembered for `AUTH_CACHE_SECONDS` (a robot sends the same key many
        times a second, and each database check writes `last_used_at`); a revoked key is
        refused within that time. Database checks run one at a time: concurrent writers
        of `last_used_at` make SQLite answer "database is locked".
        """
        if (
            credential
            and self._service_key
            and hmac.compare_digest(credential.encode(), self._service_key.encode())
        ):
            return authenticate_bearer(None, credential, service_key=self._service_key)
        digest = hashlib.sha256((credential or "").encode()).hexdigest()
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

    def model_info(self) -> ModelInfo:
        served = self._served
        if served is None:
            return ModelInfo(model_id=None, loaded=False)
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
        )

    # -- public APIs -----------------------------------------------------------------------

    @bentoml.api(route="/predict")
    async def predict(
        self,
        # `Annotated[Path, ContentType] | None` cannot be built (BentoML's ContentType is
        # unhashable), so the optional uploads are typed without None and default to it.
        depth: ImageUpload = None,  # type: ignore[assignment]
        rgb: ImageUpload = None,  # type: ignore[assignment]
        k: Annotated[int, Field(ge=1, le=MAX_K)] = DEFAULT_K,
        min_quality: float | None = None,
    ) -> PredictResponse:
        """Ranked grasps (input image pixels) for an uploaded depth and/or RGB image."""
        start = time.perf_counter()
        served = self._require_model()
        try:
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
        dataset_id: Annotated[int, Field(ge=1)],
        version: Annotated[int, Field(ge=0)],
        image_ids: Annotated[list[int], Field(min_length=1, max_length=MAX_STORED_IMAGES)],
        k: Annotated[int, Field(ge=1, le=MAX_K)] = DEFAULT_K,
        min_quality: float | None = None,
    ) -> PredictStoredResponse:
        """Top-k grasps (image pixels) of stored images; per-image errors, not a failed call."""
        start = time.perf_counter()
        served = self._require_model()
        try:
            rows = await asyncio.to_thread(self._stored_rows, dataset_id, version, image_ids)
        except RegraspError as exc:
            raise RequestRejected.from_error(exc) from exc
        outcome: dict[int, Ranked | str] = {}
        unique = list(dict.fromkeys(image_ids))
        chunk = max(1, self.settings.inference_max_batch_size)
        for first in range(0, len(unique), chunk):
            ids = unique[first : first + chunk]
            try:
                prepared = await asyncio.to_thread(self._prepare_stored, served, ids, rows)
            except RegraspError as exc:  # the store is unreachable: the call fails, 503
                raise RequestRejected.from_error(exc) from exc
            ok = [i for i in ids if isinstance(prepared[i], Prepared)]
            outcome.update({i: prepared[i] for i in ids if isinstance(prepared[i], str)})
            if not ok:
                continue
            tickets = await self._forward([prepared[i].inputs for i in ok], served)
            for image_id, ticket in zip(ok, tickets, strict=True):
                if ticket.error is not None:
                    outcome[image_id] = ticket.error
                    continue
                letterbox = prepared[image_id].letterbox
                outcome[image_id] = to_image(
                    ticket.raw, letterbox=letterbox, k=k, min_quality=min_quality
                )
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

    @bentoml.api(route="/reload")
    async def reload(
        self, model_id: Annotated[str, Field(min_length=1, max_length=128)]
    ) -> ModelInfo:
        """Load registered model `model_id` fully, then swap it in (admins and services)."""
        try:
            await asyncio.to_thread(self._swap, model_id)
        except RegraspError as exc:
            raise RequestRejected.from_error(exc) from exc
        return self.model_info()

    @bentoml.api(route="/forward_batch", **_batching_options())
    def forward_batch(self, tickets: list[str]) -> list[str]:
        """Internal (service key only): one forward pass over the inputs parked under
        `tickets` by this process's own requests; BentoML batches concurrent calls."""
        parked = [self._tickets.get(t) for t in tickets]
        groups: dict[int, list[_Ticket]] = {}
        for ticket in parked:
            if ticket is not None:
                groups.setdefault(id(ticket.served), []).append(ticket)
        for group in groups.values():
            served = group[0].served
            try:
                raws, forward_ms, decode_ms = served.predictor.run(
                    np.stack([t.inputs for t in group])
                )
            except Exception:  # noqa: BLE001 - reported per request, logged with traceback
                logger.exception("forward pass failed on model %s", served.model_id)
                for ticket in group:
                    ticket.error = f"model {served.model_id} failed on this input (see log)"
                continue
            for ticket, raw in zip(group, raws, strict=True):
                ticket.raw, ticket.forward_ms = raw, forward_ms
                ticket.decode_ms, ticket.batch_size = decode_ms / len(group), len(group)
        return tickets

    # -- private ---------------------------------------------------------------------------

    def _require_model(self) -> ServedModel:
        served = self._served
        if served is None:
            raise NoModelLoaded("no model loaded: POST /reload {model_id} first")
        return served

    def _load(self, model_id: str) -> ServedModel:
        return self._load_served(self._store, model_id, device=self._device)

    def _swap(self, model_id: str) -> None:
        # One reload at a time (each holds a full model in memory while it loads); the
        # swap itself is one reference assignment, atomic for the request handlers.
        with self._reload_lock:
            served = self._load(model_id)
            previous, self._served = self._served, served
        logger.info(
            "model %s now serving (was %s)",
            model_id,
            previous.model_id if previous is not None else None,
        )

    async def _forward(self, inputs: Sequence[np.ndarray], served: ServedModel) -> list[_Ticket]:
        names = [secrets.token_urlsafe(18) for _ in inputs]
        parked = [_Ticket(x, served) for x in inputs]
        self._tickets.update(zip(names, parked, strict=True))
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
            for name in names:
                self._tickets.pop(name, None)
        for ticket in parked:
            if ticket.raw is None and ticket.error is None:
                ticket.error = "the batch did not run this input"
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

    def _stored_rows(
        self, dataset_id: int, version: int, image_ids: Sequence[int]
    ) -> dict[int, tuple[str | None, str | None]]:
        """(depth_key, rgb_key) of each requested image present in the version."""
        with session_scope(self._engine) as session:
            found = session.execute(
                select_images_at(dataset_id, version)
                .where(Image.id.in_(set(image_ids)))
                .with_only_columns(Image.id, Image.depth_key, Image.rgb_key)
            ).all()
            _check_dataset_version(session, dataset_id, version)
        return {row.id: (row.depth_key, row.rgb_key) for row in found}

    def _prepare_stored(
        self,
        served: ServedModel,
        image_ids: Sequence[int],
        rows: dict[int, tuple[str | None, str | None]],
    ) -> dict[int, Prepared | str]:
        out: dict[int, Prepared | str] = {}
        spec = served.spec
        for image_id in image_ids:
            if image_id not in rows:
                out[image_id] = "image is not in this dataset version"
                continue
            depth_key, rgb_key = rows[image_id]
            try:
                if spec.needs_depth and not depth_key:
                    raise InvalidInput("image has no depth file")
                if spec.needs_rgb and not rgb_key:
                    raise InvalidInput("image has no RGB file")
                out[image_id] = prepare(
                    spec=spec,
                    depth=self._store.get_bytes(depth_key) if spec.needs_depth else None,
                    rgb=self._store.get_bytes(rgb_key) if spec.needs_rgb else None,
                    max_side=self.settings.inference_max_side,
                )
            except StorageError:
                # The store (not this image) failed: the whole call fails with 503 so the
                # caller retries it later, instead of recording the image as unpredictable.
                raise
            except RegraspError as exc:
                out[image_id] = f"{type(exc).__name__}: {exc}"
        return out


def _check_dataset_version(session: Any, dataset_id: int, version: int) -> None:
    from regrasp.store.db.tables import DatasetVersion

    exists = session.scalar(
        sa.select(DatasetVersion.id).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == version
        )
    )
    if exists is None:
        raise NotFound(f"dataset {dataset_id} has no version {version}")


def _grasps(ranked: Ranked) -> list[Grasp]:
    return [
        Grasp(x=g[0], y=g[1], theta=g[2], opening=g[3], jaw=g[4], quality=q)
        for g, q in zip(ranked.grasps.tolist(), ranked.scores.tolist(), strict=True)
    ]


# --- GET /model ---------------------------------------------------------------------------


async def _get_model(_: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    return JSONResponse(service.model_info().model_dump(mode="json"))


# BentoML APIs are POST-only; this small app answers GET /model beside them (a passive
# mount: it only takes requests no BentoML route matched).
InferenceService.mount_asgi_app(
    Starlette(routes=[Route("/model", _get_model, methods=["GET"])]), path="/", name="model"
)


# --- the gate: auth, admission, body limit, error shape -----------------------------------


class Gate:
    """ASGI middleware in front of every route.

    - Bearer auth (`regrasp.accounts.authenticate_bearer`) everywhere but `PUBLIC_PATHS`:
      401 with a message when missing or wrong; /reload needs an admin or the services'
      key, /forward_batch the services' key (403 otherwise);
    - 503 "no model loaded" for prediction routes before reading their bodies;
    - 413 for bodies over REGRASP_INFERENCE_MAX_REQUEST_BYTES (`regrasp.body_limit`), 411
      for a POST without Content-Length;
    - every error response rewritten as `{"error": msg, "detail": msg}`.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = await self._refusal(scope, path, headers)
        if refusal is not None:
            status, message = refusal
            await _send_error(send, status, message)
            return
        holder: dict[str, str] = {}
        token = _SERVER_ERROR.set(holder)
        try:
            await self.app(scope, receive, _ErrorShaper(send, holder))
        finally:
            _SERVER_ERROR.reset(token)

    async def _refusal(
        self, scope: dict, path: str, headers: dict[str, str]
    ) -> tuple[int, str] | None:
        try:
            service = bentoml.get_current_service()
        except BentoMLException:
            return 503, "service is starting"
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return 401, "missing credential: send Authorization: Bearer <API key>"
        try:
            principal = await anyio.to_thread.run_sync(service.authenticate, credential.strip())
        except Unauthenticated as exc:
            return 401, str(exc)
        except StorageError:
            logger.exception("authentication failed on the database")
            return 503, "authentication is unavailable (database), retry later"
        try:
            authorize_route(principal, "inference", scope["method"], path)
        except PermissionDenied as exc:
            return 403, str(exc)
        if path in SERVICE_PATHS and principal.role != SERVICE_ROLE:
            return 403, str(PermissionDenied("internal route: services only"))
        if path in ADMIN_PATHS and not principal.is_admin:
            return 403, "reloading a model needs an admin or service credential"
        if path in MODEL_PATHS and not service.has_model:
            return 503, "no model loaded: POST /reload {model_id} first"
        if scope["method"] == "POST":
            length = declared_length(scope)
            if length is None:
                return 411, "POST needs a Content-Length header"
            limit = service.settings.inference_max_request_bytes
            if not 0 <= length <= limit:
                return 413, too_large_message(limit, "REGRASP_INFERENCE_MAX_REQUEST_BYTES")
        return None


InferenceService.add_asgi_middleware(Gate)


class _ErrorShaper:
    """Wraps `send`: error responses (>= 400) are buffered and re-sent as one JSON shape,
    a 5xx with the domain error's message when the handler left one in `holder`."""

    def __init__(self, send: Any, holder: dict[str, str] | None = None) -> None:
        self.send = send
        self.holder = holder if holder is not None else {}
        self.status: int | None = None
        self.start: dict | None = None
        self.body = bytearray()

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self.status, self.start = message["status"], message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        status = self.status or 500
        message = self.holder.get("message") if status >= 500 else None
        await _send_error(self.send, status, message or _error_message(bytes(self.body)))


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:1000] or "error"
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict):
        error, detail = data.get("error"), data.get("detail")
        if isinstance(detail, list):  # pydantic validation errors: name the fields
            parts = [
                f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg')}"
                for d in detail
                if isinstance(d, dict)
            ]
            return f"{error}: {'; '.join(parts)}" if parts else str(error)
        return str(detail if isinstance(detail, str) else error)
    return str(data)[:1000]


async def _send_error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message, "detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _exit_with_supervisor() -> None:
    """Ask Linux to send this worker SIGTERM when its supervisor dies.

    BentoML's supervisor starts each worker in a session of its own, so a supervisor
    killed with SIGKILL (an OOM kill, `kill -9` of `bentoml serve`) would otherwise leave
    the worker running with the model and its GPU memory. Not available elsewhere: no-op.
    """
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the supervisor's own shutdown still applies
        logger.warning("could not tie the worker's lifetime to its supervisor")
