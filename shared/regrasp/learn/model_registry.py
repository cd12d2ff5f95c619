"""The model registry's aliases: which model robots get (`production`), MLflow-style.

Every trained model is a `models` row plus its files in the object store. A model becomes
what robots are served only when an admin *promotes* it: the `production` alias then points
at it (`model_aliases`), and the move is recorded (`model_alias_events`). Rounds and
campaigns train and predict with their own models by naming them; nothing here is called
by them, so a round can never change what a robot gets.

A model's id is its `models` row id (an int); its name is the folder of its files in the
object store (`store_name`: a trained model's is its id in digits; a model registered
without a row, e.g. a test's "random", has only a name).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.platform.clock import utcnow
from regrasp.platform.errors import InvalidInput, NotFound
from regrasp.platform.store import keys
from regrasp.platform.store.db.tables import Model, ModelAlias, ModelAliasEvent, ModelStatus

#: The alias the inference service serves to callers that name no model.
PRODUCTION = "production"
#: Metrics shown as a model's evaluation accuracy, first present wins.
ACCURACY_METRICS = ("test_accuracy", "val_accuracy")
_ALIAS_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class RegisteredModel:
    """A model as the registry lists it: what an admin needs to decide a promotion."""

    id: int
    name: str  # object-store name, what the inference service loads
    architecture: str
    status: str
    dataset_id: int | None
    dataset_version: int | None
    accuracy: float | None
    accuracy_metric: str | None
    metrics: dict[str, Any]
    aliases: tuple[str, ...]
    created_at: datetime


def store_name(row: Model) -> str:
    """The object-store name of a `models` row (`models/<name>/weights.pt`)."""
    prefix = f"{keys.MODELS_ROOT}/"
    key = row.weights_key or ""
    if key.startswith(prefix) and "/" in key[len(prefix) :]:
        return key[len(prefix) :].split("/", 1)[0]
    return keys.model_store_name(row.id)


def list_models(session: Session, *, status: str | None = None) -> list[RegisteredModel]:
    """Every model, newest first, with its evaluation accuracy and aliases."""
    query = sa.select(Model).order_by(Model.id.desc())
    if status is not None:
        query = query.where(Model.status == ModelStatus(status))
    aliases = _aliases_by_model(session)
    return [_entry(row, aliases.get(row.id, ())) for row in session.scalars(query).all()]


def get_model(session: Session, model_id: int) -> RegisteredModel:
    row = session.get(Model, model_id)
    if row is None:
        raise NotFound(f"model {model_id} does not exist")
    return _entry(row, _aliases_by_model(session).get(row.id, ()))


def store_name_of(session: Session, model_id: int) -> str:
    """The object-store name of model `model_id`; NotFound when there is no such row."""
    row = session.get(Model, model_id)
    if row is None:
        raise NotFound(f"model {model_id} does not exist")
    return store_name(row)


def resolve_alias(session: Session, alias: str = PRODUCTION) -> tuple[int, str] | None:
    """(row id, store name) of the model `alias` points at; None when it is unset."""
    row = session.get(ModelAlias, alias, populate_existing=True)
    if row is None:
        return None
    model = session.get(Model, row.model_id)
    return (row.model_id, store_name(model)) if model is not None else None


def promote(
    session: Session, model_id: int, *, alias: str = PRODUCTION, by: int | None = None
) -> RegisteredModel:
    """Point `alias` at model `model_id` (a ready model with weights); records the move.

    Promoting the model the alias already points at changes nothing and records nothing.
    """
    _check_alias(alias)
    row = session.get(Model, model_id)
    if row is None:
        raise NotFound(f"model {model_id} does not exist")
    if row.status is not ModelStatus.ready or not row.weights_key:
        raise InvalidInput(
            f"model {model_id} is {row.status.value}: only a ready model with weights can be "
            f"promoted to {alias!r}"
        )
    current = session.get(ModelAlias, alias, with_for_update=True)
    previous = current.model_id if current is not None else None
    if previous != model_id:
        if current is None:
            session.add(ModelAlias(alias=alias, model_id=model_id, set_by=by))
        else:
            current.model_id, current.set_by = model_id, by
            current.set_at = utcnow()
        session.add(
            ModelAliasEvent(alias=alias, model_id=model_id, previous_model_id=previous, by=by)
        )
        session.flush()
    return get_model(session, model_id)


def alias_history(session: Session, alias: str = PRODUCTION) -> list[ModelAliasEvent]:
    """Every move of `alias`, newest first."""
    query = (
        sa.select(ModelAliasEvent)
        .where(ModelAliasEvent.alias == alias)
        .order_by(ModelAliasEvent.id.desc())
    )
    return list(session.scalars(query).all())


# --- private ----------------------------------------------------------------------------


def _check_alias(alias: str) -> None:
    if not alias or len(alias) > 64 or not set(alias) <= _ALIAS_CHARS:
        raise InvalidInput("alias must be 1-64 characters of a-z, 0-9, '-', '_'")


def _aliases_by_model(session: Session) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    for row in session.scalars(sa.select(ModelAlias).order_by(ModelAlias.alias)).all():
        out.setdefault(row.model_id, []).append(row.alias)
    return {k: tuple(v) for k, v in out.items()}


def _entry(row: Model, aliases: tuple[str, ...]) -> RegisteredModel:
    metrics = dict(row.metrics or {})
    metric = next((m for m in ACCURACY_METRICS if metrics.get(m) is not None), None)
    return RegisteredModel(
        id=row.id,
        name=store_name(row),
        architecture=row.architecture,
        status=row.status.value,
        dataset_id=row.dataset_id,
        dataset_version=row.dataset_version,
        accuracy=float(metrics[metric]) if metric is not None else None,
        accuracy_metric=metric,
        metrics=metrics,
        aliases=aliases,
        created_at=row.created_at,
    )
