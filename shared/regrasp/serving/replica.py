"""One inference replica's state and its request logic, without BentoML or torch.

`Replica` holds what the HTTP shell (`services/inference/service.py`) delegates to: the
database and store, the models held (`ModelCache`) and the production pointer
(`ProductionFollower`), the batching tickets, the in-flight counts, and the credential
cache. `predict_upload` and `predict_stored` are the two prediction paths; each takes the
shell's `forward` coroutine (the self-call through BentoML's adaptive batcher) so this
module stays free of the framework.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from regrasp.api.predict import ModelInfo, ServingStats
from regrasp.learn import model_registry
from regrasp.learn.predict import Prepared, Ranked, prepare, to_image
from regrasp.platform.accounts import Principal, authenticate_bearer
from regrasp.platform.errors import InvalidInput, PermissionDenied, RegraspError
from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.objects import store_from_settings
from regrasp.serving import batching, stored
from regrasp.serving.batching import Ticket
from regrasp.serving.models import ModelCache, NoProductionModel, ProductionFollower

logger = logging.getLogger(__name__)

#: How long a successful credential check is reused, seconds.
AUTH_CACHE_SECONDS = 10.0

#: The shell's batched forward pass: inputs of one model in, one finished ticket each out.
Forward = Callable[[Sequence[np.ndarray], Any], Awaitable[list[Ticket]]]


class Replica:
    """Everything one inference worker knows; `load(store, name)` builds a served model."""

    def __init__(self, settings: Settings, *, load: Callable[[Any, str], Any]) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        migrations.prepare(self.engine, mode=settings.mode)
        self.store = store_from_settings(settings)
        self.tickets = batching.TicketBook()
        self.in_flight = batching.InFlight()
        self.models: ModelCache[Any] = ModelCache(
            lambda name: load(self.store, name), capacity=settings.inference_model_cache_size
        )
        pin_id, pin_name = settings.inference_model_id, settings.inference_model_name
        self._names: dict[int, str] = {}
        self.production = ProductionFollower(
            self.models,
            self._production_name,
            pinned=self.resolve_name(pin_id, pin_name) if pin_id or pin_name else None,
        )
        self._service_key = settings.service_api_key.get_secret_value()
        self._token_secret = settings.secret_key.get_secret_value()
        self._auth_lock = threading.Lock()
        self._auth_cache: dict[str, tuple[Principal, float]] = {}

    def start(self) -> None:
        """Load the production model now (before the worker reports ready), then follow
        the alias in the background."""
        try:
            self.production.sync()
        except RegraspError:
            logger.exception("production model not loaded at start; retrying in the background")
        self.production.start(self.settings.inference_alias_poll_seconds)

    @property
    def ready(self) -> bool:
        """The promoted model (if any) is loaded: a fresh replica takes no traffic before."""
        return self.production.ready

    # -- who calls -------------------------------------------------------------------------

    def authenticate(self, credential: str) -> Principal:
        """The caller behind a bearer credential; Unauthenticated otherwise.

        Successes are remembered for `AUTH_CACHE_SECONDS` (a robot sends the same key many
        times a second); a revoked key is refused within that time. Database checks run one
        at a time: concurrent writers of `last_used_at` make SQLite answer "locked".
        """
        if self._service_key and hmac.compare_digest(
            credential.encode(), self._service_key.encode()
        ):
            return authenticate_bearer(None, credential, service_key=self._service_key)
        digest = hashlib.sha256(credential.encode()).hexdigest()
        cached = self._auth_cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        with self._auth_lock, session_scope(self.engine) as session:
            principal = authenticate_bearer(
                session, credential, token_secret=self._token_secret, service_key=self._service_key
            )
        if len(self._auth_cache) > 10_000:
            self._auth_cache.clear()
        self._auth_cache[digest] = (principal, time.monotonic() + AUTH_CACHE_SECONDS)
        return principal

    # -- which model -----------------------------------------------------------------------

    def model_for(
        self, model_id: int | None, model_name: str | None, caller: Principal | None
    ) -> Any:
        """The model a request runs on: production unless it names one (by id or by store
        name) the caller may use (a robot key may name only production). Blocking: loads
        a model on a miss."""
        production = self.production.current
        if model_id is None and model_name is None:
            if production is None:
                raise NoProductionModel(self.no_model_message())
            return production
        name = self.resolve_name(model_id, model_name)
        if caller is not None and caller.is_robot:
            if production is None or name != production.name:
                asked = model_id if model_id is not None else model_name
                raise PermissionDenied(
                    f"a robot key gets the production model only (asked for {asked!r})"
                )
            return production
        return self.models.get(name)

    def warm(self, model_id: int | None, model_name: str | None) -> Any:
        """Load a model into the cache ahead of use; what callers get does not change."""
        return self.models.get(self.resolve_name(model_id, model_name))

    def resolve_name(self, model_id: int | None, model_name: str | None) -> str:
        """The store name of the model named by id or by name (one of the two; ids are
        looked up once); InvalidInput for both or neither, NotFound for an unknown id."""
        if (model_id is None) == (model_name is None):
            raise InvalidInput("name the model by model_id or by model_name (one of the two)")
        if model_name is not None:
            if not model_name.strip() or len(model_name) > 128:
                raise InvalidInput("model_name must be 1-128 characters")
            return model_name
        assert model_id is not None
        name = self._names.get(model_id)
        if name is None:
            with session_scope(self.engine) as session:
                name = model_registry.store_name_of(session, model_id)
            self._names[model_id] = name
        return name

    def model_info(self, served: Any = None) -> ModelInfo:
        """`served` (default: the production model) and the models this replica holds."""
        served = served if served is not None else self.production.current
        held = self.models.names()
        if served is None:
            return ModelInfo(model_id=None, loaded=False, cached=held, error=self.production.error)
        meta, spec = served.metadata, served.spec
        return ModelInfo(
            model_id=spec.model_id,
            model_name=spec.name,
            loaded=True,
            architecture=spec.architecture,
            channels=spec.channels,
            input_size=spec.input_size,
            device=served.device,
            loaded_at=served.loaded_at,
            dataset=meta.get("dataset"),
            dataset_version=meta.get("dataset_version"),
            metrics=dict(meta.get("metrics") or {}),
            cached=held,
        )

    def stats(self) -> ServingStats:
        return ServingStats(
            batch_sizes=self.tickets.history.histogram(), in_flight=self.in_flight.counts()
        )

    def metrics_text(self) -> str:
        """Our Prometheus metrics, appended to BentoML's on /metrics."""
        return self.tickets.history.prometheus() + self.in_flight.prometheus()

    def no_model_message(self) -> str:
        if self.production.target is None:
            return (
                "no production model: an admin promotes one "
                "(`regrasp model promote MODEL_ID`, or the UI's Models page)"
            )
        return self.production.error or (
            f"production model {self.production.target} is loading, retry shortly"
        )

    def _production_name(self) -> str | None:
        with session_scope(self.engine) as session:
            found = model_registry.resolve_alias(session, model_registry.PRODUCTION)
        return found[1] if found is not None else None

    # -- predictions -----------------------------------------------------------------------

    async def predict_upload(
        self,
        served: Any,
        depth: bytes | None,
        rgb: bytes | None,
        *,
        k: int,
        min_quality: float | None,
        forward: Forward,
    ) -> tuple[Prepared, Ticket, Ranked]:
        """One uploaded frame: (its preparation, the batch ticket, its ranked grasps)."""
        prepared = await asyncio.to_thread(
            prepare,
            spec=served.spec,
            depth=depth,
            rgb=rgb,
            max_side=self.settings.inference_max_side,
        )
        (ticket,) = await forward([prepared.inputs], served)
        if ticket.error is not None:
            raise RegraspError(ticket.error)
        ranked = to_image(ticket.raw, letterbox=prepared.letterbox, k=k, min_quality=min_quality)
        return prepared, ticket, ranked

    async def predict_stored(
        self,
        served: Any,
        dataset_id: int,
        version: int,
        image_ids: Sequence[int],
        *,
        k: int,
        min_quality: float | None,
        forward: Forward,
    ) -> dict[int, Ranked | str]:
        """Stored images of a version: ranked grasps, or the error (a string) per image.

        Images are read and forwarded in chunks of the batch bound, so a large call never
        holds every decoded image at once; an unreachable store fails the call (503).
        """
        rows = await asyncio.to_thread(
            stored.stored_keys, self.engine, dataset_id, version, image_ids
        )
        outcome: dict[int, Ranked | str] = {}
        unique = list(dict.fromkeys(image_ids))
        chunk = batching.batch_size(self.settings.inference_max_batch_size, served.device)
        for first in range(0, len(unique), chunk):
            ids = unique[first : first + chunk]
            prepared = await asyncio.to_thread(
                stored.prepare_stored,
                self.store,
                served.spec,
                ids,
                rows,
                max_side=self.settings.inference_max_side,
            )
            ok = [i for i in ids if isinstance(prepared[i], Prepared)]
            outcome.update({i: prepared[i] for i in ids if isinstance(prepared[i], str)})
            if not ok:
                continue
            tickets = await forward([prepared[i].inputs for i in ok], served)
            for image_id, ticket in zip(ok, tickets, strict=True):
                outcome[image_id] = ticket.error or to_image(
                    ticket.raw, letterbox=prepared[image_id].letterbox, k=k, min_quality=min_quality
                )
        return outcome
