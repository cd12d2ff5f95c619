"""Models held by one inference replica: a bounded LRU cache and the production pointer.

A replica serves many models side by side: robots get the `production` alias's model,
a round names its own per call. Models load on demand into `ModelCache` (at most
`capacity`, least recently used evicted); the production model is pinned so a round's
models can never push it out. `ProductionFollower` polls the alias in the database and,
when an admin promotes another model, loads it *before* switching the pointer: requests
in flight keep the model object they started with, so a promotion fails no request and
reaches the replica within one poll interval plus one model load.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from regrasp.platform.errors import InvalidInput, NotFound, RegraspError

logger = logging.getLogger(__name__)


class NoProductionModel(RegraspError):
    """Nothing to serve a caller that names no model: none promoted, or still loading."""

    http_status = 503


class Served(Protocol):
    @property
    def name(self) -> str | None: ...


ServedT = TypeVar("ServedT", bound=Served)


class ModelCache(Generic[ServedT]):
    """Loaded models by store name; `get` loads on a miss, one load per name at a time.

    `loader(name)` builds a model (slow: reads weights, warms up); it raises the domain
    error of a missing or broken model, which `get` passes on and does not cache.
    """

    def __init__(self, loader: Callable[[str], ServedT], *, capacity: int) -> None:
        if capacity < 1:
            raise InvalidInput(f"model cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._loader = loader
        self._models: OrderedDict[str, ServedT] = OrderedDict()
        self._pinned: set[str] = set()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, name: str) -> ServedT:
        """The model `name`, loaded now if it is not held (then the LRU one evicted)."""
        with self._lock:
            model = self._models.get(name)
            if model is not None:
                self._models.move_to_end(name)
                return model
            gate = self._loading.setdefault(name, threading.Lock())
        with gate:  # concurrent requests for one missing model load it once
            with self._lock:
                model = self._models.get(name)
                if model is not None:
                    return model
            try:
                model = self._loader(name)
            finally:
                with self._lock:
                    self._loading.pop(name, None)
            with self._lock:
                self._models[name] = model
                self._models.move_to_end(name)
                self._evict()
            logger.info("model %s loaded (%d held)", name, len(self._models))
            return model

    def pin(self, name: str, *, only: bool = True) -> None:
        """Keep `name` from eviction (with `only`, unpin every other model)."""
        with self._lock:
            if only:
                self._pinned.clear()
            self._pinned.add(name)

    def names(self) -> list[str]:
        """Held models, least recently used first."""
        with self._lock:
            return list(self._models)

    def _evict(self) -> None:
        while len(self._models) > self.capacity:
            victim = next((n for n in self._models if n not in self._pinned), None)
            if victim is None:
                return  # everything held is pinned: over capacity until unpinned
            del self._models[victim]
            logger.info("model %s evicted from the cache", victim)


class ProductionFollower(Generic[ServedT]):
    """The model callers get when they name none, kept equal to the `production` alias.

    `resolve()` answers the alias's current store name (None: nothing promoted) from the
    database; `pinned` overrides it for this replica (REGRASP_INFERENCE_MODEL_ID). `sync()`
    loads a changed target into the cache, pins it, then swaps the pointer.
    """

    def __init__(
        self,
        cache: ModelCache[ServedT],
        resolve: Callable[[], str | None],
        *,
        pinned: str | None = None,
    ) -> None:
        self.cache = cache
        self._resolve = resolve
        self._pinned = pinned
        self.current: ServedT | None = None
        self.target: str | None = None
        self.error: str | None = None
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """False while a promoted model is not loaded yet (a fresh replica, a failed load)."""
        current = self.current
        return self.target is None or (current is not None and current.name == self.target)

    def sync(self) -> None:
        """Follow the alias once: load its model (if it changed) and switch to it."""
        with self._sync_lock:
            target = self._pinned or self._resolve()
            self.target = target
            if target is None:
                self.current, self.error = None, None
                return
            current = self.current
            if current is not None and current.name == target:
                return
            try:
                model = self.cache.get(target)
            except (NotFound, InvalidInput) as exc:
                self.error = f"production model {target} cannot be served: {exc}"
                logger.error("%s", self.error)
                return
            self.cache.pin(target)
            self.current, self.error = model, None
            logger.info(
                "production model is now %s (was %s)",
                target,
                current.name if current is not None else None,
            )

    def start(self, every: float) -> None:
        """Poll in a daemon thread every `every` seconds until `stop()`."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.sync()
                except Exception:  # noqa: BLE001 - a database blip: try again next poll
                    logger.warning("could not follow the production alias", exc_info=True)

        self._thread = threading.Thread(target=loop, name="production-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
