"""Benchmark: "labels of version v" on the embedded default (SQLite), against the old
conversion of the same rows.

    python bench/sqlite_labels.py --json bench/results/sqlite_labels.json

On SQLite `labels_at` fetches plain rows and turns them into arrays. It used to hand the
list of rows to `np.array`, which probes every row for array attributes a SQLAlchemy row
lacks (each probe a failed key lookup); it now flattens them through their own iteration
(`np.fromiter`). Builds a SQLite file with `--images` images of `--grasps-per-image`
grasps on average (the efficacy bench's size by default), then times, side by side in
this process and `--repeats` times each: `labels_at` as it is, and the old conversion
of the same statement's rows (the query run the same way). Both must give the same
arrays. Prints the median seconds and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))
sys.path.insert(0, str(ROOT / "bench"))

from _output import emit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--grasps-per-image", type=int, default=90)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from regrasp.data import versions as V
    from regrasp.platform.store.db import migrations
    from regrasp.platform.store.db.engine import core_connection, make_engine, session_scope
    from regrasp.platform.store.db.tables import Grasp

    url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-sqlite-labels-')}/regrasp.db"
    migrations.upgrade(url)
    engine = make_engine(url)
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 2 * args.grasps_per_image, args.images)
    index = np.repeat(np.arange(args.images), counts)
    n = len(index)
    grasps = np.column_stack(
        [rng.uniform(0, 1024, (n, 2)), rng.uniform(-90, 90, n), rng.uniform(5, 80, (n, 2))]
    )
    images = V.ImageRecords(
        names=[f"{i}_obj{i // 5}" for i in range(args.images)],
        object_names=[f"obj{i // 5}" for i in range(args.images)],
        widths=np.full(args.images, 1024),
        heights=np.full(args.images, 1024),
        splits=["train"] * args.images,
        checksums=["0" * 64] * args.images,
    )
    with session_scope(engine) as s:
        dataset = V.create_dataset(s, name="bench")
        V.import_version0(s, dataset, images, index, grasps)

    def now() -> np.ndarray:
        with session_scope(engine) as s:
            return V.labels_at(s, dataset, 0).grasps

    def before() -> np.ndarray:
        with session_scope(engine) as s:
            where = sa.and_(Grasp.dataset_id == dataset, V._present(Grasp, 0))
            stmt = V._label_query(where, pg=False)
            arr = np.array(core_connection(s).execute(stmt).all(), dtype=np.float64)
            arr = arr.reshape(-1, 7)
            return arr[np.lexsort((arr[:, 0], arr[:, 1])), 2:]

    np.testing.assert_array_equal(now(), before())
    times: dict[str, list[float]] = {"labels_at": [], "np.array of rows": []}
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        for name, run in (("labels_at", now), ("np.array of rows", before)):
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    median = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "command": "python bench/sqlite_labels.py " + " ".join(sys.argv[1:]),
        "machine": platform.platform(),
        "images": args.images,
        "grasps": n,
        "repeats": args.repeats,
        "median_seconds": {k: round(v, 4) for k, v in median.items()},
        "ratio_old_over_new": round(median["np.array of rows"] / median["labels_at"], 2),
    }
    emit(out, args.json)


if __name__ == "__main__":
    main()
