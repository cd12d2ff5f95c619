"""Registered models as the service serves them: a torch network wrapped as a `Forward`.

This is the only torch code of the service. `load_served` rebuilds a registered model
(`regrasp.learn.training.registry.load_registered`), wraps it so `regrasp.learn.predict` can call it
with numpy arrays, and warms it up once so the first robot request does not pay for
CUDA initialisation or cuDNN autotuning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import torch
from torch import nn

from regrasp.learn.predict import Forward, ModelSpec, Predictor
from regrasp.learn.training.registry import load_registered
from regrasp.platform.clock import utcnow
from regrasp.platform.store.objects import ObjectStore


@dataclass(frozen=True)
class ServedModel:
    """One loaded model: its predictor, its metadata and where it runs."""

    predictor: Predictor
    metadata: dict[str, Any]
    device: str
    loaded_at: datetime = field(default_factory=utcnow)

    @property
    def spec(self) -> ModelSpec:
        return self.predictor.spec

    @property
    def name(self) -> str | None:
        return self.spec.name


def resolve_device(name: str = "") -> torch.device:
    """`name` as a torch device; empty means `cuda` when available, else `cpu`."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def configure_threads(device: torch.device, cpu_threads: int) -> None:
    """One worker's torch threads on CPU (`REGRASP_INFERENCE_CPU_THREADS`, default 1):
    replicas, not threads, scale CPU inference, and threads of several workers on one
    machine would only fight over cores."""
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads)


def load_served(store: ObjectStore, name: str, *, device: torch.device) -> ServedModel:
    """Load the model registered as `name` onto `device`, warmed up and ready to serve."""
    module, metadata = load_registered(store, name, device)
    spec = ModelSpec.from_metadata({**metadata, "name": name})
    predictor = Predictor(spec, torch_forward(module, device))
    predictor.forward(np.zeros((1, spec.in_channels, spec.input_size, spec.input_size), "f4"))
    return ServedModel(predictor, dict(metadata), str(device))


def torch_forward(module: nn.Module, device: torch.device) -> Forward:
    """A `Forward` over `module` (in eval mode): numpy (B, C, S, S) in, (B, 4, S, S) out."""
    module.eval()

    def forward(inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(device)
            maps = module(x)
            return torch.cat(tuple(maps), dim=1).float().cpu().numpy()

    return forward
