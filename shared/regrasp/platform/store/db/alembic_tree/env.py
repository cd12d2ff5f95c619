"""Alembic environment shipped inside the package, for SQLite and PostgreSQL alike.

`regrasp.platform.store.db.migrations` builds the Alembic config in code and hands over an open
connection in `config.attributes["connection"]`; `render_as_batch=True` makes ALTERs work on
SQLite by rebuilding the table.
"""

from __future__ import annotations

from alembic import context

from regrasp.platform.store.db.engine import make_engine
from regrasp.platform.store.db.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.attributes["url"])
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError(
        "offline (SQL script) migrations are not supported; run `regrasp db upgrade`"
    )
run_migrations_online()
