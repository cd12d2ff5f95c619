"""Users: who am I, and (admins) create and list people and reset their passwords."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, status

from regrasp.api.accounts import PasswordSet, UserCreate, UserPublic
from regrasp.platform.accounts import create_user, set_password
from regrasp.platform.errors import NotFound
from regrasp.platform.store.db.tables import User
from services.orchestrator.deps import AdminUser, CurrentUser, SessionDep
from services.orchestrator.routes import ERRORS

router = APIRouter(prefix="/users", tags=["users"], responses=ERRORS)


@router.get("/me", response_model=UserPublic)
def me(principal: CurrentUser, session: SessionDep) -> UserPublic:
    """The calling user."""
    user = session.get(User, principal.user_id) if principal.user_id is not None else None
    if user is None:
        raise NotFound("the caller is the services' shared key, not a user")
    return UserPublic.model_validate(user)


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create(body: UserCreate, _admin: AdminUser, session: SessionDep) -> UserPublic:
    """Create an annotator or an admin (admins only)."""
    user = create_user(session, username=body.username, password=body.password, role=body.role)
    return UserPublic.model_validate(user)


@router.get("", response_model=list[UserPublic])
def list_all(_admin: AdminUser, session: SessionDep) -> list[UserPublic]:
    """Every user (admins only)."""
    rows = session.scalars(sa.select(User).order_by(User.id)).all()
    return [UserPublic.model_validate(u) for u in rows]


@router.put("/{user_id}/password", response_model=UserPublic)
def reset_password(
    user_id: int, body: PasswordSet, _admin: AdminUser, session: SessionDep
) -> UserPublic:
    """Set a user's password (admins only); the old one stops working at once."""
    return UserPublic.model_validate(set_password(session, user_id, body.password))
