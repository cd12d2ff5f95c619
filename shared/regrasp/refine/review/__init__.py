"""The review queue of a round: items, leases, decisions, double review, statistics.

The orchestrator's review routes are thin shells over these functions; every one works
in the caller's session (`regrasp.platform.store.db.engine.session_scope`) and leaves the commit
to it. Modules:

- `items`: create the queue from a round's flagged predictions; final decisions to apply;
- `queue`: claim the next item (leases), heartbeat, release, skip, sweep expired leases;
- `decisions`: decide on the item version one saw (accepted predictions, grasps drawn,
  labels removed), change or undo one's own decision;
- `adjudication`: double review, disagreements, the admin's resolution;
- `stats`: per round and per annotator counts, times and agreement (Cohen's kappa).
"""

from __future__ import annotations

from regrasp.refine.review._common import DEFAULT_LEASE_SECONDS
from regrasp.refine.review.adjudication import (
    AdjudicationCase,
    adjudication_queue,
    double_review_mask,
    resolve,
    reviews_agree,
)
from regrasp.refine.review.decisions import (
    MAX_DRAWN,
    change_decision,
    decide,
    history,
    parse_decision,
    undo_last,
)
from regrasp.refine.review.items import FinalDecision, create_items, final_decisions
from regrasp.refine.review.queue import claim_next, expire_leases, heartbeat, peek, release, skip
from regrasp.refine.review.stats import AnnotatorStats, RoundStats, cohens_kappa, round_stats

__all__ = [
    "MAX_DRAWN",
    "peek",
    "DEFAULT_LEASE_SECONDS",
    "AdjudicationCase",
    "AnnotatorStats",
    "FinalDecision",
    "RoundStats",
    "adjudication_queue",
    "change_decision",
    "claim_next",
    "cohens_kappa",
    "create_items",
    "decide",
    "double_review_mask",
    "expire_leases",
    "final_decisions",
    "heartbeat",
    "history",
    "parse_decision",
    "release",
    "resolve",
    "reviews_agree",
    "round_stats",
    "skip",
    "undo_last",
]
