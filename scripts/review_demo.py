"""Open a review round without a GPU: seeded predictions on a dataset version, its queue.

A command line over `tests.harness.seeders.seed_round` (see its module for how the
predictions are made), on the database REGRASP_DATABASE_URL names; the dataset must exist:

    python scripts/review_demo.py --dataset 1 [--version V] [--double-review 0.2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regrasp.platform.settings import load_settings  # noqa: E402
from regrasp.platform.store.db.engine import make_engine, session_scope  # noqa: E402
from tests.harness.seeders import seed_round  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=int, required=True, help="Dataset id.")
    parser.add_argument("--version", type=int, default=None, help="Base version (latest).")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--double-review", type=float, default=0.0)
    parser.add_argument("--max-images", type=int, default=None)
    args = parser.parse_args()
    engine = make_engine(load_settings().database_url)
    try:
        with session_scope(engine) as session:
            round_id = seed_round(
                session,
                dataset_id=args.dataset,
                version=args.version,
                top_k=args.top_k,
                double_review_fraction=args.double_review,
                max_images=args.max_images,
            )
    finally:
        engine.dispose()
    print(f"round {round_id} is open for review")


if __name__ == "__main__":
    main()
