"""Benchmark: the cost of one claim as a round grows, on PostgreSQL (library level, no HTTP).

A Jacquard-sized round flags ~20,000 images; the demo rounds have ~1,500. This seeds two
rounds on one dataset (1,500 and 20,000 pending items, priorities from the round's real
scoring), then `annotators` people take turns claiming: each claim is one transaction
(`claim_next` + commit, timed); between claims the item is marked decided outside the
timing, so the round drains as in real use and every annotator keeps one live lease.
Also the very first claim of each round, right after its items were written (before any
autovacuum could analyse the table). Reports median/p95 per claim and the ratio of the
20,000-item round's median to the 1,500-item round's, both measured in this process.

Run: `python bench/claims.py [--database-url URL] [--claims 400] [--json out.json]`.
It creates and drops its own database `regrasp_bench_claims` on the server.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regrasp.platform.store.db import migrations  # noqa: E402
from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope  # noqa: E402
from regrasp.platform.store.db.tables import ReviewItem, ReviewItemState, User, UserRole  # noqa: E402
from regrasp.refine.review import claim_next  # noqa: E402
from tests.harness.postgres import DEFAULT_SERVER, scratch_database  # noqa: E402
from tests.harness.seeders import bare_dataset, seed_round  # noqa: E402

BENCH_DB = "regrasp_bench_claims"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help="PostgreSQL server.")
    parser.add_argument("--small", type=int, default=1500, help="Items of the small round.")
    parser.add_argument("--large", type=int, default=20000, help="Items of the large round.")
    parser.add_argument("--claims", type=int, default=400, help="Timed claims per round.")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--json", type=Path, help="Write the results here.")
    args = parser.parse_args()
    with scratch_database(args.database_url, BENCH_DB) as url:
        results = _run(url, args)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def _run(url: str, args: argparse.Namespace) -> dict[str, object]:
    migrations.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        with session_scope(factory) as session:
            users = []
            for k in range(args.annotators):
                user = User(username=f"a{k}", role=UserRole.annotator, password_hash="x")
                session.add(user)
                users.append(user)
            session.flush()
            user_ids = [u.id for u in users]
            dataset = bare_dataset(session, name="bench-claims", images=args.large)
        out: dict[str, object] = {"command": " ".join(["python", "bench/claims.py", *sys.argv[1:]])}
        for size in (args.small, args.large):
            with session_scope(factory) as session:
                round_id = seed_round(session, dataset_id=dataset, max_images=size, seed=size)
                pending = session.scalar(
                    sa.select(sa.func.count()).where(ReviewItem.round_id == round_id)
                )
            times = _claims(factory, round_id, user_ids, args.claims)
            first, rest = times[0], np.asarray(times[1:]) * 1000
            out[str(size)] = {
                "pending_items": int(pending or 0),
                "first_claim_ms": round(first * 1000, 2),
                "claim_median_ms": round(float(np.median(rest)), 3),
                "claim_p95_ms": round(float(np.percentile(rest, 95)), 3),
                "claims": len(times),
            }
            print(f"{size:6d} pending: {out[str(size)]}", flush=True)
        small, large = out[str(args.small)], out[str(args.large)]
        assert isinstance(small, dict) and isinstance(large, dict)
        out["ratio_large_over_small_median"] = round(
            large["claim_median_ms"] / small["claim_median_ms"], 3
        )
        ratio = out["ratio_large_over_small_median"]
        print(f"claim median at {args.large} / at {args.small}: x{ratio}")
        return out
    finally:
        engine.dispose()


def _claims(factory, round_id: int, user_ids: list[int], n: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Annotators in turn: decide the item held (untimed), then claim the next (timed)."""
    times = []
    held: dict[int, int] = {}
    for k in range(n):
        annotator = user_ids[k % len(user_ids)]
        if annotator in held:
            with session_scope(factory) as session:  # the decision, untimed
                session.execute(
                    sa.update(ReviewItem)
                    .where(ReviewItem.id == held.pop(annotator))
                    .values(
                        state=ReviewItemState.decided, lease_owner_id=None, lease_expires_at=None
                    )
                )
        t0 = time.perf_counter()
        with session_scope(factory) as session:
            item = claim_next(session, round_id, annotator)
        times.append(time.perf_counter() - t0)
        if item is None:
            break
        held[annotator] = item.id
    return times


if __name__ == "__main__":
    main()
