"""Imports run on the workflow engine's polled runner: exactly once, whichever replica polls.

Two `ImportRunner`s (as two orchestrator replicas) over one database and store: a queued
import is run by one of them, once (the import's lock); an import queued while no runner
was up (its replica stopped before starting it) is neither marked failed as stale nor
lost: the next runner to poll runs it. On both databases, through the library's own
create/run functions (the route only creates the row and wakes its runner).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from regrasp.data.ingest import create_import, fail_stale_imports, get_import
from regrasp.platform.clock import utcnow
from regrasp.platform.store.db.engine import make_session_factory, session_scope
from regrasp.platform.store.db.tables import Dataset, DatasetImport, DatasetVersion, ImportState
from regrasp.platform.store.objects import open_store
from regrasp.workflows.imports import ImportRunner, import_lock

#: Bound on waiting for a background import of a few small images; nothing is timed.
WAIT_S = 120.0


def _request(name: str) -> dict:
    return {"name": name, "source": {"kind": "synthetic", "images": 4, "size": 64, "seed": 1}}


@pytest.fixture
def db(migrated_engine, tmp_path):
    """(engine, session factory, store) of one replica set: what every runner here shares."""
    return (
        migrated_engine,
        make_session_factory(migrated_engine),
        open_store(f"file://{tmp_path / 'objects'}"),
    )


def _runner(db, tmp_path) -> ImportRunner:
    engine, bind, store = db
    return ImportRunner(
        engine, bind, store, work_dir=tmp_path / "work", workers=1, poll_seconds=0.2
    )


def _wait_final(bind, import_id: int) -> DatasetImport:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with session_scope(bind) as s:
            row = s.get(DatasetImport, import_id)
            if row.state in (ImportState.succeeded, ImportState.failed):
                s.expunge(row)
                return row
        time.sleep(0.1)
    raise AssertionError(f"import {import_id} did not finish in {WAIT_S} s")


def test_two_replicas_run_a_queued_import_once(db, tmp_path) -> None:
    _, bind, _ = db
    with session_scope(bind) as s:
        import_id = create_import(s, request=_request("twice")).id
    runners = [_runner(db, tmp_path) for _ in range(2)]
    for r in runners:
        r.start()
    try:
        for r in runners:
            r.wake()
        row = _wait_final(bind, import_id)
    finally:
        for r in runners:
            r.stop()
    assert row.state == ImportState.succeeded, row.error
    with session_scope(bind) as s:
        datasets = s.scalars(sa.select(Dataset.id).where(Dataset.name == "twice")).all()
        versions = s.scalars(
            sa.select(DatasetVersion.number).where(DatasetVersion.dataset_id == datasets[0])
        ).all()
    assert len(datasets) == 1 and versions == [0]
    assert row.dataset_id == datasets[0] and row.done == 4


def test_an_import_queued_before_its_replica_stopped_runs_at_the_next_poll(db, tmp_path) -> None:
    _, bind, _ = db
    with session_scope(bind) as s:
        row = create_import(s, request=_request("orphan"))
        row.heartbeat_at = utcnow() - timedelta(hours=1)  # queued long ago, never started
        import_id = row.id
    # What a restarting orchestrator does first: a queued import is not a dead process.
    with session_scope(bind) as s:
        assert fail_stale_imports(s) == 0
        assert get_import(s, import_id).state == ImportState.queued
    runner = _runner(db, tmp_path)
    runner.start()  # no wake(): the poll alone finds it
    try:
        row = _wait_final(bind, import_id)
    finally:
        runner.stop()
    assert row.state == ImportState.succeeded, row.error


def test_a_runner_skips_an_import_whose_lock_another_replica_holds(db, tmp_path) -> None:
    engine, bind, _ = db
    with session_scope(bind) as s:
        import_id = create_import(s, request=_request("held")).id
    runner = _runner(db, tmp_path)
    with import_lock(engine, import_id) as got:
        assert got
        runner.start()
        try:
            runner.wake()
            time.sleep(1.0)  # several polls while the other replica holds the lock
            with session_scope(bind) as s:
                assert s.get(DatasetImport, import_id).state == ImportState.queued
        except BaseException:
            runner.stop()
            raise
    try:
        row = _wait_final(bind, import_id)  # released: this runner's next poll runs it
    finally:
        runner.stop()
    assert row.state == ImportState.succeeded, row.error
