"""Runs dataset imports on background threads of this process.

Only the work runs here; the request and its progress live in the `imports` table
(`regrasp.data.ingest`), so any replica can report on an import and a dead process is noticed
through its stopped heartbeat. On shutdown the running import is asked to stop between
images and is recorded as failed; submitting it again resumes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from regrasp.data.formats.sources import MAX_FILE_BYTES
from regrasp.data.ingest import run_import
from regrasp.platform.errors import StorageError
from regrasp.platform.store.objects.base import ObjectStore

log = logging.getLogger(__name__)


class ImportRunner:
    """A small thread pool for imports (`parallel` at a time; more wait in line)."""

    def __init__(
        self,
        bind: sessionmaker[Session],
        store: ObjectStore,
        *,
        work_dir: Path,
        workers: int,
        max_file_bytes: int = MAX_FILE_BYTES,
        import_roots: Sequence[Path] = (),
        parallel: int = 1,
    ) -> None:
        self._bind = bind
        self._store = store
        self._work_dir = work_dir
        self._workers = workers
        self._max_file_bytes = max_file_bytes
        self._import_roots = tuple(import_roots)
        self._parallel = parallel
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self._parallel, thread_name_prefix="import-job")

    def submit(self, import_id: int) -> None:
        if self._pool is None:
            raise StorageError("the import runner is not started")
        self._pool.submit(self._run, import_id)

    def stop(self) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _run(self, import_id: int) -> None:
        try:
            state = run_import(
                self._bind,
                self._store,
                import_id,
                work_dir=self._work_dir,
                workers=self._workers,
                max_file_bytes=self._max_file_bytes,
                import_roots=self._import_roots,
                should_stop=self._stop.is_set,
            )
            log.info("import %s finished: %s", import_id, state.value)
        except Exception:  # noqa: BLE001 - a background thread has no caller to tell
            log.exception("import %s could not run", import_id)
