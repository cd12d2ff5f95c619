"""Benchmark of the review loop over HTTP against a real orchestrator on PostgreSQL.

1. Queue round trips: 1, 10 and 50 concurrent annotators (one thread and one client
   each) claim the next item and decide it until the round is empty. Reports p50/p95 of
   one claim + decide pair and decisions/s, with the ratio of each throughput to the
   single annotator's (the baseline, run in the same process).
2. Time to the next image in the review UI's session logic (`ReviewSession`): from the
   decision key press to the next item's overlay ready to show, with prefetch against
   without (the baseline), on 1024² synthetic RGB-D images. The annotator's looking time
   is modelled as "until the prefetch is done" (people look for seconds; it takes less).

Run: `python bench/review.py [--database-url URL] [--items 1500] [--images 24]`.
It creates and drops its own database `regrasp_bench_review` on the server.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regrasp.clients.orchestrator import OrchestratorClient, UserCreate  # noqa: E402
from regrasp.store.db.engine import make_engine, session_scope  # noqa: E402
from scripts.annotators import annotate  # noqa: E402
from scripts.pg_scratch import DEFAULT_SERVER, scratch_database  # noqa: E402
from scripts.review_demo import (  # noqa: E402
    bare_dataset,
    import_synthetic,
    seed_round,
    start_orchestrator,
)
from services.review_ui.session import ReviewSession  # noqa: E402

BENCH_DB = "regrasp_bench_review"
ADMIN = ("lead", "lead-password-1")
PASSWORD = "annotator-password"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help="PostgreSQL server.")
    parser.add_argument("--items", type=int, default=1500, help="Review items per round.")
    parser.add_argument("--images", type=int, default=24, help="1024² images for part 2.")
    parser.add_argument("--concurrency", default="1,10,50")
    args = parser.parse_args()

    with (
        scratch_database(args.database_url, BENCH_DB) as url,
        tempfile.TemporaryDirectory(prefix="regrasp-bench-review-") as tmp,
    ):
        _run(url, Path(tmp), args)


def _run(url: str, tmp: Path, args: argparse.Namespace) -> None:
    levels = [int(x) for x in args.concurrency.split(",")]
    orchestrator = start_orchestrator(
        database_url=url, store_url=f"file://{tmp / 'objects'}", data_dir=tmp / "data", admin=ADMIN
    )
    engine = make_engine(url)
    try:
        with OrchestratorClient(orchestrator.url) as api:
            api.login(*ADMIN)
            for k in range(max(levels)):
                api.create_user(UserCreate(username=f"annotator{k}", password=PASSWORD))
            print(f"orchestrator {orchestrator.url} on PostgreSQL ({BENCH_DB})")

            print("\n1. claim + decide over HTTP (one thread and one client per annotator)")
            with session_scope(engine) as session:
                dataset = bare_dataset(session, name="bench-queue", images=args.items)
            baseline = None
            for n in levels:
                with session_scope(engine) as session:
                    round_id = seed_round(session, dataset_id=dataset, seed=n)
                users = [(f"annotator{k}", PASSWORD) for k in range(n)]
                run = annotate(orchestrator.url, round_id, users)
                if run.failures or run.server_errors:
                    raise SystemExit(f"annotators failed: {run.failures[:3]} {run.statuses}")
                pairs, wall, rate = run.pairs, run.wall, run.rate
                baseline = baseline or rate
                p50, p95 = np.percentile(pairs, [50, 95]) * 1000
                print(
                    f"  {n:3d} annotators: {len(pairs)} decisions in {wall:.1f} s = "
                    f"{rate:7.1f} decisions/s (x{rate / baseline:.2f} of 1 annotator); "
                    f"claim+decide p50 {p50:.1f} ms, p95 {p95:.1f} ms"
                )

            print(
                f"\n2. decision -> next image ready in ReviewSession ({args.images} 1024² images)"
            )
            images = import_synthetic(api, name="bench-images", images=args.images, size=1024)
            api.create_user(UserCreate(username="viewer", password=PASSWORD))
            viewer = OrchestratorClient(orchestrator.url)
            viewer.login("viewer", PASSWORD)
            results = {}
            for prefetch in (False, True):
                with session_scope(engine) as session:
                    round_id = seed_round(session, dataset_id=images, seed=int(prefetch))
                results[prefetch] = _next_image_times(viewer, round_id, prefetch=prefetch)
            base = np.median(results[False])
            fast = np.median(results[True])
            for prefetch in (False, True):
                t = np.asarray(results[prefetch]) * 1000
                name = "with prefetch   " if prefetch else "without prefetch"
                print(
                    f"  {name}: median {np.median(t):6.1f} ms, p95 "
                    f"{np.percentile(t, 95):6.1f} ms over {len(t)} decisions"
                )
            print(f"  ratio (without / with prefetch, medians): x{base / fast:.1f}")
    finally:
        engine.dispose()
        orchestrator.stop()


def _next_image_times(api: OrchestratorClient, round_id: int, *, prefetch: bool) -> list[float]:
    session = ReviewSession(api, round_id, prefetch=prefetch, size=768)
    times = []
    try:
        session.start()
        session.render()
        while session.current is not None:
            session.wait_prefetched(timeout=60)  # the annotator looks at the image
            t0 = time.perf_counter()
            session.decide("true_negative")
            if session.current is not None:
                session.render()  # the next overlay, ready to show
                times.append(time.perf_counter() - t0)
    finally:
        session.close()
    return times


if __name__ == "__main__":
    main()
