"""The ASGI gate in front of every route of the inference service, and its error shape.

- Bearer auth (the header read by `regrasp.platform.web.bearer_credential`, the credential resolved
  by `regrasp.platform.accounts.authenticate_bearer` through the service's cached `authenticate`)
  everywhere but the public paths (probes, metrics, docs): 401 with a message when
  missing or wrong; then the key's scope (`accounts.authorize_route`: a robot
  key reaches only POST /predict and GET /model) and the route's own rule (internal
  routes: services only; admin routes: admins and services), 403 otherwise;
- 411 for a POST without Content-Length, 413 for a body over the limit, before reading it;
- the caller (`Principal`) left in `CALLER` for the handler (which models it may name);
- every error response rewritten as `regrasp.platform.web.error_body`, a domain 5xx with its
  own message (BentoML replaces 5xx messages by a generic text);
- `OneLineClientErrors`: BentoML logs every 4xx with a full traceback; one line is enough.

Framework-free (plain ASGI), so any of our HTTP services can put it in front.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread

from regrasp.platform.accounts import SERVICE_ROLE, Principal, authorize_route
from regrasp.platform.errors import PermissionDenied, StorageError, Unauthenticated
from regrasp.platform.web import bearer_credential, error_body
from regrasp.platform.web.body_limit import declared_length, too_large_message

logger = logging.getLogger(__name__)

#: The authenticated caller of the request being handled (set by the gate).
CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "regrasp_caller", default=None
)
#: Where a request's 5xx message waits for the gate (a holder per request, shared with the
#: handler even when it runs in a copied context).
SERVER_ERROR: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "regrasp_server_error", default=None
)


class GatedService(Protocol):
    """What the gate needs of the service behind it."""

    def authenticate(self, credential: str) -> Principal: ...

    @property
    def max_request_bytes(self) -> int: ...


@dataclass(frozen=True)
class Routes:
    """A service's route rules for the gate."""

    service: str  # name in `accounts.ROBOT_ROUTES`, e.g. "inference"
    public: frozenset[str] = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
    public_prefixes: tuple[str, ...] = ()
    internal: frozenset[str] = frozenset()  # services only
    admin: frozenset[str] = frozenset()  # admins and services
    limit_setting: str = "REGRASP_INFERENCE_MAX_REQUEST_BYTES"


def remember_server_error(message: str) -> None:
    """Keep a domain error's message for the response (BentoML hides those of 401, 403
    and 5xx behind generic texts)."""
    holder = SERVER_ERROR.get()
    if holder is not None:
        holder["message"] = message


class Gate:
    """ASGI middleware: `Gate(app, routes=..., service=lambda: the service or None)`."""

    def __init__(
        self, app: Any, *, routes: Routes, service: Callable[[], GatedService | None]
    ) -> None:
        self.app, self.routes, self.service = app, routes, service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.routes.public or path.startswith(self.routes.public_prefixes):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        outcome = await self._admit(scope, path, headers)
        if isinstance(outcome, tuple):
            await send_error(send, *outcome)
            return
        holder: dict[str, str] = {}
        tokens = SERVER_ERROR.set(holder), CALLER.set(outcome)
        try:
            await self.app(scope, receive, _ErrorShaper(send, holder))
        finally:
            SERVER_ERROR.reset(tokens[0])
            CALLER.reset(tokens[1])

    async def _admit(
        self, scope: dict, path: str, headers: dict[str, str]
    ) -> Principal | tuple[int, str]:
        service = self.service()
        if service is None:
            return 503, "service is starting"
        credential = bearer_credential(headers.get("authorization"))
        if credential is None:
            return 401, "missing credential: send Authorization: Bearer <API key>"
        try:
            principal = await anyio.to_thread.run_sync(service.authenticate, credential)
        except Unauthenticated as exc:
            return 401, str(exc)
        except StorageError:
            logger.exception("authentication failed on the database")
            return 503, "authentication is unavailable (database), retry later"
        try:
            authorize_route(principal, self.routes.service, scope["method"], path)
        except PermissionDenied as exc:
            return 403, str(exc)
        if path in self.routes.internal and principal.role != SERVICE_ROLE:
            return 403, "internal route: services only"
        if path in self.routes.admin and not principal.is_admin:
            return 403, f"{path} needs an admin or service credential"
        if scope["method"] == "POST":
            length = declared_length(scope)
            if length is None:
                return 411, "POST needs a Content-Length header"
            limit = service.max_request_bytes
            if not 0 <= length <= limit:
                return 413, too_large_message(limit, self.routes.limit_setting)
        return principal


class OneLineClientErrors(logging.Filter):
    """Turns BentoML's "Exception on /path [POST]" + traceback into one line for a client
    error (a 4xx the caller caused, or a request validation error); 5xx keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = _client_status(exc)
        if status is not None:
            record.msg = f"{record.getMessage()} -> {status}: {' '.join(str(exc).split())[:300]}"
            record.args, record.exc_info, record.exc_text = None, None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _client_status(exc: BaseException | None) -> int | None:
    if exc is None:
        return None
    code = getattr(exc, "error_code", None)
    value = getattr(code, "value", code)
    if isinstance(value, int) and 400 <= value < 500:
        return value
    if type(exc).__name__ == "ValidationError":  # pydantic: the request's own fields
        return 400
    return None


class _ErrorShaper:
    """Wraps `send`: error responses (>= 400) are buffered and re-sent as one JSON shape,
    a 5xx with the domain error's message when the handler left one in `holder`."""

    def __init__(self, send: Any, holder: dict[str, str]) -> None:
        self.send, self.holder = send, holder
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
        text = self.holder.get("message")
        await send_error(self.send, status, text or error_message(bytes(self.body)))


def error_message(body: bytes) -> str:
    """The one sentence of an error body (BentoML's, pydantic's or ours)."""
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


async def send_error(send: Any, status: int, message: str) -> None:
    """One error response `{"error": message, "detail": message}`."""
    body = json.dumps(error_body(message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
