"""The schema: migrations up and down on SQLite and PostgreSQL, schema checks, sessions."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from regrasp.platform.errors import ConfigError, Conflict, SchemaOutOfDate
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Base, User, UserRole


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_to_head_downgrade_to_base_and_back(database_url):
    assert migrations.current(database_url) is None

    migrations.upgrade(database_url)
    assert migrations.current(database_url) == migrations.head()
    assert set(Base.metadata.tables) <= _tables(database_url)

    migrations.downgrade(database_url, "base")
    assert migrations.current(database_url) is None
    assert not set(Base.metadata.tables) & _tables(database_url)

    migrations.upgrade(database_url, "head")
    assert migrations.current(database_url) == migrations.head()


def test_migrated_schema_matches_the_models(database_url):
    migrations.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_check_schema_names_the_fix_command(database_url):
    with pytest.raises(SchemaOutOfDate, match="regrasp db upgrade"):
        migrations.check_schema(database_url)
    migrations.upgrade(database_url)
    migrations.check_schema(database_url)
    migrations.downgrade(database_url, "base")
    with pytest.raises(SchemaOutOfDate, match="regrasp db upgrade"):
        migrations.check_schema(database_url)


def test_check_schema_refuses_a_schema_from_newer_code(database_url):
    migrations.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
        with pytest.raises(SchemaOutOfDate, match="newer regrasp"):
            migrations.check_schema(engine)
    finally:
        engine.dispose()


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"sqlite://.*postgresql\+psycopg://"):
        make_engine("mysql://root@localhost/regrasp")


def test_sqlite_engine_enforces_foreign_keys_and_uses_wal(sqlite_url):
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_session_scope_maps_integrity_errors_and_rolls_back(database_url):
    migrations.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as s:
            s.add(User(username="ada", role=UserRole.admin, password_hash="x"))
        with pytest.raises(Conflict), session_scope(engine) as s:
            s.add(User(username="bob", role=UserRole.annotator, password_hash="x"))
            s.flush()
            s.add(User(username="ada", role=UserRole.annotator, password_hash="y"))
        with session_scope(engine) as s:
            assert s.scalars(sa.select(User.username)).all() == ["ada"]
    finally:
        engine.dispose()


def test_prepare_migrates_in_development_and_only_verifies_in_deployment(database_url):
    with pytest.raises(SchemaOutOfDate, match="regrasp db upgrade"):
        migrations.prepare(database_url, mode="deployment")
    assert migrations.current(database_url) is None  # deployment changed nothing
    migrations.prepare(database_url, mode="development")
    assert migrations.current(database_url) == migrations.head()
    migrations.prepare(database_url, mode="deployment")  # now up to date: no error


def test_0009_moves_a_rounds_run_state_out_of_its_config_and_back(database_url):
    """Rounds written before 0009 kept their run state under `config["_run"]`: upgrading
    moves it to `rounds.run` (the retry streak to `rounds.retry`), downgrading restores it."""
    migrations.upgrade(database_url, "0008")
    run = {
        "timings": {"created": {"started": "2026-12-01T10:00:00+00:00"}},
        "units": [{"fold": None, "job_id": 4, "model_id": None}],
        "retry": {"state": "training", "attempts": 2},
    }
    config = {"flag_threshold": 0.25, "_run": run}
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO datasets (id, name, description, created_at) "
                    "VALUES (1, 'd', '', CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO rounds (id, dataset_id, base_version, state, config, "
                    "created_at, updated_at) VALUES (1, 1, 0, 'training', :config, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"config": json.dumps(config)},
            )
        migrations.upgrade(database_url, "0009")
        row = _round_row(engine)
        assert row["config"] == {"flag_threshold": 0.25}
        assert row["run"] == {k: v for k, v in run.items() if k != "retry"}
        assert row["retry"] == run["retry"]

        migrations.downgrade(database_url, "0008")
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT config FROM rounds WHERE id = 1")).scalar_one()
        assert _json(stored) == config
    finally:
        engine.dispose()


def _round_row(engine: sa.Engine) -> dict:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT config, run, retry FROM rounds WHERE id = 1")).one()
    return {k: _json(v) for k, v in row._mapping.items()}


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value
