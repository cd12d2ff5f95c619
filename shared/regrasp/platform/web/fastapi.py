"""The FastAPI side of `regrasp.platform.web`, shared by the orchestrator and the trainer.

- `install_error_handlers`: domain errors as `{"error", "detail"}` with their HTTP status,
  malformed requests as a 422 naming each bad field, anything unexpected as a bare 500
  (logged here, never a traceback to the client);
- `SettingsDep`: the app's `Settings` (`app.state.settings`, built in the entrypoint);
- `SessionDep`: one database transaction per request (`app.state.session_factory`),
  committed in this one place when the route returns, before the response is sent, so a
  failed commit is the response (never a 200 for data that was not written) and the
  caller's next request sees the data. A route commits early only to hand the change to
  someone else first (a background runner it wakes: `commit_and_wake`);
- `caller_dependency(service)`: who calls, from the bearer credential
  (`regrasp.platform.accounts.authenticate_bearer`), checked against the service's route rules
  (`accounts.authorize_route`); 401 / 403 otherwise. `admin_dependency` adds "admins and
  services only".

Not `from __future__ import annotations`: FastAPI reads the dependencies' annotations at
run time, and those of the factories' functions name their closure's scheme.
"""

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from regrasp.platform.accounts import Principal, authenticate_bearer, authorize_route
from regrasp.platform.auth import verify_token
from regrasp.platform.errors import PermissionDenied, RegraspError, TooManyRequests
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.web import bearer_credential, error_body

__all__ = [
    "SessionDep",
    "SettingsDep",
    "admin_dependency",
    "caller_dependency",
    "get_session",
    "get_settings",
    "install_error_handlers",
]

logger = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors, malformed requests and anything unexpected as `error_body` answers."""

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RegraspError)
        status = exc.http_status
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        if status >= 500:
            logger.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse(error_body(str(exc)), status_code=status, headers=headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(error_body("; ".join(parts) or "invalid request"), status_code=422)

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal error (logged on the server)"), status_code=500)

    app.add_exception_handler(RegraspError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
    with session_scope(request.app.state.session_factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the commit happens when the route returns, so a failed commit is the
# response (never a 200 for data that was not written) and the next request sees the data.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class _PasswordFlowBearer(OAuth2PasswordBearer):
    """The bearer credential, documented as OAuth2's password flow (the docs page signs in
    at the service's login route); read by `bearer_credential` like every other."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return bearer_credential(request.headers.get("authorization"))


class _PlainBearer(HTTPBearer):
    """The bearer credential, documented as HTTP bearer (a token or key pasted)."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return bearer_credential(request.headers.get("authorization"))


def caller_dependency(
    service: str, *, token_url: str | None = None, cache_tokens: bool = False
) -> Callable[..., Principal]:
    """The dependency that says who calls `service` ("orchestrator", "trainer").

    The credential is a login token, an API key or the services' shared key; `token_url`
    (the service's login route) documents it as the password flow, otherwise as a plain
    bearer. With `cache_tokens`, a login token's user is remembered for
    `auth_cache_seconds` in `app.state.auth_cache` (a person sends the same token on every
    click; the user row rarely changes): the token itself (signature, expiry) is still
    verified on every request, only the read is saved.
    """
    scheme = (
        _PasswordFlowBearer(
            tokenUrl=token_url, scheme_name="OAuth2PasswordBearer", auto_error=False
        )
        if token_url
        else _PlainBearer(scheme_name="HTTPBearer", auto_error=False)
    )

    def current_principal(
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        credential: Annotated[str | None, Depends(scheme)],
    ) -> Principal:
        """The caller (401 without a valid credential, 403 outside its scope)."""
        secret = settings.secret_key.get_secret_value()
        cache: dict[str, tuple[Principal, float]] = (
            request.app.state.auth_cache if cache_tokens else {}
        )
        ttl = settings.auth_cache_seconds if cache_tokens else 0.0
        is_token = bool(credential) and not credential.startswith("rgk_")  # type: ignore[union-attr]
        if ttl > 0 and is_token:
            digest = hashlib.sha256(credential.encode()).hexdigest()  # type: ignore[union-attr]
            cached = cache.get(digest)
            if cached is not None and cached[1] > time.monotonic():
                verify_token(secret, credential)  # type: ignore[arg-type]
                authorize_route(cached[0], service, request.method, request.url.path)
                return cached[0]
        principal = authenticate_bearer(
            session,
            credential,
            token_secret=secret,
            service_key=settings.service_api_key.get_secret_value(),
        )
        authorize_route(principal, service, request.method, request.url.path)
        if ttl > 0 and is_token and principal.via == "token":
            if len(cache) > 10_000:
                cache.clear()
            cache[digest] = (principal, time.monotonic() + ttl)
        return principal

    return current_principal


def admin_dependency(caller: Callable[..., Principal]) -> Callable[..., Any]:
    """The dependency that lets only admins and the services past `caller` (403 otherwise)."""

    async def require_admin(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        if not principal.is_admin:
            raise PermissionDenied(f"{principal.username or 'caller'} is not an admin")
        return principal

    return require_admin
