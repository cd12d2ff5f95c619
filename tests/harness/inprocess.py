"""ASGI apps served by uvicorn in a thread of the test process, on a 127.0.0.1 port.

`serve(app)` is the usual form (a free port, for one block). `InProcessServer` keeps one
port across stops and starts, for a test whose service must go away and come back at the
same address (a client then meets a real refused connection in between).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tests.harness.ports import free_port

__all__ = ["InProcessServer", "app_factory", "forget_bentoml_metrics", "serve"]

#: Bound that only stops a hung start or stop; nothing is timed.
_BOUND_S = 60.0
#: Seconds open connections get to finish once the block ends.
_STOP_S = 5


class InProcessServer:
    """An app (or an app factory, called at each start) under uvicorn on one fixed port."""

    def __init__(
        self,
        app: Any,
        name: str = "server",
        *,
        port: int | None = None,
        graceful_shutdown: float | None = _STOP_S,
    ) -> None:
        self._app = app
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._graceful = graceful_shutdown
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Serve until `stop()` (lifespan included); returns the URL once it accepts."""
        app = self._app() if isinstance(self._app, _Factory) else self._app
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            # Clients that keep connections open (a Streamlit session's) must not hold the
            # shutdown, or the app, its background runners included, outlives the block.
            timeout_graceful_shutdown=self._graceful,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = thread = threading.Thread(target=server.run, daemon=True, name=self.name)
        thread.start()
        deadline = time.monotonic() + _BOUND_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread (no-op when not started)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=_BOUND_S)
        alive = self._thread.is_alive()
        self._server = self._thread = None
        assert not alive, f"{self.name} did not stop"


class _Factory:
    """Marks a callable that builds a fresh app at every start (see `InProcessServer`)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build

    def __call__(self) -> Any:
        return self.build()


def app_factory(build: Callable[[], Any]) -> _Factory:
    """Wrap `build` so that `InProcessServer` calls it for a new app at every start."""
    return _Factory(build)


@contextmanager
def serve(app: Any, name: str = "server") -> Iterator[str]:
    """The app under uvicorn (lifespan included) until the block ends; yields its URL."""
    server = InProcessServer(app, name)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def forget_bentoml_metrics() -> None:
    """Unregister BentoML's request metrics from the process-wide Prometheus registry.

    BentoML registers them when an app first serves, once a process; a test module that
    builds its own `to_asgi()` app after another module's clears them before it starts and
    after it stops, and each app registers afresh.
    """
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):  # noqa: SLF001
        if any(name.startswith("bentoml_") for name in names):
            REGISTRY.unregister(collector)
