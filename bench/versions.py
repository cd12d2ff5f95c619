"""Benchmark of the versioned label store on PostgreSQL at Jacquard scale.

Builds a synthetic dataset (default 54,000 images, ~20 grasps each = 1.08M grasps) with
three versions (v0 import; v1 a round: ~2.9k images removed, ~30k grasps added, ~5k
removed; v2 a rollback to v0), then times:

- building (import of v0 and each new version), rows/s;
- "labels of version v" (`labels_at`) against a naive baseline run side by side: one
  query per image for its labels (what a per-image loop in an exporter would do), timed
  on a sample of images and extrapolated to all of them (clearly labelled as such);
- `diff(v0, v1)` against a naive baseline: fetch every grasp row of the dataset and
  compute the difference in Python sets.

Run: `python bench/versions.py [--database-url URL] [--images N] [--grasps-per-image K]`.
It creates and drops its own database `regrasp_bench_versions` on the server.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from regrasp.data import versions as V
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, session_scope
from regrasp.platform.store.db.tables import Grasp

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "regrasp_bench_versions"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("REGRASP_TEST_DATABASE_URL", DEFAULT_SERVER),
        help="PostgreSQL server URL (any database; the bench creates its own).",
    )
    parser.add_argument("--images", type=int, default=54_000)
    parser.add_argument("--grasps-per-image", type=int, default=20)
    parser.add_argument("--sample", type=int, default=500, help="images for the naive loop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    server = make_url(args.database_url)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    _recreate(admin, BENCH_DB)
    url = server.set(database=BENCH_DB).render_as_string(hide_password=False)
    try:
        _run(url, args)
    finally:
        _drop(admin, BENCH_DB)
        admin.dispose()


def _run(url: str, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    n_img, per = args.images, args.grasps_per_image
    # Jacquard-like: 1..2*per grasps per image, about `per` on average.
    counts = rng.integers(1, 2 * per, n_img)
    index = np.repeat(np.arange(n_img), counts)
    n = len(index)
    grasps = np.column_stack(
        [rng.uniform(0, 1024, (n, 2)), rng.uniform(-90, 90, n), rng.uniform(5, 80, (n, 2))]
    )
    images = V.ImageRecords(
        names=[f"{i}_obj{i // 5}" for i in range(n_img)],
        object_names=[f"obj{i // 5}" for i in range(n_img)],
        widths=np.full(n_img, 1024),
        heights=np.full(n_img, 1024),
        splits=["train"] * n_img,
        checksums=["0" * 64] * n_img,
    )
    migrations.upgrade(url)
    engine = make_engine(url)
    print(f"dataset: {n_img:,} images, {n:,} grasps")

    t = time.perf_counter()
    with session_scope(engine) as s:
        d = V.create_dataset(s, name="bench")
        image_ids = V.import_version0(s, d, images, index, grasps)
    t_import = time.perf_counter() - t
    _report("build v0 (import)", t_import, n + n_img)

    # v1: a HIL round at the paper's proportions (~5% images removed, ~1% new grasps).
    with session_scope(engine) as s:
        v0 = V.labels_at(s, d, 0)
    removed_images = rng.choice(image_ids, max(1, n_img * 2884 // 54_000), replace=False)
    keep = ~np.isin(v0.image_ids, removed_images)
    remove_grasps = rng.choice(v0.grasp_ids[keep], max(1, n // 200), replace=False)
    target = rng.choice(np.setdiff1d(image_ids, removed_images), max(1, n // 36), replace=True)
    change = V.ChangeSet(
        add_image_ids=target,
        add_grasps=np.column_stack(
            [rng.uniform(0, 1024, (len(target), 3)), rng.uniform(5, 80, (len(target), 2))]
        ),
        add_source="prediction",
        add_notes="missing label",
        remove_grasp_ids=remove_grasps,
        remove_grasp_reasons="fix",
        remove_image_ids=removed_images,
        remove_image_reasons="annotation error",
    )
    t = time.perf_counter()
    with session_scope(engine) as s:
        v1 = V.create_version(s, d, 0, change, message="round 1")
    t_v1 = time.perf_counter() - t
    changed = len(target) + len(remove_grasps) + len(removed_images)
    _report(f"build v1 (change set of {changed:,} edits)", t_v1, changed)
    t = time.perf_counter()
    with session_scope(engine) as s:
        v2 = V.rollback_to(s, d, 0)
    _report("build v2 (rollback to v0)", time.perf_counter() - t, None)

    with session_scope(engine) as s:
        for v in (0, v1, v2):
            t = time.perf_counter()
            labels = V.labels_at(s, d, v)
            _report(
                f"labels_at(v{v}) -> {len(labels):,} grasps", time.perf_counter() - t, len(labels)
            )
        present = V.images_at(s, d, v1)

        # Baseline 1: one query per image, on a sample, extrapolated.
        sample = rng.choice(present, min(args.sample, len(present)), replace=False)
        t = time.perf_counter()
        got = 0
        for image_id in sample.tolist():
            rows = s.execute(
                sa.select(Grasp.id, Grasp.x, Grasp.y, Grasp.theta, Grasp.opening, Grasp.jaw).where(
                    Grasp.image_id == image_id,
                    Grasp.added_in_version <= v1,
                    sa.or_(Grasp.removed_in_version.is_(None), Grasp.removed_in_version > v1),
                )
            ).all()
            got += len(rows)
        t_loop = (time.perf_counter() - t) * len(present) / len(sample)
        t = time.perf_counter()
        labels1 = V.labels_at(s, d, v1)
        t_fast = time.perf_counter() - t
        in_sample = np.isin(labels1.image_ids, sample).sum()
        assert got == in_sample, (got, in_sample)
        print(
            f"labels of v{v1}: labels_at {t_fast:.2f} s vs naive per-image loop "
            f"{t_loop:.1f} s (EXTRAPOLATED from {len(sample)} images to {len(present):,}) "
            f"-> {t_loop / t_fast:.0f}x"
        )

        # Diff vs baseline 2: fetch every row of the dataset, compute sets in Python.
        t = time.perf_counter()
        delta = V.diff(s, d, 0, v1)
        t_diff = time.perf_counter() - t
        t = time.perf_counter()
        rows = s.execute(
            sa.select(Grasp.id, Grasp.added_in_version, Grasp.removed_in_version).where(
                Grasp.dataset_id == d
            )
        ).all()

        def alive(r, v):  # type: ignore[no-untyped-def]
            return r[1] <= v and (r[2] is None or r[2] > v)

        at0 = {r[0] for r in rows if alive(r, 0)}
        at1 = {r[0] for r in rows if alive(r, v1)}
        naive_added, naive_removed = at1 - at0, at0 - at1
        t_naive = time.perf_counter() - t
        assert naive_added == set(delta.added.grasp_ids.tolist())
        assert naive_removed == set(delta.removed.grasp_ids.tolist())
        print(
            f"diff(v0, v{v1}): {len(delta.added):,} added / {len(delta.removed):,} removed "
            f"grasps, {len(delta.removed_image_ids):,} images removed: diff {t_diff:.2f} s vs "
            f"naive fetch-all-and-filter {t_naive:.2f} s (measured, full size) "
            f"-> {t_naive / t_diff:.1f}x"
        )
    engine.dispose()


def _report(what: str, seconds: float, rows: int | None) -> None:
    rate = f", {rows / seconds:,.0f} rows/s" if rows else ""
    print(f"{what}: {seconds:.2f} s{rate}")


def _recreate(admin: sa.Engine, name: str) -> None:
    _drop(admin, name)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))


def _drop(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


if __name__ == "__main__":
    main()
