"""Request dependencies of the trainer API, as annotated aliases (`SessionDep`, `AdminDep`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from regrasp.accounts import Principal, authenticate_bearer, authorize_route
from regrasp.errors import PermissionDenied
from regrasp.settings import Settings
from regrasp.store.db.engine import session_scope


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed on success, rolled back on any error."""
    with session_scope(request.app.state.sessions) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_principal(request: Request, session: SessionDep, settings: SettingsDep) -> Principal:
    """Who calls: a user's token, an API key, or the services' shared key (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    principal = authenticate_bearer(
        session,
        credential.strip() if scheme.lower() == "bearer" else None,
        token_secret=settings.secret_key.get_secret_value(),
        service_key=settings.service_api_key.get_secret_value(),
    )
    authorize_route(principal, "trainer", request.method, request.url.path)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_admin(principal: CurrentPrincipal) -> Principal:
    # Jobs take GPU hours: only admins and the services may queue or cancel them.
    if not principal.is_admin:
        raise PermissionDenied("only an admin or a service may change trainer jobs")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
