"""Garbage collection: objects no database row refers to, and rows left in a stale state.

Crashes, failed jobs and abandoned imports can leave objects behind that nothing refers
to. The references are derived from the tables, and every key is read back through
`regrasp.platform.store.keys.owner_of` (never parsed by hand), one rule per managed root:

- `datasets/<d>/…`: exactly the keys the `images` rows hold (rgb, depth, stereo, mask,
  grasps) — any dataset, any version, as history is append-only and a removed image still
  belongs to the versions before. The rest is the upload of an import that failed or was
  abandoned (`regrasp.data.ingest` keeps it for a retry under the same name; a collection ends
  that wait).
- `meta/<d>/…`: kept while a dataset named `d` exists.
- `cache/<d>/v<n>/…`: kept while version `n` of the dataset stored as `d`
  (`keys.dataset_store_name`) exists.
- `exports/<d>/v<n>/…`: kept while that version exists and the export is complete (its
  `manifest.json`, written last, is there); the rest was interrupted.
- `models/<m>/…`: kept while the `models` row `m` (or the row whose weights live there) is
  ready, or is training with a job still queued or running. The weights and checkpoints of
  failed models, and of rows that do not exist, are leftovers.

Keys outside `keys.MANAGED_ROOTS` are not Regrasp's and are never touched (counted only).

Rows: a model left `training` whose job has ended (a job failed after its worker was lost,
a queued job cancelled) is marked failed; an import whose process died (active, heartbeat
stale) is marked failed as `regrasp.data.ingest.fail_stale_imports` does at orchestrator start.

Safety: `collect_garbage` refuses (Conflict) while work runs that may be writing objects it
has not recorded yet — a round in created/training/predicting/applying, a live import, a
queued or running job, a running campaign — unless `force`. A round in review writes no
objects, so it does not block. Objects younger than `min_age` are never removed: a writer
the database does not track (an export in progress) has its files kept.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.platform.clock import utcnow
from regrasp.platform.errors import Conflict
from regrasp.platform.store import keys
from regrasp.platform.store.db.tables import (
    Campaign,
    CampaignState,
    Dataset,
    DatasetImport,
    DatasetVersion,
    Image,
    Job,
    JobKind,
    JobState,
    Model,
    ModelStatus,
    Round,
    RoundState,
)
from regrasp.platform.store.objects.base import ObjectStore

__all__ = [
    "BUSY_ROUND_STATES",
    "DEFAULT_MIN_AGE",
    "GcReport",
    "OrphanObject",
    "StaleRow",
    "active_work",
    "collect_garbage",
    "find_garbage",
]

log = logging.getLogger(__name__)

#: Round states whose steps may write objects (review waits on people and writes none).
BUSY_ROUND_STATES = (
    RoundState.created,
    RoundState.training,
    RoundState.predicting,
    RoundState.applying,
)
#: Objects younger than this are kept whatever refers to them (untracked writers).
DEFAULT_MIN_AGE = timedelta(hours=1)

_IMAGE_KEY_COLUMNS = (
    Image.rgb_key,
    Image.depth_key,
    Image.stereo_key,
    Image.mask_key,
    Image.grasps_key,
)


@dataclass(frozen=True)
class OrphanObject:
    """An object nothing refers to, and why."""

    key: str
    size: int  # bytes
    reason: str


@dataclass(frozen=True)
class StaleRow:
    """A row left in a state nothing will move it out of, and what collecting does to it."""

    table: str
    id: int
    reason: str
    fix: str


@dataclass
class GcReport:
    """What a collection found (and, with `deleted`, removed and fixed)."""

    objects: list[OrphanObject] = field(default_factory=list)
    rows: list[StaleRow] = field(default_factory=list)
    deleted: bool = False
    scanned: int = 0  # objects under the managed roots
    young: int = 0  # unreferenced but younger than min_age: kept
    unmanaged: int = 0  # outside the managed roots: never touched

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def clean(self) -> bool:
        return not self.objects and not self.rows

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes": self.bytes, "clean": self.clean}


def active_work(session: Session) -> list[str]:
    """Running work that may write objects it has not recorded yet, one line each."""
    from regrasp.data.ingest import ACTIVE_STATES as IMPORT_ACTIVE
    from regrasp.data.ingest import STALE_AFTER

    busy = [
        f"round {i} ({s.value})"
        for i, s in session.execute(
            sa.select(Round.id, Round.state)
            .where(Round.state.in_(BUSY_ROUND_STATES))
            .order_by(Round.id)
        )
    ]
    busy += [
        f"job {i} ({s.value})"
        for i, s in session.execute(
            sa.select(Job.id, Job.state)
            .where(Job.state.in_((JobState.queued, JobState.running)))
            .order_by(Job.id)
        )
    ]
    live_after = utcnow() - STALE_AFTER
    busy += [
        f"import {i} of {name!r} ({s.value})"
        for i, name, s in session.execute(
            sa.select(DatasetImport.id, DatasetImport.dataset_name, DatasetImport.state)
            .where(DatasetImport.state.in_(IMPORT_ACTIVE), DatasetImport.heartbeat_at >= live_after)
            .order_by(DatasetImport.id)
        )
    ]
    busy += [
        f"campaign {i} ({s.value})"
        for i, s in session.execute(
            sa.select(Campaign.id, Campaign.state)
            .where(Campaign.state.in_((CampaignState.created, CampaignState.running)))
            .order_by(Campaign.id)
        )
    ]
    return busy


def find_garbage(
    session: Session,
    store: ObjectStore,
    *,
    min_age: timedelta = DEFAULT_MIN_AGE,
    now: datetime | None = None,
) -> GcReport:
    """Orphan objects and stale rows, found and not touched (a dry run)."""
    refs = _References.load(session)
    cutoff = (now or utcnow()) - min_age
    report = GcReport(rows=_stale_rows(session, refs))
    stale_models = {keys.model_store_name(r.id) for r in report.rows if r.table == "models"}

    @functools.cache
    def complete_export(name: str, version: int) -> bool:
        from regrasp.data.export import MANIFEST_NAME

        return store.exists(keys.export_key(name, version, MANIFEST_NAME))

    for info in store.list(""):
        root = info.key.split("/", 1)[0]
        if root not in keys.MANAGED_ROOTS:
            report.unmanaged += 1
            continue
        report.scanned += 1
        reason = refs.orphan_reason(info.key, stale_models, complete_export)
        if reason is None:
            continue
        if info.last_modified is None or info.last_modified > cutoff:
            report.young += 1
            continue
        report.objects.append(OrphanObject(info.key, info.size, reason))
    return report


def collect_garbage(
    session: Session,
    store: ObjectStore,
    *,
    delete: bool = False,
    force: bool = False,
    min_age: timedelta = DEFAULT_MIN_AGE,
    now: datetime | None = None,
) -> GcReport:
    """Find garbage; with `delete`, remove the orphan objects and fix the stale rows (in
    `session`: the caller commits). Conflict while work is running, unless `force`."""
    busy = active_work(session)
    if busy and not force:
        shown = ", ".join(busy[:10]) + (f" and {len(busy) - 10} more" if len(busy) > 10 else "")
        raise Conflict(
            f"work is running that may still write objects: {shown}; wait for it to end, or "
            "pass --force"
        )
    report = find_garbage(session, store, min_age=min_age, now=now)
    if not delete:
        return report
    for orphan in report.objects:
        store.delete(orphan.key)
        log.info("gc: removed %s (%s)", orphan.key, orphan.reason)
    _fix_rows(session, report.rows)
    report.deleted = True
    return report


# --- private ----------------------------------------------------------------------------


@dataclass
class _References:
    """Everything the tables refer to, in the terms of `keys.owner_of`."""

    image_keys: set[str]
    dataset_names: set[str]
    versions: set[tuple[str, int]]  # (dataset name, version) — exports
    cache_versions: set[tuple[str, int]]  # (dataset store name, version) — caches
    live_models: set[str]  # model store names whose objects are in use
    training_models: dict[int, list[JobState]]  # training rows → states of their jobs

    @classmethod
    def load(cls, session: Session) -> _References:
        image_keys: set[str] = set()
        for column in _IMAGE_KEY_COLUMNS:
            image_keys.update(session.scalars(sa.select(column).where(column.is_not(None))))
        datasets = dict(session.execute(sa.select(Dataset.id, Dataset.name)).all())
        numbers = session.execute(sa.select(DatasetVersion.dataset_id, DatasetVersion.number))
        pairs = [(int(d), int(n)) for d, n in numbers if d in datasets]
        jobs_of: dict[int, list[JobState]] = {}
        for state, result in session.execute(
            sa.select(Job.state, Job.result).where(Job.kind == JobKind.train)
        ):
            model_id = (result or {}).get("model_id")
            if isinstance(model_id, int):
                jobs_of.setdefault(model_id, []).append(JobState(state))
        live: set[str] = set()
        training: dict[int, list[JobState]] = {}
        for model_id, status, weights in session.execute(
            sa.select(Model.id, Model.status, Model.weights_key)
        ):
            states = jobs_of.get(int(model_id), [])
            if status == ModelStatus.training:
                training[int(model_id)] = states
            in_use = status == ModelStatus.ready or (
                status == ModelStatus.training and _any_active(states)
            )
            if not in_use:
                continue
            live.add(keys.model_store_name(model_id))
            owner = keys.owner_of(weights) if weights else None
            if owner is not None and owner.kind == "model":
                live.add(owner.name)
        return cls(
            image_keys=image_keys,
            dataset_names=set(datasets.values()),
            versions={(datasets[d], n) for d, n in pairs},
            cache_versions={(keys.dataset_store_name(datasets[d], d), n) for d, n in pairs},
            live_models=live,
            training_models=training,
        )

    def orphan_reason(
        self, key: str, stale_models: set[str], complete_export: Callable[[str, int], bool]
    ) -> str | None:
        """Why `key` (under a managed root) is an orphan; None when something refers to it."""
        owner = keys.owner_of(key)
        if owner is None:
            return "not a key Regrasp writes"
        if owner.kind == "dataset":
            if key in self.image_keys:
                return None
            if owner.name in self.dataset_names:
                return f"no image of dataset {owner.name!r} refers to it"
            return f"upload of an import of {owner.name!r} that never finished"
        if owner.kind == "meta":
            return None if owner.name in self.dataset_names else "its dataset does not exist"
        if owner.kind == "model":
            if owner.name in self.live_models:
                return None
            if owner.name in stale_models:
                return "its model is stuck training with no job left (marked failed)"
            return "its model failed or does not exist"
        if owner.version is None:
            return "not a key Regrasp writes"
        if owner.kind == "cache":
            if (owner.name, owner.version) in self.cache_versions:
                return None
            return f"cache of {owner.name} v{owner.version}, a version that does not exist"
        if (owner.name, owner.version) not in self.versions:
            return f"export of {owner.name} v{owner.version}, a version that does not exist"
        if not complete_export(owner.name, owner.version):
            return f"export of {owner.name} v{owner.version} that never finished (no manifest)"
        return None


def _stale_rows(session: Session, refs: _References) -> list[StaleRow]:
    from regrasp.data.ingest import ACTIVE_STATES as IMPORT_ACTIVE
    from regrasp.data.ingest import STALE_AFTER

    rows = [
        StaleRow(
            "models",
            model_id,
            "training, but no job of it is queued or running"
            + (f" (its jobs: {', '.join(s.value for s in states)})" if states else ""),
            "mark failed",
        )
        for model_id, states in sorted(refs.training_models.items())
        if not _any_active(states)
    ]
    dead_before = utcnow() - STALE_AFTER
    rows += [
        StaleRow("imports", int(i), f"{s.value}, but its process stopped beating", "mark failed")
        for i, s in session.execute(
            sa.select(DatasetImport.id, DatasetImport.state)
            .where(DatasetImport.state.in_(IMPORT_ACTIVE), DatasetImport.heartbeat_at < dead_before)
            .order_by(DatasetImport.id)
        )
    ]
    return rows


def _fix_rows(session: Session, rows: Iterable[StaleRow]) -> None:
    from regrasp.data.ingest import fail_stale_imports

    models = [r.id for r in rows if r.table == "models"]
    if models:
        session.execute(
            sa.update(Model)
            .where(Model.id.in_(models), Model.status == ModelStatus.training)
            .values(status=ModelStatus.failed)
        )
    if any(r.table == "imports" for r in rows):
        fail_stale_imports(session)
    session.flush()


def _any_active(states: Iterable[JobState]) -> bool:
    return any(s in (JobState.queued, JobState.running) for s in states)
