"""What every workflow shares: the retry streak, submitting a job once, the polled runner.

Rounds (`regrasp.workflows.rounds`) and campaigns (`regrasp.workflows.campaigns`) are
persisted state machines driven by the orchestrator; each keeps only its steps, and this
module holds the rest:

- **the retry streak** (`note_failure`, `end_streak`): a row with `retry` and `error`
  columns records each failure of a step whose service could not be reached, backing off
  (`regrasp.workflows.retrying`) until the budget is spent, when the workflow fails the
  row for a person to see; the first progress ends the streak;
- **submitting a job exactly once across crashes** (`submit_once`): the intent (its time)
  is recorded first; after a restart an intent without a job id is resolved by finding the
  trainer's job with the same payload created since, and a job is submitted only when
  there is none;
- **the polled runner** (`PolledRunner`): polls the workflow's table, advances each active
  row in a thread pool under the row's advisory lock (`round_lock`, `campaign_lock`,
  `import_lock`, over `regrasp.platform.store.db.locks`), so several orchestrator replicas
  never advance the same row at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.platform.clock import utcnow
from regrasp.platform.errors import StorageError
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.objects.base import ObjectStore
from regrasp.workflows.retrying import RetryPolicy, describe, record_failure

__all__ = [
    "INTENT_SLACK_SECONDS",
    "PolledRunner",
    "Retrying",
    "Services",
    "end_streak",
    "find_submitted",
    "note_failure",
    "submit_once",
]

log = logging.getLogger(__name__)

#: Slack when matching a submitted job to its recorded intent (clock skew between the
#: orchestrator and the trainer's database writes), seconds.
INTENT_SLACK_SECONDS = 60.0
#: Jobs of a kind looked at when resolving an intent (the newest first).
_RECENT_JOBS = 500
#: Longest error text stored on a row, and longest error kept in a streak.
_MAX_ERROR = 4000
_MAX_STREAK_ERROR = 2000


@dataclass(frozen=True)
class Services:
    """Where the other services are, how to call them, and how long to keep retrying
    them when they are unreachable (from `regrasp.platform.settings`).

    `store` is the object store the images live in: a round reads the object masks from
    it so that its score can test labels against the object (None: score without them).
    """

    trainer_url: str
    inference_urls: tuple[str, ...]
    credential: str | None
    poll_seconds: float = 2.0
    per_url: int = 2
    retries: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    store: ObjectStore | None = None


# --- the retry streak ---------------------------------------------------------------------


class Retrying(Protocol):
    """A workflow row: its retry streak and the error a person sees."""

    retry: dict[str, Any] | None
    error: str | None


def note_failure(
    row: Retrying, *, state: str, message: str, policy: RetryPolicy, what: str
) -> dict[str, Any]:
    """One more failure of `state`'s step on `row` (locked by the caller); the new streak.

    While the streak lasts, `row.error` says what failed and when the next try is; once
    `streak["gave_up"]`, the caller fails the row with its own words (`describe` gives the
    budget part). `what` names the row in the log ("round 7").
    """
    streak = record_failure(
        row.retry, state=state, error=message[:_MAX_STREAK_ERROR], now=utcnow(), policy=policy
    )
    row.retry = streak
    if streak["gave_up"]:
        log.error("%s: %s gave up after %d tries: %s", what, state, streak["attempts"], message)
        return streak
    log.warning(
        "%s: %s try %d failed, retrying in %.1f s: %s",
        what,
        state,
        streak["attempts"],
        streak["delays"][-1],
        message,
    )
    row.error = describe(streak, policy, message)[:_MAX_ERROR]
    return streak


def end_streak(row: Retrying) -> bool:
    """The step made progress: forget the streak and its error; whether there was one."""
    if row.retry is None:
        return False
    row.retry = None
    row.error = None
    return True


# --- submitting a job once -----------------------------------------------------------------


def find_submitted(
    trainer: Any,
    *,
    kind: str,
    payload: dict[str, Any],
    intent_at: str,
    exclude: Collection[int] = (),
) -> int | None:
    """The id of a `kind` job created since `intent_at` whose stored (normalised) payload
    has every item of `payload`; jobs in `exclude` (set aside after they failed) never
    count."""
    since = datetime.fromisoformat(intent_at) - timedelta(seconds=INTENT_SLACK_SECONDS)
    for job in trainer.list(kind=kind, limit=_RECENT_JOBS).items:
        created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
        stored = job.payload or {}
        if (
            created >= since
            and job.id not in exclude
            and all(stored.get(k) == v for k, v in payload.items())
        ):
            return int(job.id)
    return None


def submit_once(
    trainer: Any,
    *,
    kind: str,
    payload: dict[str, Any],
    intent_at: str | None,
    record_intent: Callable[[str], None],
    create: Callable[[], Any],
    exclude: Collection[int] = (),
) -> tuple[int, bool]:
    """Submit a job exactly once across crashes; (its id, whether this call submitted it).

    Without a recorded intent, `record_intent(now)` stores one (and commits) before the
    submission; with one, the job it led to is looked up first (`find_submitted`).
    `create()` builds the request.
    """
    if intent_at:
        found = find_submitted(
            trainer, kind=kind, payload=payload, intent_at=intent_at, exclude=exclude
        )
        if found is not None:
            return found, False
    else:
        record_intent(utcnow().isoformat())
    return int(trainer.submit(create()).id), True


# --- the polled runner ---------------------------------------------------------------------


class PolledRunner(ABC):
    """Advances a workflow's active rows in the background (start it in the app's lifespan).

    Every `poll_seconds` (at once after `wake()`) `active_ids` is read and each row not
    already being advanced is handed to a pool of `parallel` threads, which runs `step`
    under the row's advisory lock (`lock`). A database that is down is logged and polled
    again; one row's failure never stops the others.
    """

    #: What a row is called in logs and thread names ("round", "campaign", "import").
    noun: str

    def __init__(
        self,
        engine: Engine,
        bind: sessionmaker[Session],
        *,
        poll_seconds: float,
        parallel: int = 1,
    ) -> None:
        self._engine = engine
        self._bind = bind
        self.poll_seconds = poll_seconds
        self._parallel = parallel
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[int, Future[None]] = {}
        self._seen: dict[int, Any] = {}  # state after the last step, per row

    @abstractmethod
    def active_ids(self, session: Session) -> Sequence[int]:
        """Ids of the rows to advance now, in order."""

    @abstractmethod
    def step(self, row_id: int, should_stop: Callable[[], bool]) -> Any:
        """Advance one row (its lock is held); returns its state afterwards."""

    def next_at_once(self, state: Any) -> bool:
        """Whether a row that just moved to `state` is stepped again without waiting."""
        return False

    @abstractmethod
    def lock(self, row_id: int) -> contextlib.AbstractContextManager[bool]:
        """The row's lock, taken without waiting; the context yields whether it was taken."""

    def start(self) -> None:
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self._parallel, thread_name_prefix=self.noun)
        self._thread = threading.Thread(target=self._loop, name=f"{self.noun}-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the rows now instead of at the next poll (after an API change)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except (StorageError, sa.exc.DBAPIError) as exc:  # the database is down
                log.warning("%s runner: polling failed: %s", self.noun, exc)
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("%s runner: polling failed", self.noun)
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _tick(self) -> None:
        with session_scope(self._bind) as session:
            ids = list(self.active_ids(session))
        self._running = {k: f for k, f in self._running.items() if not f.done()}
        self._seen = {k: v for k, v in self._seen.items() if k in set(ids)}
        for row_id in ids:
            if row_id in self._running or self._pool is None or self._stop.is_set():
                continue
            self._running[row_id] = self._pool.submit(self._advance, row_id)

    def _advance(self, row_id: int) -> None:
        try:
            with self.lock(row_id) as got:
                if not got:
                    return
                state = self.step(row_id, self._stop.is_set)
                log.debug("%s %s is %s", self.noun, row_id, state)
            moved = self._seen.get(row_id) != state
            self._seen[row_id] = state
            if moved and self.next_at_once(state):
                self._wake.set()  # a transition: run the next step without waiting
        except (StorageError, sa.exc.DBAPIError) as exc:  # the database is down: next poll
            log.warning("%s %s could not advance: %s", self.noun, row_id, exc)
        except Exception:  # noqa: BLE001 - a background thread has no caller to tell
            log.exception("%s %s could not advance", self.noun, row_id)
