"""API keys for robots and scripts (admins only); a key is shown once, stored hashed.

A key's scope is chosen here (default `robot`: only /predict and /model of the inference
service), never inherited from the admin who made it."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response, status

from regrasp.api.accounts import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from regrasp.platform.accounts import create_api_key, revoke_api_key
from regrasp.platform.errors import InvalidInput
from regrasp.platform.store.db.tables import ApiKey
from services.orchestrator.deps import AdminUser, SessionDep
from services.orchestrator.routes import ERRORS

router = APIRouter(prefix="/api-keys", tags=["api keys"], responses=ERRORS)


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create(body: ApiKeyCreate, admin: AdminUser, session: SessionDep) -> ApiKeyCreated:
    """Create a key acting as `owner_id` (default: the caller); the answer holds the key once."""
    owner = body.owner_id if body.owner_id is not None else admin.user_id
    if owner is None:
        raise InvalidInput("owner_id is required when the caller is not a user")
    made = create_api_key(session, owner_id=owner, name=body.name, scope=body.scope)
    row = session.scalar(sa.select(ApiKey).where(ApiKey.prefix == made.prefix))
    return ApiKeyCreated.model_validate({**_public(row).model_dump(), "key": made.key})


@router.get("", response_model=list[ApiKeyPublic])
def list_all(_admin: AdminUser, session: SessionDep) -> list[ApiKeyPublic]:
    """Every key, without the secret."""
    return [_public(k) for k in session.scalars(sa.select(ApiKey).order_by(ApiKey.id)).all()]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def revoke(key_id: int, _admin: AdminUser, session: SessionDep) -> Response:
    """Revoke a key: it stops working at once."""
    revoke_api_key(session, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _public(row: ApiKey | None) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(row)
