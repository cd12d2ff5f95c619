"""The orchestrator's background driver of dataset imports, safe with several replicas.

An import is a row of the `imports` table (`regrasp.data.ingest.create_import`) that any
orchestrator replica may run. `ImportRunner` polls for queued imports every
`poll_seconds` (at once after `wake()`, which the import route calls once the row is
committed) and runs each under its lock (`import_lock`), so two replicas never run the
same import; the lock dies with its holder. Because a queued row waits in the table, not
in a process's memory, an import queued just before its replica stopped is run by the
next replica that polls.

A running import keeps its row's heartbeat fresh; one whose process died is marked failed
(`regrasp.data.ingest.fail_stale_imports`), and submitting it again resumes it (files
already stored are skipped). On shutdown the runner asks the import to stop between
images; it is recorded as failed the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from regrasp.data.formats.sources import MAX_FILE_BYTES
from regrasp.data.ingest import run_import
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.locks import try_lock
from regrasp.platform.store.db.tables import DatasetImport, ImportState
from regrasp.platform.store.objects.base import ObjectStore
from regrasp.workflows.engine import PolledRunner

__all__ = ["LOCK_SPACE", "ImportRunner", "import_lock"]

#: First key of the PostgreSQL advisory locks of imports (the second is the import id).
LOCK_SPACE = 0x52_47_49  # "RGI"


def import_lock(engine: Engine, import_id: int) -> contextlib.AbstractContextManager[bool]:
    """Try to take the import's lock without waiting; the context yields whether it was taken."""
    return try_lock(engine, space=LOCK_SPACE, name="import", key=import_id)


class ImportRunner(PolledRunner):
    """Runs queued imports in the background, `parallel` at a time (start it in the app's
    lifespan); the others wait in the table, oldest first."""

    noun = "import"

    def __init__(
        self,
        engine: Engine,
        bind: sessionmaker[Session],
        store: ObjectStore,
        *,
        work_dir: Path,
        workers: int,
        max_file_bytes: int = MAX_FILE_BYTES,
        import_roots: Sequence[Path] = (),
        poll_seconds: float = 3.0,
        parallel: int = 1,
    ) -> None:
        super().__init__(engine, bind, poll_seconds=poll_seconds, parallel=parallel)
        self._store = store
        self._work_dir = work_dir
        self._workers = workers
        self._max_file_bytes = max_file_bytes
        self._import_roots = tuple(import_roots)

    def active_ids(self, session: Session) -> Sequence[int]:
        return session.scalars(
            sa.select(DatasetImport.id)
            .where(DatasetImport.state == ImportState.queued)
            .order_by(DatasetImport.id)
        ).all()

    def lock(self, row_id: int) -> contextlib.AbstractContextManager[bool]:
        return import_lock(self._engine, row_id)

    def step(self, row_id: int, should_stop: Callable[[], bool]) -> ImportState | None:
        # Read again under the lock: another replica may have run it since the poll.
        with session_scope(self._bind) as session:
            state = session.scalar(sa.select(DatasetImport.state).where(DatasetImport.id == row_id))
        if state != ImportState.queued:
            return state
        return run_import(
            self._bind,
            self._store,
            row_id,
            work_dir=self._work_dir,
            workers=self._workers,
            max_file_bytes=self._max_file_bytes,
            import_roots=self._import_roots,
            should_stop=should_stop,
        )
