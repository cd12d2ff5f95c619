"""Benchmark: what the label-quality score's mask tests buy, on the efficacy bench's model.

    python bench/label_quality.py --images 1200 --json bench/results/label_quality.json

The efficacy bench's data and round-0 model (`bench/efficacy.py`: synthetic images, 25%
corrupted in the paper's three kinds, GG-CNN at 96², 25 epochs, trained on the pool with
its corrupted labels) predict the top-5 grasps of every pool image. The simulated
reviewer's careful decision (`regrasp.data.synthetic.reviewer.careful_decision`, which
knows the object's outline) then says what each image and each prediction really is.
Measured, side by side:

- *predictions*: of the confident predictions that match no label (the missing-grasp
  evidence), how many are grasps the reviewer accepts, split by the score's mask test
  (`regrasp.refine.label_quality.fits_object`), on clean and on corrupted images;
- *label centres*: clean images with a label centre off the object mask, exactly and
  within `CENTRE_TOLERANCE` pixels;
- *real labels*: on the Jacquard samples (`--jacquard`, default the team's
  `../shared/data/jacquard_samples` beside the repository), the share of each image's
  labels that pass the mask test, and how many images reach `AGREEMENT` (where the
  test gates the evidence); the samples' labels are Jacquard's own, simulated grasps;
- *the queue*: what the reviewer decides on the first 50/100/200 images of the queue of
  each flag (the paper's top-1 rule, ordered by its priority; the score, likeliest
  errors first), on the whole pool (round 0) and on the pool without its wrong-action
  images (what later rounds see once those are removed).

One training (about two minutes at 1,200 images on two cores); the rest is numpy.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import real_labels  # noqa: E402
from _output import emit  # noqa: E402

DEPTHS = (50, 100, 200)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1200)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    real_labels.add_jacquard_option(p, "for the label agreement; skipped, said so, if absent")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    started = time.perf_counter()
    images, accuracy = round0(args)
    out = {
        "command": "python bench/label_quality.py " + " ".join(sys.argv[1:]),
        "machine": platform.platform(),
        "pool_images": len(images),
        "round0_test_accuracy": accuracy,
        "predictions": prediction_table(images),
        "label_centres": centre_table(images),
        "synthetic_label_agreement": real_labels.agreement(
            [(i["labels"], i["mask"]) for i in images if not i["truth"].corrupted]
        ),
        "real_label_agreement": real_agreement(args.jacquard),
        "queue": {
            "round0": queue_table(images),
            "without_wrong_action": queue_table(
                [i for i in images if i["truth"].corruption != "wrong_action"]
            ),
        },
    }
    out["seconds"] = round(time.perf_counter() - started, 1)
    emit(out, args.json)


def round0(args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """The efficacy bench's round-0 model and its top-5 predictions on the pool."""
    import efficacy

    from regrasp.data import versions
    from regrasp.platform.store.db.engine import session_scope

    bench_args = efficacy.parse_args(
        [
            f"--images={args.images}",
            f"--epochs={args.epochs}",
            f"--input-size={args.input_size}",
            f"--seed={args.seed}",
        ]
    )
    bench = efficacy.Bench(bench_args, Path(tempfile.mkdtemp(prefix="bench-lq-")))
    bench.setup()
    dataset = bench._clone("lq", clean=False)
    model_id, accuracy = bench._train(dataset, 0, exclude=bench.test_ids, seed=0)
    predictions = bench._predict(dataset, 0, model_id, bench.pool_ids, k=5)
    with session_scope(bench.bind) as s:
        labels = versions.labels_at(s, dataset, 0)
    mapping = bench._maps[dataset]
    images = [
        {
            "predictions": predictions[i],
            "labels": labels.grasps[labels.image_ids == i],
            "mask": bench._mask(i, dataset),
            "truth": bench.truth[mapping[i]],
        }
        for i in sorted(predictions)
    ]
    return images, accuracy


def prediction_table(images: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Confident unmatched predictions: accepted by the reviewer, by mask test and image."""
    from regrasp.data.synthetic.reviewer import valid_against_truth
    from regrasp.grasp.metrics import SUCCESS_IOU, iou
    from regrasp.refine.label_quality import CONFIDENT, fits_object

    counts: dict[str, dict[str, int]] = {}
    for image in images:
        p, labels = image["predictions"], image["labels"]
        if len(p) == 0:
            continue
        unmatched = (
            iou(p[:, :5], labels).max(axis=1) <= SUCCESS_IOU
            if len(labels)
            else np.ones(len(p), dtype=bool)
        )
        keep = unmatched & (p[:, 5] >= CONFIDENT)
        valid = valid_against_truth(image["truth"], p[:, :5])
        fits = fits_object(p[:, :5], image["mask"])
        group = "corrupted" if image["truth"].corrupted else "clean"
        for test, passed in (("fits", fits), ("does_not_fit", ~fits)):
            row = counts.setdefault(f"{group}/{test}", {"predictions": 0, "accepted": 0})
            row["predictions"] += int((keep & passed).sum())
            row["accepted"] += int((keep & passed & valid).sum())
    for row in counts.values():
        row["accepted_share"] = row["accepted"] / row["predictions"] if row["predictions"] else None
    return counts


def centre_table(images: list[dict[str, Any]]) -> dict[str, Any]:
    """Clean images with a label centre off the mask: exactly, and beyond the tolerance."""
    import cv2

    from regrasp.refine.label_quality import CENTRE_TOLERANCE

    side = 2 * CENTRE_TOLERANCE + 1
    exact = tolerant = clean = 0
    for image in images:
        labels, mask = image["labels"], image["mask"]
        if image["truth"].corrupted or len(labels) == 0:
            continue
        clean += 1
        near = cv2.dilate(mask.astype(np.uint8), np.ones((side, side), np.uint8)) > 0
        h, w = mask.shape
        cols = np.round(labels[:, 0]).astype(int)
        rows = np.round(labels[:, 1]).astype(int)
        inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
        c, r = np.clip(cols, 0, w - 1), np.clip(rows, 0, h - 1)
        exact += bool((~(inside & mask[r, c])).any())
        tolerant += bool((~(inside & near[r, c])).any())
    return {
        "clean_images": clean,
        "centre_off_exactly": exact,
        f"centre_off_beyond_{CENTRE_TOLERANCE}px": tolerant,
    }


def real_agreement(folder: Path) -> dict[str, Any] | str:
    """`real_labels.agreement` of the real Jacquard samples (a note when there are none)."""
    if not folder.is_dir():
        note = f"no Jacquard samples at {folder}: real-label agreement not measured"
        print(note)
        return note
    return real_labels.agreement(real_labels.real_pairs(folder))


def queue_table(images: list[dict[str, Any]]) -> dict[str, Any]:
    """The reviewer's decisions on the head of each flag's queue."""
    from regrasp.data.synthetic.reviewer import careful_decision
    from regrasp.grasp.metrics import FLAG_IOU
    from regrasp.workflows.rounds.predicting import score

    labels = np.concatenate([i["labels"] for i in images])
    index = np.repeat(np.arange(len(images)), [len(i["labels"]) for i in images])
    decisions = [
        careful_decision(i["truth"], i["labels"], i["predictions"][:, :5]).kind for i in images
    ]
    out: dict[str, Any] = {"images": len(images)}
    for flag in ("paper", "score"):
        s = score(
            [i["predictions"] for i in images],
            labels,
            index,
            threshold=FLAG_IOU,
            flag=flag,  # type: ignore[arg-type]
            masks=[i["mask"] for i in images],
        )
        order = np.argsort(-s.priority, kind="stable")
        order = order[s.flagged[order]]
        heads = {}
        for depth in DEPTHS:
            head = order[:depth]
            found = [j for j in head if decisions[j] != "true_negative"]
            heads[str(depth)] = {
                "reviewed": len(head),
                "label_errors_found": len(found),
                "corrupted_found": sum(images[j]["truth"].corrupted for j in found),
                "decisions": {
                    k: sum(decisions[j] == k for j in head)
                    for k in ("true_negative", "missing_label", "annotation_error", "fix")
                },
            }
        out[flag] = {"flagged": int(s.flagged.sum()), "head": heads}
    return out


if __name__ == "__main__":
    main()
