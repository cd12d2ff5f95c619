"""Checking a trainer job before it is queued, so a bad request is refused at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.platform.errors import InvalidInput, NotFound
from regrasp.platform.store import keys
from regrasp.platform.store.db.tables import Dataset, JobKind, Model, ModelStatus

__all__ = [
    "EVALUATE_SPLITS",
    "bad_kind",
    "model_store_name",
    "parse_train_config",
    "resolve_dataset",
    "validate_payload",
]

EVALUATE_SPLITS = ("train", "val", "test", "all")


def model_store_name(model_row_id: int) -> str:
    """The object-store name of a model (`models/<name>/…`): its `models` row id."""
    return keys.model_store_name(model_row_id)


def resolve_dataset(session: Session, dataset: str | int) -> Dataset:
    """The dataset named `dataset`, or with that id (an int or a string of digits)."""
    row = None
    if isinstance(dataset, str):
        row = session.scalar(sa.select(Dataset).where(Dataset.name == dataset))
        if row is None and dataset.isdigit():
            row = session.get(Dataset, int(dataset))
    elif isinstance(dataset, int) and not isinstance(dataset, bool):
        row = session.get(Dataset, dataset)
    else:
        raise InvalidInput(f"dataset must be a name or an id, got {dataset!r}")
    if row is None:
        raise NotFound(f"dataset {dataset!r} not found")
    return row


def validate_payload(session: Session, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Check a job before it is queued; returns the payload to store (dataset id, version).

    train: {"dataset", "version"?, "config"?}; the config must be a valid `TrainConfig`
    naming a registered network. evaluate: {"model_id", "dataset", "version"?, "split"?,
    "image_ids"?} (image_ids: score exactly those images);
    the model must be ready. The version defaults to the dataset's latest. Raises
    InvalidInput or NotFound with a message for a person.
    """
    from regrasp.data import versions

    if kind not in {k.value for k in JobKind}:
        bad_kind(kind)
    dataset = resolve_dataset(session, payload.get("dataset"))  # type: ignore[arg-type]
    version = payload.get("version")
    if version is None:
        version = versions.latest_version(session, dataset.id)
    elif not any(v.number == version for v in versions.list_versions(session, dataset.id)):
        raise NotFound(f"dataset {dataset.name!r} has no version {version}")
    out: dict[str, Any] = {"dataset_id": dataset.id, "dataset": dataset.name, "version": version}
    if kind == JobKind.train.value:
        config = parse_train_config(payload.get("config") or {})
        out["config"] = config.model_dump(mode="json")
    else:
        model_id = payload.get("model_id")
        model = session.get(Model, model_id) if isinstance(model_id, int) else None
        if model is None:
            raise NotFound(f"model {model_id!r} not found")
        if model.status != ModelStatus.ready:
            raise InvalidInput(f"model {model_id} is {model.status.value}, not ready")
        split = payload.get("split", "test")
        if split not in EVALUATE_SPLITS:
            raise InvalidInput(f"split must be one of {', '.join(EVALUATE_SPLITS)}, got {split!r}")
        out.update(model_id=model_id, split=split)
        image_ids = payload.get("image_ids")
        if image_ids is not None:
            if not isinstance(image_ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in image_ids
            ):
                raise InvalidInput("image_ids must be a list of image ids (integers)")
            if not image_ids:
                raise InvalidInput("image_ids is empty: name at least one image")
            out["image_ids"] = sorted(set(image_ids))
    return out


def parse_train_config(values: Mapping[str, Any]) -> Any:
    """A validated `TrainConfig` naming a registered network; InvalidInput otherwise."""
    from pydantic import ValidationError

    from regrasp.learn.training.config import TrainConfig

    if not isinstance(values, Mapping):
        raise InvalidInput(f"config must be a mapping of TrainConfig fields, got {values!r}")
    try:
        config = TrainConfig(**dict(values))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidInput(f"invalid training config: {problems}") from None
    known = _network_names()
    if known is not None and config.architecture not in known:
        raise InvalidInput(
            f"unknown architecture {config.architecture!r}; known: {', '.join(known)}"
        )
    return config


def _network_names() -> tuple[str, ...] | None:
    """Registered network names, without importing torch when it is absent (the service)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    from regrasp.learn import nets

    return nets.NAMES


def bad_kind(kind: object) -> Any:
    raise InvalidInput(f"unknown job kind {kind!r}; known: {', '.join(k.value for k in JobKind)}")
