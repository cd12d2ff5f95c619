"""Password login → bearer token, rate-limited per username and client."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from regrasp.api.accounts import Token
from regrasp.api.common import ErrorPublic
from regrasp.platform.accounts import authenticate_password, login_token
from regrasp.platform.clock import utcnow
from regrasp.platform.errors import Unauthenticated
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.throttle import (
    check_login_allowed,
    clear_login_failures,
    record_login_failure,
)
from services.orchestrator.deps import SessionFactoryDep, SettingsDep

router = APIRouter(
    prefix="/auth",
    tags=["auth"],
    responses={code: {"model": ErrorPublic} for code in (401, 422, 429)},
)


@router.post("/login", response_model=Token)
def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    settings: SettingsDep,
    factory: SessionFactoryDep,
) -> Token:
    """Exchange a username and password (form fields) for a bearer token."""
    client = request.client.host if request.client else "unknown"
    window = timedelta(seconds=settings.login_failure_window_seconds)
    with session_scope(factory) as session:
        check_login_allowed(
            session,
            form.username,
            client,
            max_failures=settings.login_max_failures,
            window=window,
        )
    try:
        with session_scope(factory) as session:
            user = authenticate_password(session, form.username, form.password)
            clear_login_failures(session, form.username, client)
    except Unauthenticated:
        # Its own transaction: the failure must be counted although the request fails.
        with session_scope(factory) as session:
            record_login_failure(session, form.username, client, window=window)
        raise
    ttl = settings.token_ttl_seconds
    return Token(
        access_token=login_token(
            user, secret=settings.secret_key.get_secret_value(), ttl_seconds=ttl
        ),
        expires_at=utcnow() + timedelta(seconds=ttl),
        expires_in=ttl,
    )
