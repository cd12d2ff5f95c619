"""Name → builder registry of the grasp networks (the torchvision `models/_api.py` pattern).

Each architecture family registers keyword-only builder functions under a name with
`@register("name")`. Services and training jobs only ever hold the *name* and its options
(stored with the model in the database), and rebuild the network with `build` before loading
a `state_dict`: pickled networks are never stored. Names are unique: a second registration
under a taken name is refused rather than silently replacing the first network.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from regrasp.platform.errors import Conflict, InvalidInput

Builder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=Builder)

#: The options every builder takes; everything else is family-specific.
_COMMON_PARAMETERS = ("in_channels", "dropout")

_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[_B], _B]:
    """Decorator registering a keyword-only builder `fn(*, in_channels, dropout, **options)`.

    Raises `Conflict` when `name` is already taken and `InvalidInput` when the builder does
    not take `in_channels` and `dropout` as keyword-only parameters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a network name must be a non-empty string, got {name!r}")

    def decorator(fn: _B) -> _B:
        if name in _BUILDERS:
            raise Conflict(f"a grasp network is already registered under the name {name!r}")
        parameters = inspect.signature(fn).parameters
        for required in _COMMON_PARAMETERS:
            parameter = parameters.get(required)
            if parameter is None or parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise InvalidInput(
                    f"builder {fn.__name__} for {name!r} must take {required!r} keyword-only"
                )
        _BUILDERS[name] = fn
        return fn

    return decorator


def names() -> tuple[str, ...]:
    """Registered architecture names, in registration order."""
    return tuple(_BUILDERS)


def build(name: str, in_channels: int, *, dropout: float = 0.05, **options: Any) -> nn.Module:
    """Build the registered network `name` with freshly initialised weights.

    `in_channels` is 1 for depth, 3 for RGB, 4 for RGB-D. `dropout` is the probability of
    the dropout layer placed before the four output heads (the paper's default 0.05).
    `options` are the family's own keyword options (see each builder's docstring).
    The network's `forward((B, in_channels, H, W))` returns a `GraspMaps` of four
    `(B, 1, H, W)` maps, its parameters in the channels_last layout. No pretrained
    weights exist here: load a `state_dict` afterwards.

    Raises `InvalidInput` for an unknown name (listing the known ones), a bad channel
    count or dropout, or an option the builder does not take.
    """
    builder = _BUILDERS.get(name)
    if builder is None:
        raise InvalidInput(
            f"unknown grasp network {name!r}; known networks: {', '.join(_BUILDERS)}"
        )
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise InvalidInput(f"in_channels must be a positive integer, got {in_channels!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float):
        raise InvalidInput(f"dropout must be a number in [0, 1), got {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise InvalidInput(f"dropout must be in [0, 1), got {dropout}")
    _check_options(name, builder, options)
    # channels_last is the convolutions' fast layout on CPU (oneDNN; GG-CNN's forward runs
    # several times faster in it) and on CUDA tensor cores; every built network uses it.
    module = builder(in_channels=in_channels, dropout=float(dropout), **options)
    return module.to(memory_format=torch.channels_last)


def _check_options(name: str, builder: Builder, options: dict[str, Any]) -> None:
    """Refuse options the builder does not take, naming the ones it does."""
    accepted = [
        p.name
        for p in inspect.signature(builder).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _COMMON_PARAMETERS
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidInput(
            f"network {name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted) or 'no extra options'}"
        )
