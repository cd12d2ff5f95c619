"""One refinement round end to end on a synthetic dataset, timed per state.

    python bench/round.py --images 2000 --size 256

The trainer API, one trainer worker and the BentoML inference service run as processes
on 127.0.0.1 (CPU unless CUDA is visible) over an SQLite file and a `file://` store, as
in deployment; the round runs in this process through `regrasp.workflows.rounds` (the orchestrator
runner's code path). Decisions come from the simulated reviewer and go through the review
library; then the round is applied. Printed: generation time (separately), seconds per
state, predicting images/s, and the paper's flagging step (the top-1's best IoU of every
image, `regrasp.grasp.metrics.best_iou_batch`, as `score` computes it) against a per-image baseline
(`regrasp.grasp.metrics.best_iou` in a Python loop), side by side in this process. The
round reads every image's object mask for the score's mask terms; the bench times that
read (`object_masks`) and the score with the masks against the score without them, on the
same stored predictions. `--json` writes every printed number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "bench-service-key-0123456789abcdef"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--corrupt-fraction", type=float, default=0.2)
    p.add_argument("--json", type=Path, default=None, help="Write the results here.")
    args = p.parse_args()

    from regrasp.data import versions as V
    from regrasp.data.ingest import import_jacquard
    from regrasp.data.synthetic.generate import generate_dataset
    from regrasp.data.synthetic.manifest import read_manifest
    from regrasp.data.synthetic.reviewer import SimulatedReviewer
    from regrasp.grasp.metrics import best_iou, best_iou_batch
    from regrasp.platform.accounts import create_user
    from regrasp.platform.store.db import migrations
    from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope
    from regrasp.platform.store.db.tables import Image, Prediction, ReviewItem, Round
    from regrasp.platform.store.objects import open_store
    from regrasp.refine.review.decisions import decide
    from regrasp.refine.rounds.config import RoundConfig
    from regrasp.refine.rounds.run import load_run
    from regrasp.workflows.rounds import machine
    from regrasp.workflows.rounds.predicting import object_masks, score
    from tests.harness.processes import start_service

    tmp = Path(tempfile.mkdtemp(prefix="bench-round-"))
    db_url, store_url = f"sqlite:///{tmp / 'regrasp.db'}", f"file://{tmp / 'objects'}"
    t = time.perf_counter()
    generate_dataset(
        tmp / "synth",
        images=args.images,
        size=args.size,
        seed=1,
        corrupt_fraction=args.corrupt_fraction,
        compress=False,
    )
    gen_s = time.perf_counter() - t
    migrations.upgrade(db_url)
    engine = make_engine(db_url)
    bind = make_session_factory(engine)
    t = time.perf_counter()
    with session_scope(engine) as s:
        dataset_id = import_jacquard(s, open_store(store_url), tmp / "synth", name="bench")
        admin = create_user(s, username="bench", password="bench-password", role="admin").id
    import_s = time.perf_counter() - t

    env = {
        **os.environ,
        "REGRASP_DATA_DIR": str(tmp / "data"),
        "REGRASP_DATABASE_URL": db_url,
        "REGRASP_OBJECT_STORE_URL": store_url,
        "REGRASP_SERVICE_API_KEY": KEY,
        "BENTOML_DO_NOT_TRACK": "true",
    }
    trainer = start_service("trainer", env=env, log=tmp / "trainer.log")
    procs = [
        trainer,
        start_service("worker", env=env, log=tmp / "worker.log", extra=["--poll-interval", "0.5"]),
        inference := start_service("inference", env=env, log=tmp / "inference.log"),
    ]
    try:
        trainer.wait_http("/healthz", timeout=300.0)
        inference.wait_http("/healthz", timeout=300.0)
        services = machine.Services(
            trainer_url=trainer.url,
            inference_urls=(inference.url,),
            credential=KEY,
            poll_seconds=1.0,
            store=open_store(store_url),  # the object masks, as the orchestrator reads them
        )
        train = {
            "architecture": "ggcnn",
            "epochs": args.epochs,
            "batch_size": 16,
            "input_size": args.input_size,
            "num_workers": 0,
            "split": {"kind": "image"},
            "decode": {"threshold": -1.0},
        }
        config = RoundConfig(train=train, chunk_size=args.chunk_size)
        with session_scope(bind) as s:
            round_id = machine.create_round(s, dataset_id=dataset_id, version=0, config=config).id
        state = None
        while state is None or state.value not in ("reviewing", "failed"):
            state = machine.advance(bind, round_id, services)
        if state.value == "failed":
            with session_scope(bind) as s:
                raise SystemExit(f"round failed: {s.get(Round, round_id).error}")
        machine.advance(bind, round_id, services)  # creates the review items

        t = time.perf_counter()
        truth = read_manifest(tmp / "synth").by_stem()
        reviewer = SimulatedReviewer(seed=0)
        with session_scope(bind) as s:
            rows = s.execute(
                sa.select(ReviewItem, Image.name, Prediction.grasps)
                .join(Image, Image.id == ReviewItem.image_id)
                .join(Prediction, Prediction.id == ReviewItem.prediction_id)
                .where(ReviewItem.round_id == round_id)
            ).all()
            labels = V.labels_at(s, dataset_id, 0)
            for item, name, grasps in rows:
                mine = labels.image_ids == item.image_id
                preds = np.asarray(grasps, dtype=np.float64).reshape(-1, 6)[:, :5]
                d = reviewer.review(truth[name], labels.grasps[mine], preds)
                decide(
                    s,
                    item.id,
                    admin,
                    item_version=item.version,
                    decision=d.kind,
                    accepted_predictions=d.accepted_predictions,
                    removed_grasp_ids=[int(labels.grasp_ids[mine][i]) for i in d.removed_labels],
                    seconds_taken=0.0,
                )
        review_s = time.perf_counter() - t
        with session_scope(bind) as s:
            machine.request_apply(s, round_id, force=False, by=admin)
        machine.advance(bind, round_id, services)

        with session_scope(bind) as s:
            rnd = s.get(Round, round_id)
            timings = load_run(rnd).model_dump(mode="json")["timings"]
            counts = machine.round_counts(s, round_id)
            result = rnd.result_version, rnd.state.value
            preds = s.execute(
                sa.select(Prediction.image_id, Prediction.grasps)
                .where(Prediction.round_id == round_id)
                .order_by(Prediction.image_id)
            ).all()
            mask_keys = dict(s.execute(sa.select(Image.id, Image.mask_key)).all())
    finally:
        for proc in procs:
            proc.kill()

    def seconds(state: str) -> float:
        from datetime import datetime

        t0 = datetime.fromisoformat(timings[state]["started"])
        t1 = datetime.fromisoformat(timings[state]["finished"])
        return (t1 - t0).total_seconds()

    # Flagging alone, batched vs per image, on the stored predictions.
    ids = np.array([r[0] for r in preds])
    grasps = [np.asarray(r[1], dtype=np.float64).reshape(-1, 6) for r in preds]
    mask = np.isin(labels.image_ids, ids)
    owner = np.searchsorted(ids, labels.image_ids[mask])
    top1 = np.array([g[0, :5] if len(g) else np.full(5, np.nan) for g in grasps])
    t = time.perf_counter()
    batched = best_iou_batch(
        top1, labels.grasps[mask], image_index=owner, predicted=~np.isnan(top1[:, 0])
    )
    batch_s = time.perf_counter() - t
    t = time.perf_counter()
    loop = np.array(
        [
            best_iou(g[:1, :5], labels.grasps[labels.image_ids == i]) if len(g) else 0.0
            for i, g in zip(ids, grasps, strict=True)
        ]
    )
    loop_s = time.perf_counter() - t
    assert np.allclose(loop, batched)

    # The score's mask terms: reading the masks, and the score with them vs without.
    t = time.perf_counter()
    masks = object_masks(open_store(store_url), [mask_keys[int(i)] for i in ids])
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    plain = score(grasps, labels.grasps[mask], owner, threshold=0.2, flag="score")
    plain_s = time.perf_counter() - t
    t = time.perf_counter()
    masked = score(grasps, labels.grasps[mask], owner, threshold=0.2, flag="score", masks=masks)
    masked_s = time.perf_counter() - t

    n = len(ids)
    print(f"dataset: {args.images} images at {args.size}px, corrupt {args.corrupt_fraction}")
    print(f"generate {gen_s:.1f} s, import {import_s:.1f} s (not part of the round)")
    for state in ("created", "training", "predicting", "reviewing", "applying"):
        print(f"  {state:<11} {seconds(state):8.2f} s")
    print(f"  (simulated review of {len(rows)} items: {review_s:.2f} s, inside 'reviewing')")
    print(f"counts {counts}; result version {result}")
    print(
        f"predicting: {n / seconds('predicting'):.1f} images/s (chunk {args.chunk_size}, "
        f"1 inference replica)"
    )
    print(
        f"flagging: batched {n / batch_s:,.0f} images/s vs per-image loop "
        f"{n / loop_s:,.0f} images/s -> {loop_s / batch_s:.1f}x"
    )
    print(
        f"score with masks: reading {n} masks {read_s:.2f} s; score {n / masked_s:,.0f} "
        f"images/s vs {n / plain_s:,.0f} without masks -> {masked_s / plain_s:.1f}x the time "
        f"(flagged {int(masked.flagged.sum())} vs {int(plain.flagged.sum())})"
    )
    if args.json:
        results = {
            "command": "python bench/round.py " + " ".join(sys.argv[1:]),
            "images": args.images,
            "size": args.size,
            "generate_s": gen_s,
            "import_s": import_s,
            "states_s": {
                st: seconds(st)
                for st in ("created", "training", "predicting", "reviewing", "applying")
            },
            "predicting_images_per_s": n / seconds("predicting"),
            "flagging": {"batched_s": batch_s, "loop_s": loop_s, "ratio": loop_s / batch_s},
            "masks": {
                "read_s": read_s,
                "score_without_s": plain_s,
                "score_with_s": masked_s,
                "time_ratio": masked_s / plain_s,
                "flagged_without": int(plain.flagged.sum()),
                "flagged_with": int(masked.flagged.sum()),
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
