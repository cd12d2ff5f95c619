"""Request dependencies as annotated aliases: database session, object store, caller.

The session, settings and caller dependencies are every service's (`regrasp.platform.web.fastapi`);
what is the orchestrator's own: its object store, its session factory (for work that
outlives the request), the login route its docs sign in at, the token cache, and `Work`:
the busiest routes' database work in one worker thread and one session (`RequestWork`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from regrasp.platform.accounts import Principal, authenticate_bearer, authorize_route
from regrasp.platform.auth import verify_token
from regrasp.platform.errors import Unauthenticated
from regrasp.platform.settings import Settings
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.objects.base import ObjectStore
from regrasp.platform.web import bearer_credential
from regrasp.platform.web.fastapi import (
    SessionDep,
    SettingsDep,
    admin_dependency,
    caller_dependency,
)

__all__ = [
    "AdminUser",
    "CurrentUser",
    "SessionDep",
    "SessionFactoryDep",
    "SettingsDep",
    "StoreDep",
    "Work",
]

T = TypeVar("T")


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.session_factory


async def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]

#: The caller: a login token (its user cached for `auth_cache_seconds`), a robot's API key
#: or the services' shared key.
current_principal = caller_dependency("orchestrator", token_url="auth/login", cache_tokens=True)
CurrentUser = Annotated[Principal, Depends(current_principal)]
AdminUser = Annotated[Principal, Depends(admin_dependency(current_principal))]


# --- one thread hop per request: `Work` --------------------------------------------------


class _Credential(OAuth2PasswordBearer):
    """The bearer credential for `Work`, documented like `CurrentUser`'s (password flow at
    the login route) and read by `bearer_credential` like every other."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return bearer_credential(request.headers.get("authorization"))


_credential = _Credential(
    tokenUrl="auth/login", scheme_name="OAuth2PasswordBearer", auto_error=False
)


def _screen(settings: Settings, credential: str | None) -> str | None:
    """The checks that need no database: Unauthenticated for a missing credential and for
    a token whose signature or expiry is wrong. Returns the token's cache key (None for
    API keys and the service key, which are not cached)."""
    if not credential:
        raise Unauthenticated("missing bearer credential")
    service_key = settings.service_api_key.get_secret_value()
    if service_key and hmac.compare_digest(credential.encode(), service_key.encode()):
        return None
    if credential.startswith("rgk_"):
        return None
    verify_token(settings.secret_key.get_secret_value(), credential)
    return hashlib.sha256(credential.encode()).hexdigest()


def _resolve(
    request: Request,
    settings: Settings,
    credential: str | None,
    session: Session,
    digest: str | None,
) -> Principal:
    """The caller after `_screen`: from the token cache, or read (user, API key) and
    cached; then the route rules (`authorize_route`), as `CurrentUser` does."""
    principal = None
    ttl = settings.auth_cache_seconds
    cache: dict[str, tuple[Principal, float]] = request.app.state.auth_cache
    if digest is not None and ttl > 0:
        cached = cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            principal = cached[0]
    if principal is None:
        principal = authenticate_bearer(
            session,
            credential,
            token_secret=settings.secret_key.get_secret_value(),
            service_key=settings.service_api_key.get_secret_value(),
        )
        if digest is not None and ttl > 0 and principal.via == "token":
            if len(cache) > 10_000:
                cache.clear()
            cache[digest] = (principal, time.monotonic() + ttl)
    authorize_route(principal, "orchestrator", request.method, request.url.path)
    return principal


class RequestWork:
    """A route's whole database work in ONE worker thread and ONE session.

    FastAPI runs every sync dependency and sync route in a worker thread of its own, and
    the response check of a sync route in another: a sync route with a session and a
    caller costs five thread hops. The busiest routes (the annotators' review routes) are
    async instead and hand this object one function, `fn(session, caller)`, run in a
    single hop: the caller resolved in the same session when the cache does not know a
    token's user, the route's work, the commit before the answer (a failed commit is the
    response). The caller is refused before the body is read, as with `CurrentUser`: a
    missing, forged or expired token and any bad or out-of-scope API key answer 401/403
    whatever the body.
    """

    def __init__(
        self,
        request: Request,
        credential: str | None,
        digest: str | None,
        known: Principal | None,
    ) -> None:
        self._request = request
        self._credential = credential
        self._digest = digest
        self._known = known

    @property
    def settings(self) -> Settings:
        return self._request.app.state.settings

    async def __call__(self, fn: Callable[[Session, Principal], T]) -> T:
        """`fn(session, caller)` in one worker thread, committed before it returns."""
        return await anyio.to_thread.run_sync(self._run, fn)

    def _run(self, fn: Callable[[Session, Principal], T]) -> T:
        request = self._request
        with session_scope(request.app.state.session_factory) as session:
            principal = self._known or _resolve(
                request, request.app.state.settings, self._credential, session, self._digest
            )
            return fn(session, principal)


async def request_work(
    request: Request, credential: Annotated[str | None, Depends(_credential)]
) -> RequestWork:
    """Screen the caller before the body is read; the work itself runs in the route."""
    settings = request.app.state.settings
    digest = _screen(settings, credential)
    known = None
    if digest is None:
        # The services' key or an API key (not people's way in): resolved now, in a
        # session of its own, so that a robot key is refused before the body is read.
        known = await anyio.to_thread.run_sync(_resolve_alone, request, settings, credential)
    return RequestWork(request, credential, digest, known)


def _resolve_alone(request: Request, settings: Settings, credential: str | None) -> Principal:
    with session_scope(request.app.state.session_factory) as session:
        return _resolve(request, settings, credential, session, None)


Work = Annotated[RequestWork, Depends(request_work)]
