"""Non-blocking named locks that die with their holder, for background drivers.

The orchestrator's runners (rounds, campaigns) advance each entity only under its lock,
so two replicas never run the same step at once, and a killed replica frees its locks
at once:

- PostgreSQL: a session-level advisory lock `pg_try_advisory_lock(space, key)` held on a
  dedicated connection for the lock's duration;
- SQLite (one machine): an exclusive `flock` on a file beside the database,
  `<db>.<name>-<key>.lock`, plus an in-process lock (flock locks are per process).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["try_lock"]

_process_locks: dict[tuple[str, str, int], threading.Lock] = {}
_process_guard = threading.Lock()


@contextlib.contextmanager
def try_lock(engine: Engine, *, space: int, name: str, key: int) -> Iterator[bool]:
    """Try to take lock `key` of the kind `name` (advisory space `space`) without waiting.

    Yields whether it was taken; the lock is released when the block ends.
    """
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, space, key) as got:
            yield got
        return
    database = engine.url.database or ""
    with _process_lock(database, name, key) as got_here:
        if not got_here:
            yield False
            return
        if not database or database == ":memory:":
            yield True
            return
        fd = os.open(Path(f"{database}.{name}-{key}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _advisory_lock(engine: Engine, space: int, key: int) -> Iterator[bool]:
    params = {"space": space, "id": key}
    with engine.connect() as conn:
        got = bool(
            conn.execute(sa.text("SELECT pg_try_advisory_lock(:space, :id)"), params).scalar()
        )
        conn.commit()
        try:
            yield got
        finally:
            if got:
                try:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:space, :id)"), params)
                    conn.commit()
                except sa.exc.DBAPIError:
                    # The connection died (a database restart): the lock died with it.
                    conn.invalidate()


@contextlib.contextmanager
def _process_lock(database: str, name: str, key: int) -> Iterator[bool]:
    with _process_guard:
        lock = _process_locks.setdefault((database, name, key), threading.Lock())
    got = lock.acquire(blocking=False)
    try:
        yield got
    finally:
        if got:
            lock.release()
