"""GG-CNNs that collapse on purpose, so tests can exercise a training's restart.

A dead network (every unit of a layer off for every input) is what a chance collapse
leaves behind; building one for the seeds a test picks makes the collapse certain.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from regrasp.learn import nets
from regrasp.learn.nets import registry
from regrasp.learn.nets.ggcnn import ggcnn


def dead_ggcnn(seeds: set[int] | None, *, after_steps: int = 0) -> Callable[..., nn.Module]:
    """A GG-CNN builder whose last body layer is switched off when built under one of
    `seeds` (None: every seed), after `after_steps` training steps: a bias of -1e4 keeps
    its ReLU at 0 for every input, and no gradient can bring it back. `train` seeds torch
    right before it builds, so `torch.initial_seed()` is the attempt's seed."""

    def build(*, in_channels: int, dropout: float) -> nn.Module:
        net = ggcnn(in_channels=in_channels, dropout=dropout)
        if seeds is not None and torch.initial_seed() not in seeds:
            return net
        last = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)][-1]
        steps = [0]

        def kill(module: nn.Module, _inputs: object) -> None:
            if module.training:
                steps[0] += 1
            if steps[0] > after_steps:
                with torch.no_grad():
                    last.bias.fill_(-1e4)

        net.register_forward_pre_hook(kill)
        return net

    return build


def register_dead(monkeypatch: pytest.MonkeyPatch, name: str, builder: Callable) -> None:
    """Register `builder` as architecture `name` for one test (removed afterwards); job
    payloads check names against `nets.NAMES`, the names known at import, so it joins those."""
    monkeypatch.setitem(registry._BUILDERS, name, builder)
    monkeypatch.setattr(nets, "NAMES", (*nets.NAMES, name))
