"""Back up and restore as `docs/operations.md` says, then export the same version from both.

A dataset with three versions (v0 imported; v1 a round's kind of edits: an image removed,
a rectangle removed, a predicted grasp accepted by a reviewer; v2 a rollback to v0) lives
in PostgreSQL and an S3 bucket (moto's server, through the minio client). The backup is
the real `pg_dump` binary (custom format) and `regrasp store mirror` from the bucket into
a folder; the restore is `pg_restore` into a brand-new, empty database and `regrasp store
mirror` from the folder into a new, empty bucket. Exporting v1 and v2 from the original
system and from the restored one must give archives identical byte for byte.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from regrasp.data import versions as V
from regrasp.data.export import iter_export_zip, plan_export
from regrasp.data.ingest import import_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.platform.accounts import create_user
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.objects import open_store
from tests.harness.databases import postgres_server_url
from tests.harness.postgres import scratch_database

REGRASP = [sys.executable, "-m", "regrasp.cli"]


def _pg_tool(name: str) -> str:
    """The newest installed PostgreSQL client binary `name`; fails loudly when missing."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    path = found[-1] if found else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found in /usr/lib/postgresql/*/bin or PATH", pytrace=False)
    return path


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as the libpq URI pg_dump/pg_restore take."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _run(cmd: list[str], **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("REGRASP_")}
    done = subprocess.run(
        cmd, env={**full, **env}, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (cmd[:3], done.stderr[-2000:])
    return done.stdout


def _build(engine, store, synth: Path) -> int:
    """Import the dataset (v0), apply a round's kind of edits (v1), roll back (v2)."""
    with session_scope(engine) as s:
        dataset = import_jacquard(s, store, synth, name="backed-up")
        reviewer = create_user(s, username="ana", password="annotate-1", role="annotator").id
        labels = V.labels_at(s, dataset, 0)
        ids = np.unique(labels.image_ids)
        V.create_version(
            s,
            dataset,
            0,
            V.ChangeSet(
                remove_image_ids=[int(ids[0])],
                remove_image_reasons="annotation error",
                remove_image_reviewer_ids=[reviewer],
                remove_grasp_ids=labels.grasp_ids[labels.image_ids == ids[1]][:1],
                remove_grasp_reasons="fix",
                remove_grasp_reviewer_ids=[reviewer],
                add_image_ids=[int(ids[2])],
                add_grasps=[[30.0, 31.0, 12.5, 20.0, 10.0]],
                add_source="prediction",
                add_reviewer_ids=[reviewer],
                add_notes="missing label",
            ),
            message="round 1",
        )
        V.rollback_to(s, dataset, 0, message="undo round 1", reviewer_id=reviewer)
    return dataset


def _exports(url: str, store, dataset: int) -> dict[int, bytes]:
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            plans = {v: plan_export(s, dataset, v) for v in (1, 2)}
    finally:
        engine.dispose()
    return {v: b"".join(iter_export_zip(store, plan)) for v, plan in plans.items()}


@pytest.mark.slow
def test_backup_then_restore_into_empty_stores_exports_the_same_bytes(
    postgres_url, s3_server, s3_bucket, tmp_path
):
    pg_dump, pg_restore = _pg_tool("pg_dump"), _pg_tool("pg_restore")
    s3 = {
        "s3_endpoint": s3_server.endpoint,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
        "s3_region": s3_server.region,
    }
    s3_env = {f"REGRASP_{k.upper()}": v for k, v in s3.items()}
    original = open_store(f"s3://{s3_bucket}", **s3)
    migrations.upgrade(postgres_url)
    generate_dataset(tmp_path / "synth", images=4, objects=2, size=64, workers=1, seed=7)
    engine = make_engine(postgres_url)
    try:
        dataset = _build(engine, original, tmp_path / "synth")
    finally:
        engine.dispose()

    # Backup: the database first, then the objects (every key the dump names exists by then).
    dump, folder = tmp_path / "regrasp.dump", tmp_path / "backup-objects"
    _run([pg_dump, "--format=custom", "--no-owner", f"--file={dump}", _libpq(postgres_url)])
    out = _run([*REGRASP, "store", "mirror", f"s3://{s3_bucket}", f"file://{folder}"], **s3_env)
    stored = len(list(original.list()))
    assert stored >= 4 * 4 and f"{stored} copied" in out, out  # 4 images x 4 files
    again = _run([*REGRASP, "store", "mirror", f"s3://{s3_bucket}", f"file://{folder}"], **s3_env)
    assert f"0 copied (0 bytes), {stored} identical" in again, again
    typo = subprocess.run(
        [*REGRASP, "store", "mirror", f"file://{tmp_path / 'no-such'}", f"file://{folder}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert typo.returncode == 1 and typo.stderr.startswith("error: no object"), typo.stderr

    # Restore into empty stores: a brand-new database and a bucket that does not exist yet.
    bucket = f"regrasp-restored-{uuid.uuid4().hex[:8]}"
    with scratch_database(postgres_server_url(), f"regrasp_restored_{uuid.uuid4().hex[:8]}") as url:
        empty = make_engine(url)
        with empty.connect() as conn:
            assert not sa.inspect(conn).get_table_names()
        empty.dispose()
        _run([pg_restore, "--no-owner", "--exit-on-error", "--single-transaction",
              f"--dbname={_libpq(url)}", str(dump)])  # fmt: skip
        _run([*REGRASP, "store", "mirror", f"file://{folder}", f"s3://{bucket}"], **s3_env)
        restored_engine = make_engine(url)
        try:
            migrations.check_schema(restored_engine)  # the schema is the code's
        finally:
            restored_engine.dispose()
        restored = open_store(f"s3://{bucket}", **s3)
        assert sorted(o.key for o in restored.list()) == sorted(o.key for o in original.list())
        after = _exports(url, restored, dataset)
    before = _exports(postgres_url, original, dataset)

    for version in (1, 2):
        assert len(before[version]) > 10_000  # images and grasps, not an empty archive
        assert after[version] == before[version], f"v{version} exports differ"
    assert before[1] != before[2]  # v1 really differs from its rollback
    assert before[1] == _exports(postgres_url, original, dataset)[1]  # reproducible
