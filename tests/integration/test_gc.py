"""`regrasp gc` over a real store (file:// and S3 on moto) and a real database.

One world holds every kind of object a crash or a failure can leave behind, beside the
objects that are in use, all keyed through `regrasp.platform.store.keys`:

- in use: the images of a dataset, its meta file, the cache and a finished export of its
  version, a ready model's weights and checkpoints (one named by row id, one registered
  under a name), the checkpoints of a model whose job is running;
- orphans: the upload of an import that never finished, a stray file in a dataset's
  folder, a meta file and a cache of a dataset that does not exist, a cache of a version
  that does not exist, an export without its manifest, the checkpoints of a failed model,
  of a model stuck training with its job failed, and of a model row that does not exist;
- stale rows: that stuck model, and an import whose process stopped beating;
- someone else's object outside Regrasp's folders.

The collection must find exactly the orphans and stale rows, remove nothing on a dry run,
remove exactly them with delete, and then find nothing. The CLI refuses while a job runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from regrasp.data.gc import collect_garbage, find_garbage
from regrasp.data.ingest import import_jacquard, open_dataset, stage_import
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.platform.errors import Conflict
from regrasp.platform.store import keys
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import (
    DatasetImport,
    ImportState,
    Job,
    JobKind,
    JobState,
    Model,
    ModelStatus,
)
from regrasp.platform.store.objects import open_store

ROOT = Path(__file__).resolve().parents[2]
#: Objects are a moment old; collecting "as of a little later" makes min_age 0 exact.
LATER = timedelta(seconds=5)


@pytest.fixture(params=["file", "s3"])
def store_env(request, tmp_path) -> dict[str, str]:
    """REGRASP_* settings of a fresh store of each kind."""
    if request.param == "file":
        return {"REGRASP_OBJECT_STORE_URL": f"file://{tmp_path / 'objects'}"}
    server = request.getfixturevalue("s3_server")
    return {
        "REGRASP_OBJECT_STORE_URL": request.getfixturevalue("s3_store_url"),
        "REGRASP_S3_ENDPOINT": server.endpoint,
        "REGRASP_S3_ACCESS_KEY": server.access_key,
        "REGRASP_S3_SECRET_KEY": server.secret_key,
    }


def _open(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return open_store(
        env["REGRASP_OBJECT_STORE_URL"],
        s3_endpoint=env.get("REGRASP_S3_ENDPOINT"),
        s3_access_key=env.get("REGRASP_S3_ACCESS_KEY"),
        s3_secret_key=env.get("REGRASP_S3_SECRET_KEY"),
    )


@pytest.fixture
def world(database_url, store_env, tmp_path):
    yield _world(database_url, store_env, tmp_path)


def _world(database_url: str, store_env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    store = _open(store_env)
    generate_dataset(tmp_path / "synth", images=3, objects=2, size=64, workers=1, seed=4)
    migrations.upgrade(database_url)
    engine = make_engine(database_url)
    kept: set[str] = set()
    orphans: set[str] = set()

    def put(key: str, into: set[str]) -> None:
        store.put_bytes(key, b"x" * 7)
        into.add(key)

    with session_scope(engine) as s:
        dataset_id = import_jacquard(s, store, tmp_path / "synth", name="kept")
        import_jacquard(s, store, tmp_path / "synth", name="other")
    # An import of "abandoned" that uploaded its files and died before writing version 0.
    with open_dataset("jacquard", path=tmp_path / "synth") as scanned:
        stage_import(store, scanned, name="abandoned").close()
    orphans |= {i.key for i in store.list(keys.dataset_prefix("abandoned"))}
    assert orphans, "the abandoned upload stored nothing: the check would be empty"

    obj = next(iter(store.list(keys.dataset_prefix("kept")))).key.split("/")[2]
    put(keys.image_file_key("kept", obj, "ghost", "rgb"), orphans)
    put(keys.dataset_meta_key("kept", "truth.json"), kept)
    put(keys.dataset_meta_key("gone", "truth.json"), orphans)
    cache_name = keys.dataset_store_name("kept", dataset_id)
    put(keys.cache_shard_key(cache_name, 0, "depth-32px/index.json"), kept)
    put(keys.cache_shard_key(cache_name, 3, "depth-32px/index.json"), orphans)
    put(keys.cache_shard_key("gone", 0, "depth-32px/train-00000.npz"), orphans)
    put(keys.export_key("kept", 0, "obj/0_obj_RGB.png"), kept)
    put(keys.export_key("kept", 0, "manifest.json"), kept)
    put(keys.export_key("other", 0, "obj/0_obj_RGB.png"), orphans)  # no manifest
    put(keys.export_key("gone", 0, "manifest.json"), orphans)
    store.put_bytes("incoming/upload.zip", b"not ours")

    with session_scope(engine) as s:
        rows = {
            status: Model(architecture="ggcnn", in_channels=1, status=status)
            for status in ModelStatus
        }
        stuck = Model(architecture="ggcnn", in_channels=1, status=ModelStatus.training)
        named = Model(
            architecture="ggcnn",
            in_channels=1,
            status=ModelStatus.ready,
            weights_key=keys.weights_key("named"),
        )
        s.add_all([*rows.values(), stuck, named])
        s.flush()
        now = datetime.now(UTC)
        running = Job(
            kind=JobKind.train,
            state=JobState.running,
            worker_id="w",
            heartbeat_at=now,
            result={"model_id": rows[ModelStatus.training].id},
        )
        lost = Job(
            kind=JobKind.train,
            state=JobState.failed,
            result={"model_id": stuck.id},
            error="worker lost after 3 attempts",
        )
        dead_import = DatasetImport(
            dataset_name="half", state=ImportState.uploading, heartbeat_at=now - timedelta(hours=1)
        )
        s.add_all([running, lost, dead_import])
        s.flush()
        ids = {
            "ready": rows[ModelStatus.ready].id,
            "training": rows[ModelStatus.training].id,
            "failed": rows[ModelStatus.failed].id,
            "stuck": stuck.id,
            "job": running.id,
            "import": dead_import.id,
        }
    name = keys.model_store_name
    for model in ("ready", "training"):
        put(keys.checkpoint_key(name(ids[model]), 1), kept)
    put(keys.weights_key(name(ids["ready"])), kept)
    put(keys.weights_key("named"), kept)
    put(keys.checkpoint_key(name(ids["failed"]), 1), orphans)
    put(keys.checkpoint_key(name(ids["stuck"]), 2), orphans)
    put(keys.checkpoint_key(name(9999), 1), orphans)
    everything = {i.key for i in store.list("")} - {"incoming/upload.zip"}
    assert kept <= everything - orphans
    return engine, store, store_env, database_url, everything - orphans, orphans, ids


def test_gc_finds_exactly_the_orphans_and_removes_only_them(world):
    engine, store, _env, _url, kept, orphans, ids = world
    try:
        _collect_and_check(engine, store, kept, orphans, ids)
    finally:
        engine.dispose()


def _collect_and_check(engine, store, kept, orphans, ids) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC) + LATER
    with session_scope(engine) as s:
        with pytest.raises(Conflict, match=rf"job {ids['job']} \(running\)"):
            collect_garbage(s, store)
        young = find_garbage(s, store)  # default min_age: everything is too recent
        report = collect_garbage(s, store, force=True, min_age=timedelta(0), now=now)
    assert young.objects == [] and young.young == len(orphans)
    assert {o.key for o in report.objects} == orphans
    assert {(r.table, r.id) for r in report.rows} == {
        ("models", ids["stuck"]),
        ("imports", ids["import"]),
    }
    assert report.unmanaged == 1 and report.scanned == len(orphans) + len(kept)
    assert not report.deleted and all(store.exists(k) for k in orphans | kept)
    reasons = {o.key: o.reason for o in report.objects}
    assert "never finished" in reasons[next(k for k in orphans if "/abandoned/" in k)]

    with session_scope(engine) as s:
        removed = collect_garbage(s, store, delete=True, force=True, min_age=timedelta(0), now=now)
    assert removed.deleted and {o.key for o in removed.objects} == orphans
    assert not any(store.exists(k) for k in orphans)
    assert all(store.exists(k) for k in kept) and store.exists("incoming/upload.zip")
    with session_scope(engine) as s:
        assert s.get(Model, ids["stuck"]).status == ModelStatus.failed
        assert s.get(Model, ids["training"]).status == ModelStatus.training  # its job runs
        assert s.get(DatasetImport, ids["import"]).state == ImportState.failed
        after = collect_garbage(s, store, force=True, min_age=timedelta(0), now=now)
    assert after.clean and after.scanned == len(kept)


@pytest.mark.slow
def test_the_cli_refuses_while_a_job_runs_and_reports_as_json(postgres_url, tmp_path):
    env = {"REGRASP_OBJECT_STORE_URL": f"file://{tmp_path / 'objects'}"}
    engine, _store, _env, _url, _kept, orphans, ids = _world(postgres_url, env, tmp_path)
    try:
        _cli_checks(
            engine, {**os.environ, **env, "REGRASP_DATABASE_URL": postgres_url}, orphans, ids
        )
    finally:
        engine.dispose()


def _cli_checks(engine, cli_env: dict[str, str], orphans: set[str], ids: dict) -> None:  # type: ignore[no-untyped-def]

    def gc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "regrasp.cli", "gc", *args],
            env=cli_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = gc("--min-age", "0")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert f"job {ids['job']} (running)" in refused.stderr and "--force" in refused.stderr
    with session_scope(engine) as s:
        s.get(Job, ids["job"]).state = JobState.succeeded
        s.get(Model, ids["training"]).status = ModelStatus.ready
    listed = gc("--min-age", "0", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert {o["key"] for o in report["objects"]} <= orphans  # the newest may be "young"
    assert len(report["objects"]) + report["young"] == len(orphans) and not report["deleted"]
    text = gc("--min-age", "0")
    assert text.returncode == 0 and "would remove" in text.stdout
    assert "--delete" in text.stdout.splitlines()[-1]
