"""Simulated annotators over HTTP: one thread and one orchestrator client each.

The one driver of "many people review at once" for the benchmarks (`bench/review.py`,
`bench/load.py`) and the e2e tests (`tests/e2e/test_review_http_concurrency.py`,
`tests/e2e/test_load.py`): every annotator, released together by a barrier, claims the
next item of a round and decides it until the round is empty.

What a run records, so that callers can check that nothing was lost or done twice:

- the seconds of every claim + decide pair (latency; decisions/s comes from the wall time);
- every decision the server accepted (a 2xx), with the review id it returned;
- the status code of every response the clients received (through the client's
  `on_response` hook, so a 5xx answered to a retried call is counted too);
- with `replay_every`, some decisions are sent a second time, unchanged: the item's
  version moved on, so the server must answer 409 (counted as `replays_refused`);
- the exception each thread died of, if any.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.api.review import DecisionCreate, ReviewItemPublic
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.errors import Conflict
from regrasp.platform.store.db.tables import Review, ReviewItem

__all__ = ["AnnotatorRun", "Standing", "annotate", "standing_reviews"]

#: The decision of an annotator who finds the labels fine (the paper's most common answer).
Decide = Callable[[ReviewItemPublic], str]


@dataclass
class AnnotatorRun:
    """What `annotate` saw. Times are `time.monotonic()` seconds."""

    pairs: list[float] = field(default_factory=list)
    decided: list[tuple[int, int]] = field(default_factory=list)  # (item id, review id)
    statuses: Counter[int] = field(default_factory=Counter)
    replays_refused: int = 0
    failures: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def wall(self) -> float:
        return self.ended - self.started

    @property
    def rate(self) -> float:
        """Decisions per second over the whole run."""
        return len(self.decided) / self.wall if self.wall > 0 else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def unexpected_4xx(self) -> int:
        """4xx answers beyond the 409s the stale replays had to get."""
        client_errors = sum(n for status, n in self.statuses.items() if 400 <= status < 500)
        return client_errors - self.replays_refused


def annotate(
    base_url: str | Sequence[str],
    round_id: int,
    credentials: Sequence[tuple[str, str]],
    *,
    decide: Decide = lambda _item: "true_negative",
    replay_every: int = 0,
    timeout: float = 120.0,
    before_start: Callable[[], None] | None = None,
    think_seconds: tuple[float, float] | None = None,
    seed: int = 0,
    stop_after: float | None = None,
) -> AnnotatorRun:
    """One annotator per (username, password) empties round `round_id`; returns the run.

    Everyone logs in first; then `before_start` is called (to start what should run
    alongside), and then all are released at once. `replay_every` > 0: annotator k sends
    its n-th decision again when n % replay_every == k % replay_every.
    `think_seconds=(lo, hi)`: like a person, each annotator looks at every item for a
    time drawn uniformly from [lo, hi] (its own generator, seeded `seed + k`) between
    the claim and the decision; the recorded pair time leaves the looking out. They
    start staggered, each after a time drawn from [0, hi], as people mid-session are.
    `base_url` may list several orchestrator processes of one database: annotator k
    talks to `base_url[k % len(base_url)]`.
    `stop_after`: annotators take no new item after that many seconds (a think-time run
    of a large round measures a window, not the whole round).
    """
    run = AnnotatorRun()
    lock = threading.Lock()

    def count(response: httpx.Response) -> None:
        with lock:
            run.statuses[response.status_code] += 1

    clients = []
    try:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        for k, (username, password) in enumerate(credentials):
            client = OrchestratorClient(urls[k % len(urls)], timeout=timeout, on_response=count)
            clients.append(client)
            client.login(username, password)
        if before_start is not None:
            before_start()
        start = threading.Barrier(len(clients) + 1)

        def work(k: int, api: OrchestratorClient) -> None:
            pairs, decided, refused = [], [], 0
            rng = random.Random(seed + k)
            try:
                start.wait()
                began = time.monotonic()
                if think_seconds is not None:
                    # People do not all click at the same instant: start staggered over
                    # one think time, as if mid-session (released together, the first
                    # claims of all would queue behind each other once, at the start).
                    time.sleep(rng.uniform(0.0, think_seconds[1]))
                while stop_after is None or time.monotonic() - began < stop_after:
                    t0 = time.perf_counter()
                    item = api.claim_next(round_id)
                    if item is None:
                        break
                    claimed = time.perf_counter() - t0
                    if think_seconds is not None:
                        time.sleep(rng.uniform(*think_seconds))
                    body = DecisionCreate(
                        item_version=item.version, decision=decide(item), seconds_taken=1.0
                    )
                    t1 = time.perf_counter()
                    review = api.decide(item.id, body)
                    pairs.append(claimed + time.perf_counter() - t1)
                    decided.append((item.id, review.id))
                    if replay_every and len(decided) % replay_every == k % replay_every:
                        try:
                            api.decide(item.id, body)  # the item moved on: must be stale
                        except Conflict:
                            refused += 1
            except Exception as exc:  # noqa: BLE001 - reported with the thread's work
                with lock:
                    run.failures.append(f"annotator {k}: {type(exc).__name__}: {exc}")
            with lock:
                run.pairs.extend(pairs)
                run.decided.extend(decided)
                run.replays_refused += refused

        threads = [
            threading.Thread(target=work, args=(k, c), name=f"annotator-{k}")
            for k, c in enumerate(clients)
        ]
        for t in threads:
            t.start()
        start.wait()
        run.started = time.monotonic()
        for t in threads:
            t.join()
        run.ended = time.monotonic()
    finally:
        for client in clients:
            client.close()
    return run


@dataclass(frozen=True)
class Standing:
    """What the database keeps of a round's review: the other side of `AnnotatorRun`."""

    per_item: Counter[int]  # standing (not superseded) reviews per item id
    review_ids: frozenset[int]  # ids of the standing reviews
    states: Counter[str]  # the round's items by state


def standing_reviews(session: Session, round_id: int) -> Standing:
    """The standing reviews and item states of round `round_id`, read from the database."""
    rows = session.execute(
        sa.select(Review.item_id, Review.id)
        .join(ReviewItem, ReviewItem.id == Review.item_id)
        .where(ReviewItem.round_id == round_id, Review.superseded.is_(False))
    ).all()
    states = session.scalars(sa.select(ReviewItem.state).where(ReviewItem.round_id == round_id))
    return Standing(
        per_item=Counter(item for item, _ in rows),
        review_ids=frozenset(review for _, review in rows),
        states=Counter(str(getattr(s, "value", s)) for s in states),
    )
