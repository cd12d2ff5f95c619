"""Registered models: weights + metadata in the object store (and a `models` row).

A registered model is two objects under `keys.model_prefix(name)`, `name` being its
store name (a trained model's is its `models` row id, `keys.model_store_name`):

- `weights.pt`: the network's `state_dict` (tensors only; never a pickled network), loaded
  with `torch.load(weights_only=True)`;
- `metadata.json`: everything needed to rebuild and use it without the training code —
  architecture, in_channels, channels, input_size, width_scale, decode options, dropout,
  dataset and version, split, metrics, the weights key and the torch version, plus `name`
  and `model_id` (the `models` row id, an int, or None for a model with no row).

`load_registered(store, name)` rebuilds the network by name (`regrasp.learn.nets.build`),
loads the weights and returns it in eval mode with its metadata. This module imports only
`regrasp.learn.nets` and the store (no pydantic config, no data pipeline), so the inference
service can import it cheaply.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from regrasp.learn import nets
from regrasp.platform.errors import InvalidInput, NotFound, ObjectNotFound
from regrasp.platform.store import keys

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from regrasp.platform.store.objects import ObjectStore

#: Version of the metadata layout; readers refuse a newer one and upgrade an older one
#: (format 1 kept the store name under "model_id" and the row id under "db_model_id").
METADATA_FORMAT = 2

#: Metadata fields `load_registered` needs; the rest is informative.
REQUIRED_FIELDS = ("architecture", "in_channels", "channels", "input_size", "width_scale")


def register_model(
    store: ObjectStore,
    name: str,
    *,
    model: nn.Module,
    metadata: Mapping[str, Any],
    session: Session | None = None,
    model_id: int | None = None,
    dataset_id: int | None = None,
) -> dict[str, Any]:
    """Store `model`'s weights and `metadata` under `name`; returns the metadata written.

    `metadata` must hold the `REQUIRED_FIELDS` (plus whatever else the caller records:
    decode options, dropout, dataset, version, split, metrics, config). The weights key,
    torch version and format are added here. The weights are written before the metadata,
    so a model whose metadata exists is always loadable. With a `session`, the `models`
    row `model_id` is updated (or a new row inserted when None) with architecture,
    config, dataset version, split, weights key, metrics and status "ready"; its id is
    returned as `metadata["model_id"]` (None without a session).
    """
    missing = [f for f in REQUIRED_FIELDS if f not in metadata]
    if missing:
        raise InvalidInput(f"model metadata lacks {', '.join(missing)}")
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    weights = keys.weights_key(name)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    store.put_bytes(weights, buffer.getvalue())
    meta = {
        **dict(metadata),
        "format": METADATA_FORMAT,
        "name": name,
        "model_id": None,
        "weights_key": weights,
        "torch_version": torch.__version__,
    }
    if session is not None:
        meta["model_id"] = _write_row(session, meta, model_id, dataset_id)
    store.put_bytes(keys.metadata_key(name), json.dumps(meta, indent=1).encode())
    return meta


def register_untrained(
    store: ObjectStore,
    name: str,
    *,
    session: Session | None = None,
    model_id: int | None = None,
    architecture: str = "ggcnn",
    input_size: int = 300,
    decode: Mapping[str, Any] | None = None,
    model: nn.Module | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A depth network fresh from (seeded) initialisation, registered as a ready model.

    What load runs, benches and the inference service's tests serve when the predictions'
    quality does not matter, only that there are some: the default decode threshold lies
    below any output, so every quality peak becomes a grasp and each image is scored like
    a trained model's. `model` replaces the fresh network (a test's hand-set weights);
    `decode` options are added to that threshold. Returns the metadata written.
    """
    from regrasp.grasp.maps import WIDTH_SCALE

    if model is None:
        torch.manual_seed(seed)
        model = nets.build(architecture, 1, dropout=0.0)
    metadata = {
        "architecture": architecture,
        "in_channels": 1,
        "channels": "depth",
        "input_size": input_size,
        "width_scale": WIDTH_SCALE,
        "dropout": 0.0,
        "decode": {"threshold": -1e9, **dict(decode or {})},
    }
    return register_model(
        store, name, model=model, metadata=metadata, session=session, model_id=model_id
    )


def read_metadata(store: ObjectStore, name: str) -> dict[str, Any]:
    """The metadata of a registered model, in the current format; NotFound if it was
    never registered."""
    try:
        meta = json.loads(store.get_bytes(keys.metadata_key(name)))
    except ObjectNotFound as exc:
        raise NotFound(f"model {name!r} is not registered") from exc
    found = int(meta.get("format", 0))
    if found > METADATA_FORMAT:
        raise InvalidInput(
            f"model {name!r} metadata format {meta['format']} is newer than {METADATA_FORMAT}"
        )
    if found < 2:
        meta["name"] = str(meta.get("model_id") or name)
        meta["model_id"] = meta.pop("db_model_id", None)
    return meta


def load_registered(
    store: ObjectStore, name: str, device: torch.device | str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a registered model: (network in eval mode on `device`, its metadata).

    `device` defaults to `regrasp.learn.nets.default_device()`. Weights are loaded with
    `weights_only=True` and must match the architecture exactly (strict).
    """
    meta = read_metadata(store, name)
    module = nets.build(
        meta["architecture"],
        int(meta["in_channels"]),
        dropout=float(meta.get("dropout", 0.0)),
        **dict(meta.get("net_options", {})),
    )
    try:
        data = store.get_bytes(meta["weights_key"])
    except ObjectNotFound as exc:
        raise NotFound(f"model {name!r} has metadata but no weights") from exc
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    module.load_state_dict(state, strict=True)
    target = torch.device(device) if device is not None else nets.default_device()
    return module.to(target).eval(), meta


def _write_row(
    session: Session, meta: Mapping[str, Any], model_id: int | None, dataset_id: int | None
) -> int:
    from regrasp.platform.store.db.tables import Model, ModelStatus

    row = session.get(Model, model_id) if model_id is not None else None
    if model_id is not None and row is None:
        raise NotFound(f"models row {model_id} does not exist")
    if row is None:
        row = Model(architecture=meta["architecture"], in_channels=int(meta["in_channels"]))
        session.add(row)
    row.architecture = meta["architecture"]
    row.in_channels = int(meta["in_channels"])
    row.config = dict(meta.get("config", {}))
    row.dataset_id = dataset_id if dataset_id is not None else row.dataset_id
    row.dataset_version = meta.get("dataset_version")
    row.split = dict(meta.get("split", {}))
    row.weights_key = meta["weights_key"]
    row.metrics = dict(meta.get("metrics", {}))
    row.status = ModelStatus.ready
    session.flush()
    return int(row.id)
