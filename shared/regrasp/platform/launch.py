"""The command line that starts each service as a process, in one place.

The embedded stack (`regrasp up`, `regrasp.demo.LocalStack`), the end-to-end tests and the
benchmarks all start the same processes; they take the command from here so that a
change of entry point (the BentoML service path, a subcommand) is made once. Commands run
from the repository root (`regrasp.demo.services_root`), where `services/` is importable.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["SERVICES", "service_command"]

#: The services' entry points: (module run with `python -m`, its arguments before the
#: address options). The inference service is a BentoML service served by `bentoml serve`.
_ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "orchestrator": ("services.orchestrator", "serve"),
    "trainer": ("services.trainer", "serve"),
    "worker": ("services.trainer", "worker"),
    "inference": ("bentoml", "serve", "services.inference.service:InferenceService"),
    "review_ui": ("services.review_ui", "serve"),
}
SERVICES = tuple(_ENTRY_POINTS)


def service_command(
    name: str,
    *,
    host: str | None = "127.0.0.1",
    port: int | None = None,
    extra: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """`python -m ...` for service `name` (`SERVICES`), bound to `host:port` when given.

    A worker listens on nothing, so it takes no address. `extra` arguments follow, e.g.
    `["--poll-interval", "0.5"]`; `python` defaults to this interpreter.
    """
    if name not in _ENTRY_POINTS:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    command = [python or sys.executable, "-m", *_ENTRY_POINTS[name]]
    if name != "worker":
        if host is not None:
            command += ["--host", host]
        if port is not None:
            command += ["--port", str(port)]
    return [*command, *extra]
