"""Request dependencies as annotated aliases: database session, object store, caller."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from regrasp.accounts import Principal, authenticate_bearer, authorize_route
from regrasp.auth import verify_token
from regrasp.errors import PermissionDenied
from regrasp.settings import Settings
from regrasp.store.db.engine import session_scope
from regrasp.store.objects.base import ObjectStore

#: Bearer credentials: a login token, a robot's API key or the services' shared key.
_bearer = OAuth2PasswordBearer(tokenUrl="auth/login", auto_error=False)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.session_factory


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
    with session_scope(request.app.state.session_factory) as session:
        yield session


async def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
# scope="function": the commit happens when the route returns, so a failed commit is the
# response (never a 200 for data that was not written) and the next request sees the data.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
StoreDep = Annotated[ObjectStore, Depends(get_store)]


def current_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credential: Annotated[str | None, Depends(_bearer)],
) -> Principal:
    """The caller. A login token's user is remembered for `auth_cache_seconds` (a person
    sends the same token on every click; the user row rarely changes): the token itself
    (signature, expiry) is still verified on every request, only the read is saved."""
    secret = settings.secret_key.get_secret_value()
    cache: dict[str, tuple[Principal, float]] = request.app.state.auth_cache
    ttl = settings.auth_cache_seconds
    is_token = bool(credential) and not credential.startswith("rgk_")  # type: ignore[union-attr]
    if ttl > 0 and is_token:
        digest = hashlib.sha256(credential.encode()).hexdigest()  # type: ignore[union-attr]
        cached = cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            verify_token(secret, credential)  # type: ignore[arg-type]
            authorize_route(cached[0], "orchestrator", request.method, request.url.path)
            return cached[0]
    principal = authenticate_bearer(
        session,
        credential,
        token_secret=secret,
        service_key=settings.service_api_key.get_secret_value(),
    )
    authorize_route(principal, "orchestrator", request.method, request.url.path)
    if ttl > 0 and is_token and principal.via == "token":
        if len(cache) > 10_000:
            cache.clear()
        cache[digest] = (principal, time.monotonic() + ttl)
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


async def require_admin(principal: CurrentUser) -> Principal:
    if not principal.is_admin:
        raise PermissionDenied(f"{principal.username or 'caller'} is not an admin")
    return principal


AdminUser = Annotated[Principal, Depends(require_admin)]
