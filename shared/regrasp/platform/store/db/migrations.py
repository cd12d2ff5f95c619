"""Schema migrations: one Alembic tree shipped inside the package, for SQLite and PostgreSQL.

There is no alembic.ini: the configuration is built in code with `script_location`
resolved from the installed package, so `regrasp db upgrade` works from any directory and
from a wheel. Services call `check_schema` at start and refuse to run on a schema that is
behind (or ahead of) the code, with the exact command that fixes it.
"""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError

from regrasp.platform.errors import SchemaOutOfDate, StorageError
from regrasp.platform.store.db.engine import make_engine, map_db_error

__all__ = ["UPGRADE_COMMAND", "check_schema", "current", "downgrade", "head", "upgrade"]

#: The command a person runs to bring a database up to the code.
UPGRADE_COMMAND = "regrasp db upgrade"


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (default: the newest)."""
    _run(url, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url: str | URL | Engine, revision: str) -> None:
    """Revert migrations down to `revision` (`base` drops every table)."""
    _run(url, lambda cfg: command.downgrade(cfg, revision))


def current(url: str | URL | Engine) -> str | None:
    """The database's revision, or None for a database never migrated."""
    engine, owned = _engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise map_db_error(exc) or StorageError(str(exc)) from exc
    finally:
        if owned:
            engine.dispose()


def head() -> str:
    """The newest revision the code knows."""
    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:  # a branched tree is a packaging bug, not a user error
        raise RuntimeError(f"migration tree must have exactly one head, found {heads}")
    return heads[0]


def prepare(url: str | URL | Engine, *, mode: str) -> None:
    """Make the schema usable at a service's start, by the settings' `mode`.

    Development (one machine) migrates to head; deployment only verifies, because there
    migrating is the operator's step (`regrasp db upgrade`, the compose/k8s migration
    job), and raises SchemaOutOfDate with that command when the schema is behind.
    """
    if mode == "development":
        upgrade(url)
    else:
        check_schema(url)


def check_schema(url: str | URL | Engine) -> None:
    """Raise SchemaOutOfDate unless the database is exactly at `head()`."""
    at, expected = current(url), head()
    if at == expected:
        return
    if at is None:
        state = "has no regrasp schema"
    elif at in _known_revisions():
        state = f"is at revision {at}, behind the code ({expected})"
    else:
        raise SchemaOutOfDate(
            f"database schema is at revision {at}, which this code does not know (it expects "
            f"{expected}): the database was migrated by a newer regrasp; upgrade the code"
        )
    raise SchemaOutOfDate(f"database {state}: run `{UPGRADE_COMMAND}`")


# --- private ----------------------------------------------------------------------------


def _config() -> Config:
    cfg = Config()
    script_location = resources.files("regrasp.platform.store.db") / "alembic_tree"
    cfg.set_main_option("script_location", str(script_location))
    return cfg


def _known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}


def _engine(url: str | URL | Engine) -> tuple[Engine, bool]:
    if isinstance(url, Engine):
        return url, False
    return make_engine(url), True


def _run(url: str | URL | Engine, action) -> None:  # type: ignore[no-untyped-def]
    engine, owned = _engine(url)
    try:
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            action(cfg)
    except SQLAlchemyError as exc:
        raise map_db_error(exc) or StorageError(str(exc)) from exc
    finally:
        if owned:
            engine.dispose()
