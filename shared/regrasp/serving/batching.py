"""Batching by tickets: concurrent requests' network inputs share one forward pass.

BentoML's adaptive batching merges concurrent calls of a `batchable` API into one call
over a list. The inference service's requests park their (C, S, S) inputs here under
random tickets and call its batchable `forward_batch` API with the tickets only (small,
cheap to route through BentoML's in-process transport); `run_batch` then runs one forward
pass per model over every parked input of the merged call. A ticket pins the model its
request started with, so a promotion never mixes models within a request.

`BatchHistory` counts how many requests each forward pass held: the proof (and the
metric) that batching happens on the real path.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from regrasp.learn.predict import RawPrediction

logger = logging.getLogger(__name__)


@dataclass
class Ticket:
    """A network input parked for a batch, and what the batch made of it."""

    inputs: np.ndarray
    served: Any  # the loaded model: `.predictor.run`, `.name`
    raw: RawPrediction | None = None
    error: str | None = None
    forward_ms: float = 0.0
    decode_ms: float = 0.0
    batch_size: int = 0


#: Upper bounds of the batch-size histogram's buckets (Prometheus `le`).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class BatchHistory:
    """How many requests each forward pass held: a histogram since start."""

    def __init__(self) -> None:
        self._sizes: Counter[int] = Counter()
        self._lock = threading.Lock()

    def record(self, size: int) -> None:
        with self._lock:
            self._sizes[size] += 1

    def histogram(self) -> dict[int, int]:
        """{batch size: forward passes}, sizes ascending."""
        with self._lock:
            return dict(sorted(self._sizes.items()))

    def prometheus(self) -> str:
        """`regrasp_inference_batch_size` in Prometheus' text format (a histogram)."""
        sizes = self.histogram()
        lines = [
            "# HELP regrasp_inference_batch_size Requests one forward pass held.",
            "# TYPE regrasp_inference_batch_size histogram",
        ]
        for bound in BATCH_BUCKETS:
            count = sum(n for size, n in sizes.items() if size <= bound)
            lines.append(f'regrasp_inference_batch_size_bucket{{le="{float(bound)}"}} {count}')
        lines.append(f'regrasp_inference_batch_size_bucket{{le="+Inf"}} {sum(sizes.values())}')
        lines.append(f"regrasp_inference_batch_size_count {sum(sizes.values())}")
        lines.append(f"regrasp_inference_batch_size_sum {sum(s * n for s, n in sizes.items())}")
        return "\n".join(lines) + "\n"


class InFlight:
    """Prediction requests being served now, by kind: the autoscaler's load signal.

    Exported as the gauge `regrasp_inference_in_flight{kind=...}`; unlike CPU use it
    tracks GPU inference load (requests queue for the device whatever the CPU does).
    """

    def __init__(self, kinds: Sequence[str] = ("predict", "predict_stored")) -> None:
        self._counts = dict.fromkeys(kinds, 0)
        self._lock = threading.Lock()

    def __call__(self, kind: str) -> _Tracking:
        return _Tracking(self, kind)

    def add(self, kind: str, delta: int) -> None:
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + delta

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def prometheus(self) -> str:
        counts = self.counts()
        lines = [
            "# HELP regrasp_inference_in_flight Prediction requests being served now.",
            "# TYPE regrasp_inference_in_flight gauge",
            *(f'regrasp_inference_in_flight{{kind="{k}"}} {n}' for k, n in counts.items()),
        ]
        return "\n".join(lines) + "\n"


class _Tracking:
    def __init__(self, owner: InFlight, kind: str) -> None:
        self.owner, self.kind = owner, kind

    def __enter__(self) -> None:
        self.owner.add(self.kind, 1)

    def __exit__(self, *_: object) -> None:
        self.owner.add(self.kind, -1)


class TicketBook:
    """Inputs parked by this process's requests, by ticket."""

    def __init__(self, history: BatchHistory | None = None) -> None:
        self._tickets: dict[str, Ticket] = {}
        self.history = history or BatchHistory()

    def park(self, inputs: Sequence[np.ndarray], served: Any) -> tuple[list[str], list[Ticket]]:
        names = [secrets.token_urlsafe(18) for _ in inputs]
        parked = [Ticket(x, served) for x in inputs]
        self._tickets.update(zip(names, parked, strict=True))
        return names, parked

    def release(self, names: Sequence[str], parked: Sequence[Ticket]) -> None:
        """Forget the tickets; any input the batch did not run gets an error."""
        for name in names:
            self._tickets.pop(name, None)
        for ticket in parked:
            if ticket.raw is None and ticket.error is None:
                ticket.error = "the batch did not run this input"

    def run_batch(self, names: Sequence[str]) -> list[int]:
        """One forward pass per model over the inputs parked under `names`; returns the
        number of inputs each pass held."""
        sizes: list[int] = []
        groups: dict[int, list[Ticket]] = {}
        for name in names:
            ticket = self._tickets.get(name)
            if ticket is not None:
                groups.setdefault(id(ticket.served), []).append(ticket)
        for group in groups.values():
            served = group[0].served
            try:
                raws, forward_ms, decode_ms = served.predictor.run(
                    np.stack([t.inputs for t in group])
                )
            except Exception:  # noqa: BLE001 - reported per request, logged with traceback
                logger.exception("forward pass failed on model %s", served.name)
                for ticket in group:
                    ticket.error = f"model {served.name} failed on this input (see log)"
                continue
            self.history.record(len(group))
            sizes.append(len(group))
            for ticket, raw in zip(group, raws, strict=True):
                ticket.raw, ticket.forward_ms = raw, forward_ms
                ticket.decode_ms, ticket.batch_size = decode_ms / len(group), len(group)
        return sizes


#: Adaptive batch bound when the settings leave it unset, by device kind. On CPU a batch
#: raises every image's forward time (measured: 20-35 ms alone, 85-92 ms in a batch), so
#: batches stay tiny and replicas scale; on CUDA a batch is nearly free.
DEFAULT_BATCH = {"cpu": 2, "cuda": 16}


def batch_size(configured: int | None, device: str) -> int:
    """The adaptive batch bound for `device` ("cpu", "cuda", "cuda:1", "" = auto)."""
    if configured is not None:
        return configured
    kind = device.split(":", 1)[0] or _auto_device()
    return DEFAULT_BATCH.get(kind, DEFAULT_BATCH["cpu"])


def _auto_device() -> str:
    import torch  # only when the device is left to auto-detection

    return "cuda" if torch.cuda.is_available() else "cpu"
