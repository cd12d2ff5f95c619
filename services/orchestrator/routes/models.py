"""The model registry: list models with their evaluation accuracy, promote one (admins).

Promotion moves an alias (`production`: what robots get); the inference replicas follow it
within `REGRASP_INFERENCE_ALIAS_POLL_SECONDS`. Rounds and campaigns never call this.
"""

from __future__ import annotations

from fastapi import APIRouter

from regrasp.api.models import ModelPromote, ModelPublic
from regrasp.learn import model_registry
from regrasp.platform.errors import NotFound
from services.orchestrator.deps import AdminUser, CurrentUser, SessionDep
from services.orchestrator.routes import ERRORS

router = APIRouter(tags=["models"], responses=ERRORS)


@router.get("/models", response_model=list[ModelPublic])
def list_all(_user: CurrentUser, session: SessionDep) -> list[ModelPublic]:
    """Every registered model, newest first, with accuracy and aliases."""
    return [_public(m) for m in model_registry.list_models(session)]


@router.get("/models/{model_id}", response_model=ModelPublic)
def get(model_id: int, _user: CurrentUser, session: SessionDep) -> ModelPublic:
    """One model."""
    return _public(model_registry.get_model(session, model_id))


@router.post("/models/{model_id}/promote", response_model=ModelPublic)
def promote(
    model_id: int, body: ModelPromote, admin: AdminUser, session: SessionDep
) -> ModelPublic:
    """Point an alias (default `production`) at this model (admins only)."""
    return _public(model_registry.promote(session, model_id, alias=body.alias, by=admin.user_id))


@router.get("/model-aliases/{alias}", response_model=ModelPublic)
def aliased(alias: str, _user: CurrentUser, session: SessionDep) -> ModelPublic:
    """The model an alias points at (404 when none was promoted)."""
    found = model_registry.resolve_alias(session, alias)
    if found is None:
        raise NotFound(f"no model is promoted to {alias!r}: an admin runs `regrasp model promote`")
    return _public(model_registry.get_model(session, found[0]))


def _public(model: model_registry.RegisteredModel) -> ModelPublic:
    return ModelPublic.model_validate(model)
