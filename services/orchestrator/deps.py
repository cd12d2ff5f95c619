"""Request dependencies as annotated aliases: database session, object store, caller.

The session, settings and caller dependencies are every service's (`regrasp.web.fastapi`);
what is the orchestrator's own: its object store, its session factory (for work that
outlives the request), the login route its docs sign in at and the token cache.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from regrasp.accounts import Principal
from regrasp.store.objects.base import ObjectStore
from regrasp.web.fastapi import (
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
]


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
