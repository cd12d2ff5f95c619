"""Engines by URL scheme and the one managed session every caller uses.

Two backends: SQLite (the embedded default, one machine) and PostgreSQL through psycopg 3
(deployment). The scheme picks the backend from a small registry, so an unknown scheme
fails at start with the list of known ones instead of deep inside a driver import.

`session_scope` is the only place transactions end: it commits on success, rolls back on
any exception, and maps database errors to domain errors (a unique or foreign-key
violation is a `Conflict` the caller can report as 409; a lost connection or a lock
timeout is a `StorageError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from regrasp.platform.errors import ConfigError, Conflict, InvalidInput, StorageError
from regrasp.platform.settings import redact_url

__all__ = [
    "KNOWN_SCHEMES",
    "core_connection",
    "make_engine",
    "make_session_factory",
    "session_scope",
]

#: How long an SQLite writer waits for another writer's lock before failing, in ms.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(
    url: str | URL, *, echo: bool = False, pool_size: int | None = None, pre_ping: bool = True
) -> Engine:
    """Create an engine for `url`: `sqlite:///path` or `postgresql+psycopg://user@host/db`.

    `postgresql://` is taken as psycopg 3 (the only PostgreSQL driver we install).
    `pool_size` (PostgreSQL): connections kept open, for a server that runs that many
    requests at once (as many again may open at peaks); default SQLAlchemy's 5 + 10.
    `pre_ping` tests a pooled connection before each use: a round trip per checkout,
    worth it for long-idle tools, not for a busy server (which passes False).
    Raises ConfigError for a malformed URL or an unknown scheme.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Never the URL as given: it may carry the password (and so may SQLAlchemy's text).
        shown = redact_url(url if isinstance(url, str) else str(url))
        raise ConfigError(f"malformed database URL {shown!r}") from None
    builder = _BUILDERS.get(parsed.drivername)
    if builder is None:
        raise ConfigError(
            f"unknown database URL scheme {parsed.drivername!r}; known: "
            + ", ".join(f"{s}://" for s in KNOWN_SCHEMES)
        )
    return builder(parsed, echo, pool_size, pre_ping)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to `engine`; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(bind: Engine | sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session in one transaction: commit on success, roll back on any error.

    IntegrityError becomes `Conflict`, OperationalError `StorageError`, other driver
    errors on bad values (DataError) `InvalidInput`; domain errors pass through unchanged.
    """
    factory = bind if isinstance(bind, sessionmaker) else make_session_factory(bind)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException as exc:
        session.rollback()
        mapped = map_db_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise
    finally:
        session.close()


def core_connection(session: Session) -> sa.Connection:
    """The session's connection, for Core statements on hot paths.

    `session.execute` wraps every statement in ORM bookkeeping (autoflush, loading,
    synchronising updated objects) that a statement returning plain rows does not need;
    on the connection it costs much less. Pending changes are flushed first, as
    `session.execute` would (a no-op when nothing is pending), so the statement sees them.
    """
    if session.autoflush:
        session.flush()
    return session.connection()


def map_db_error(exc: BaseException) -> Exception | None:
    """The domain error for a database exception, or None when `exc` is not one."""
    if isinstance(exc, IntegrityError):
        return Conflict(f"conflicts with existing data: {_first_line(exc)}")
    if isinstance(exc, OperationalError):
        return StorageError(f"database unavailable or busy: {_first_line(exc)}")
    if isinstance(exc, sa.exc.DataError):
        return InvalidInput(f"value rejected by the database: {_first_line(exc)}")
    if isinstance(exc, DBAPIError):
        return StorageError(f"database error: {_first_line(exc)}")
    return None


# --- backends ---------------------------------------------------------------------------


def _sqlite_engine(url: URL, echo: bool, _pool_size: int | None, _pre_ping: bool) -> Engine:
    if url.database and url.database != ":memory:":
        # The embedded default lives under ./.regrasp/, which may not exist yet.
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, echo=echo, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (pysqlite would
        # otherwise run SELECTs outside any transaction and break SAVEPOINTs).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if url.database and url.database != ":memory:":
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        # IMMEDIATE takes the write lock up front. A deferred BEGIN that reads and then
        # writes fails at once with "database is locked" when another process wrote in
        # between (SQLite cannot upgrade a stale read snapshot); waiting on busy_timeout at
        # BEGIN instead serialises writers safely. WAL still lets readers of other
        # connections proceed.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL, echo: bool, pool_size: int | None, pre_ping: bool) -> Engine:
    # A request holds its connection from its first query to its commit, across its thread
    # hops, so more requests than threads can hold one: the overflow (as large again)
    # covers those peaks instead of making them wait for the pool's timeout.
    pool = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": pool_size}
    return sa.create_engine(
        url.set(drivername="postgresql+psycopg"), echo=echo, pool_pre_ping=pre_ping, **pool
    )


_BUILDERS: dict[str, Callable[[URL, bool, int | None, bool], Engine]] = {
    "sqlite": _sqlite_engine,
    "sqlite+pysqlite": _sqlite_engine,
    "postgresql+psycopg": _postgres_engine,
    "postgresql": _postgres_engine,
}

KNOWN_SCHEMES: tuple[str, ...] = tuple(_BUILDERS)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
