"""Does the loop fix the data? Refinement rounds on synthetic data with known truth.

    python bench/efficacy.py --images 3000 --size 128 --rounds 5 --epochs 15 --input-size 96

A synthetic Jacquard-like dataset is generated with `--corrupt-fraction` (25 %) of its
images corrupted in the paper's three ways, or in the `--corruption-kinds` given
(`regrasp.data.synthetic`); the truth manifest tells what every image really is. Objects
are split once: `--test-fraction` of them form a fixed test split that never trains
(`TrainConfig.exclude_image_ids`) and is scored against its *clean* labels; the rest is
the pool the loop refines. Everything runs in this process through the library, over an
SQLite file and a `file://` store:

- training: real trainer jobs (`regrasp.learn.queue` queue, `regrasp.learn.worker.Worker`);
- flagging: the round's `score` on the model's top-5 predictions: the label-quality score
  (or the paper's top-1 best IoU < 0.2), at most `--review-budget` items a round, likeliest
  errors first;
- review: `regrasp.refine.review` items and decisions, made by `SimulatedReviewer` (with
  `--review-seconds` per decision recorded as review time); with `--draw N` reviewers also
  draw up to N true grasps an image that no label or accepted prediction covers (the
  review screen's draw mode), each adding `--draw-seconds`, and a confirming reviewer is
  shown the first one's drawings;
- applying: `regrasp.refine.rounds.applying.apply_round`, one new dataset version per round;
- refinement statistics: `regrasp.refine.refinement_stats` (noise estimate with `--audit`
  unflagged images reviewed per round, yield, stopping suggestion).

Variants, side by side (`--variants`, comma-separated):

- `insample`: the loop; the model that flags was trained on the images it flags, and
  images are flagged and ordered by the grasp label-quality score (`--flag-score`);
- `paper`: the same loop flagged by the paper's top-1 rule, with the same review budget,
  its flagged images ordered by Regrasp's confidence priority (top-1 quality times how far
  its IoU falls short: `regrasp.workflows.rounds.predicting`), a stronger baseline than
  the paper's own;
- `paper_random`: the paper's flag as the paper applies it: every flagged image is equal
  (the paper reviews all of them and ranks none), so under the review budget the images
  reviewed are a random draw of the flagged ones (seeded per round);
- `oof`: out-of-fold flagging, `--folds` models per round each trained without its fold
  and flagging only that fold (the round's accuracy: the mean of its fold models);
- `none`: no refinement, round 0 repeated with `--repeats` training seeds (the noise band);
- `clean`: the upper bound, the pool with its true labels, `--repeats` seeds;
- `auto`: single-shot pseudo-labelling with no human: every flagged image gets the round-0
  model's top-1 grasp as a label, then one retraining.

With `--final-repeats N`, the final version of each loop (and of `auto`) is also trained on
the whole pool with N seeds, exactly as `none` and `clean` are: the like-for-like number
(an out-of-fold round's own accuracy comes from fold models that saw half the pool).

Review yield is reported twice: corrupted images found per hour of every review (queue,
second reviewers' confirmations and the audit sample), and per hour of the queue alone
(flagged items and their confirmations; the audit is the same fixed sample for every
variant and measures the noise, it is not part of the flag's work).

Per round and variant: flagged images, decisions, corrupted images remaining (still
present and not repaired: an annotation-error image with a wrong rectangle left, a
missing-label image whose coverage of its true grasps did not grow), corrupted images
removed, clean images harmed (removed, or given a rectangle that is not a grasp), the
mean coverage of the true grasps by the labels, and test accuracy on clean labels.
The true label noise is given two ways: with a partly repaired missing-label image
counted as repaired (`true_noise`, as "corrupted remaining" counts it), and by the
auditor's standard, an image being noisy while any label is wrong or any true grasp
unlabelled (`true_noise_complete`). The audit estimates the second, so the interval is
checked against both. The report (markdown, JSON and PNG charts) is written to `--out`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("insample", "paper", "paper_random", "none", "clean", "auto", "oof")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's settings (`argv`: None reads the command line); other benches that
    train the bench's models start from these defaults."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--size", type=int, default=128, help="Synthetic image side, pixels.")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--architecture", default="ggcnn")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper 5e-4).")
    p.add_argument(
        "--warmup-steps", type=int, default=0, help="TrainConfig.warmup_steps (0: none)."
    )
    p.add_argument(
        "--review-budget", type=int, default=400, help="Review items per round, every loop."
    )
    p.add_argument("--score-threshold", type=float, default=0.5, help="Score flag: 1 − q ≥.")
    p.add_argument(
        "--top-k", type=int, default=5, help="Predictions per pool image (RoundConfig.top_k)."
    )
    p.add_argument(
        "--confirm-changes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Label-changing decisions need a second reviewer (RoundConfig.confirm_changes).",
    )
    p.add_argument(
        "--confirm-keeps",
        type=float,
        default=None,
        help="A true negative on an image the score is this sure of (1 − quality) needs a "
        "second reviewer (RoundConfig.confirm_keeps; default: one keep decides).",
    )
    p.add_argument(
        "--skip-confirmed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Images kept (true negative) in an earlier round with unchanged labels are "
        "not flagged again (RoundConfig.skip_confirmed).",
    )
    p.add_argument("--corrupt-fraction", type=float, default=0.25)
    p.add_argument(
        "--corruption-kinds",
        default="one_orientation,part_only,wrong_action",
        help="Comma-separated corruption kinds, drawn evenly (default: the paper's three).",
    )
    p.add_argument("--test-fraction", type=float, default=0.15, help="Objects held out.")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="Seeds of the none/clean variants.")
    p.add_argument(
        "--final-repeats",
        type=int,
        default=0,
        help="Seeds of a model trained on the whole pool of the final version of the "
        "insample/oof/auto variants, as none/clean are trained (0: none; the last round's "
        "own model is then the final number).",
    )
    p.add_argument(
        "--audit", type=int, default=50, help="Unflagged images sampled for the audit per round."
    )
    p.add_argument(
        "--audit-top",
        type=int,
        default=0,
        help="Unflagged images the flag ranks highest, all audited per round (a census, "
        "add_audit_items' top), before the random sample of the rest.",
    )
    p.add_argument("--error-rate", type=float, default=0.05, help="Simulated reviewer errors.")
    p.add_argument("--review-seconds", type=float, default=6.0, help="Recorded per decision.")
    p.add_argument(
        "--draw",
        type=int,
        default=0,
        help="Missing grasps a reviewer draws per image, at most (0: accept predictions only).",
    )
    p.add_argument(
        "--draw-seconds", type=float, default=4.0, help="Added review time per drawn grasp."
    )
    p.add_argument("--decode-threshold", type=float, default=0.05)
    p.add_argument("--augment", action="store_true", help="Rotation/zoom augmentation.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="efficacy-report", help="Folder for the report.")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")

    started = time.perf_counter()
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="bench-efficacy-")))
    bench.setup()
    results: dict[str, list[dict[str, Any]]] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in variants:
        t = time.perf_counter()
        results[name] = getattr(bench, f"run_{name}")()
        print(f"[{name}] {time.perf_counter() - t:.0f} s", flush=True)
        # Written after every variant, so a long run that is stopped keeps what finished.
        text = report(args, bench, results, time.perf_counter() - started)
        (out / "report.md").write_text(text)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    charts(results, out)
    print(text)
    print(f"written: {out}/report.md, results.json, *.png")


def train_config(args: argparse.Namespace, exclude: Any, seed: int) -> dict[str, Any]:
    """The bench's training recipe (a `TrainConfig` as a dict): every image not in
    `exclude` trains, none validates; other benches that train this recipe build it here."""
    return {
        "architecture": args.architecture,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "dropout": 0.0,
        "input_size": args.input_size,
        "num_workers": 0,
        "seed": seed,
        "augment": {"enabled": bool(args.augment)},
        "decode": {"threshold": args.decode_threshold},
        "split": {"kind": "object", "val_fraction": 0.0, "test_fraction": 0.0},
        "exclude_image_ids": [int(i) for i in exclude],
    }


# --- the bench ---------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    base_id: int = 0
    truth: dict[int, Any] = field(default_factory=dict)  # image id -> TruthRecord
    test_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pool_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seconds: dict[str, float] = field(default_factory=dict)
    restarts: list[dict[str, Any]] = field(default_factory=list)  # trainings that collapsed
    _round0: dict[str, Any] = field(default_factory=dict)

    # setup: data, database, store, users ---------------------------------------------------

    def setup(self) -> None:
        import sqlalchemy as sa

        from regrasp.data.ingest import import_jacquard
        from regrasp.data.synthetic.generate import generate_dataset
        from regrasp.data.synthetic.manifest import read_manifest
        from regrasp.platform.accounts import create_user
        from regrasp.platform.store.db import migrations
        from regrasp.platform.store.db.engine import (
            make_engine,
            make_session_factory,
            session_scope,
        )
        from regrasp.platform.store.db.tables import DatasetObject, Image
        from regrasp.platform.store.objects import open_store

        a = self.args
        t = time.perf_counter()
        generate_dataset(
            self.tmp / "synth",
            images=a.images,
            size=a.size,
            seed=a.seed,
            corrupt_fraction=a.corrupt_fraction,
            corruption_kinds=tuple(k.strip() for k in a.corruption_kinds.split(",") if k.strip()),
            compress=False,
        )
        self.seconds["generate"] = time.perf_counter() - t
        db_url = f"sqlite:///{self.tmp / 'regrasp.db'}"
        migrations.upgrade(db_url)
        self.engine = make_engine(db_url)
        self.bind = make_session_factory(self.engine)
        self.store = open_store(f"file://{self.tmp / 'objects'}")
        t = time.perf_counter()
        with session_scope(self.bind) as s:
            self.base_id = import_jacquard(s, self.store, self.tmp / "synth", name="eff-base")
            self.admin = create_user(s, username="lead", password="lead-password", role="admin").id
            self.robot = create_user(s, username="auto", password="auto-password", role="admin").id
            self.second = create_user(
                s, username="second", password="second-password", role="annotator"
            ).id
            rows = s.execute(
                sa.select(Image.id, Image.name, DatasetObject.name)
                .join(DatasetObject, DatasetObject.id == Image.object_id)
                .where(Image.dataset_id == self.base_id)
            ).all()
        self.seconds["import"] = time.perf_counter() - t
        by_stem = read_manifest(self.tmp / "synth").by_stem()
        self.names = {int(i): n for i, n, _ in rows}
        self.truth = {int(i): by_stem[n] for i, n, _ in rows}
        objects = sorted({o for _, _, o in rows}, key=lambda o: _rank(a.seed, o))
        test_objects = set(objects[: max(1, round(a.test_fraction * len(objects)))])
        ids = np.array(sorted(int(i) for i, _, _ in rows), dtype=np.int64)
        obj = {int(i): o for i, _, o in rows}
        self.test_ids = np.array([i for i in ids if obj[i] in test_objects], dtype=np.int64)
        self.pool_ids = np.array([i for i in ids if obj[i] not in test_objects], dtype=np.int64)
        corrupted = sum(self.truth[int(i)].corrupted for i in self.pool_ids)
        print(
            f"data: {len(ids)} images ({len(self.pool_ids)} pool, {corrupted} corrupted; "
            f"{len(self.test_ids)} test, clean labels), generated in "
            f"{self.seconds['generate']:.0f} s",
            flush=True,
        )

    # variants ------------------------------------------------------------------------------

    def run_insample(self) -> list[dict[str, Any]]:
        return self._loop("insample", folds=0)

    def run_paper(self) -> list[dict[str, Any]]:
        return self._loop("paper", folds=0, flag="paper")

    def run_paper_random(self) -> list[dict[str, Any]]:
        return self._loop("paper_random", folds=0, flag="paper", ordered=False)

    def run_oof(self) -> list[dict[str, Any]]:
        return self._loop("oof", folds=self.args.folds)

    def run_none(self) -> list[dict[str, Any]]:
        dataset = self._clone("eff-none", clean=False)
        rows = []
        for r in range(self.args.repeats):
            model_id, acc = self._train(dataset, 0, exclude=self.test_ids, seed=r)
            rows.append({"round": r, "seed": r, "accuracy": acc, **self._status(dataset, 0)})
        return rows

    def run_clean(self) -> list[dict[str, Any]]:
        dataset = self._clone("eff-clean", clean=True)
        rows = []
        for r in range(self.args.repeats):
            model_id, acc = self._train(dataset, 0, exclude=self.test_ids, seed=r)
            rows.append({"round": r, "seed": r, "accuracy": acc, **self._status(dataset, 0)})
        return rows

    def run_auto(self) -> list[dict[str, Any]]:
        dataset = self._clone("eff-auto", clean=False)
        model_id, acc = self._train(dataset, 0, exclude=self.test_ids, seed=0)
        predictions = self._predict(dataset, 0, model_id, self.pool_ids, k=self.args.top_k)
        row = {"round": 0, "accuracy": acc, **self._status(dataset, 0)}
        version, extra = self._review_round(dataset, 0, model_id, predictions, auto=True)
        row.update(extra)
        _, acc1 = self._train(dataset, version, exclude=self.test_ids, seed=0)
        last = {"round": 1, "accuracy": acc1, **self._status(dataset, version)}
        self._final_seeds(last, dataset, version, own=acc1)
        return [row, last]

    def _loop(
        self, name: str, *, folds: int, flag: str = "score", ordered: bool = True
    ) -> list[dict[str, Any]]:
        from regrasp.workflows.rounds.machine import fold_of

        dataset = self._clone(f"eff-{name}", clean=False)
        version, rows = 0, []
        for r in range(self.args.rounds + 1):
            t = time.perf_counter()
            row: dict[str, Any] = {"round": r, "version": version, **self._status(dataset, version)}
            if folds:
                fold = fold_of(self.pool_ids, folds=folds, seed=self.args.seed + r)
                predictions, accs, model_id = {}, [], None
                for f in range(folds):
                    held = self.pool_ids[fold == f]
                    exclude = np.concatenate([self.test_ids, held])
                    model_id, acc = self._train(dataset, version, exclude=exclude, seed=0)
                    accs.append(acc)
                    if r < self.args.rounds:
                        predictions.update(
                            self._predict(dataset, version, model_id, held, k=self.args.top_k)
                        )
                row["accuracy"] = float(np.mean(accs))
                row["fold_accuracies"] = accs
            else:
                model_id, row["accuracy"] = self._train(
                    dataset, version, exclude=self.test_ids, seed=0
                )
                predictions = (
                    self._predict(dataset, version, model_id, self.pool_ids, k=self.args.top_k)
                    if r < self.args.rounds
                    else {}
                )
            if r < self.args.rounds:
                version, extra = self._review_round(
                    dataset, version, model_id, predictions, flag=flag, ordered=ordered
                )
                row.update(extra)
                row["noise_interval_holds"] = _holds(row, "true_noise")
                row["noise_interval_holds_complete"] = _holds(row, "true_noise_complete")
            row["seconds"] = time.perf_counter() - t
            rows.append(row)
            print(f"  [{name}] {_line(row)}", flush=True)
        self._final_seeds(rows[-1], dataset, version, own=None if folds else row["accuracy"])
        return rows

    def _final_seeds(
        self, row: dict[str, Any], dataset: int, version: int, *, own: float | None
    ) -> None:
        """Train the final version on the whole pool with `--final-repeats` seeds, as the
        none/clean variants are trained, so their accuracies compare like with like. `own`:
        seed 0's accuracy when the last round's model already is that model (in-sample)."""
        n = self.args.final_repeats
        if n <= 0:
            return
        accs = [own] if own is not None else []
        for seed in range(len(accs), n):
            accs.append(self._train(dataset, version, exclude=self.test_ids, seed=seed)[1])
        row["final_accuracies"] = accs

    # steps ---------------------------------------------------------------------------------

    def _clone(self, name: str, *, clean: bool) -> int:
        """A copy of version 0 (same stored files) as a new dataset; `clean`: true labels."""
        import sqlalchemy as sa

        from regrasp.data import versions
        from regrasp.platform.store.db.engine import session_scope
        from regrasp.platform.store.db.tables import DatasetObject, Image

        with session_scope(self.bind) as s:
            images = s.execute(
                sa.select(Image, DatasetObject.name)
                .join(DatasetObject, DatasetObject.id == Image.object_id)
                .where(Image.dataset_id == self.base_id)
                .order_by(Image.id)
            ).all()
            labels = versions.labels_at(s, self.base_id, 0)
            records = versions.ImageRecords(
                names=[i.name for i, _ in images],
                object_names=[o for _, o in images],
                widths=[i.width for i, _ in images],
                heights=[i.height for i, _ in images],
                rgb_keys=[i.rgb_key for i, _ in images],
                depth_keys=[i.depth_key for i, _ in images],
                stereo_keys=[i.stereo_key for i, _ in images],
                mask_keys=[i.mask_key for i, _ in images],
                grasps_keys=[i.grasps_key for i, _ in images],
                checksums=[i.checksum for i, _ in images],
            )
            index, grasps = [], []
            for n, (image, _) in enumerate(images):
                g = self.truth[image.id].grasps if clean else _rows_of(labels, image.id)
                grasps.append(g)
                index.append(np.full(len(g), n))
            dataset_id = versions.create_dataset(s, name=name)
            new_ids = versions.import_version0(
                s, dataset_id, records, np.concatenate(index), np.concatenate(grasps)
            )
        # Map the clone's ids back onto the base's truth and splits.
        mapping = {int(new): int(old.id) for new, (old, _) in zip(new_ids, images, strict=True)}
        self._maps = getattr(self, "_maps", {})
        self._maps[dataset_id] = mapping
        return dataset_id

    def _mask(self, image_id: int, dataset_id: int) -> np.ndarray | None:
        """The object mask of a clone's image (shared files with the base), cached."""
        from regrasp.grasp.imaging import decode_mask
        from regrasp.platform.store.db.engine import session_scope
        from regrasp.platform.store.db.tables import Image

        base = self._maps[dataset_id][image_id]
        cache = self.__dict__.setdefault("_masks", {})
        if base not in cache:
            with session_scope(self.bind) as s:
                key = s.get(Image, base).mask_key
            cache[base] = decode_mask(self.store.get_bytes(key)) > 0 if key else None
        return cache[base]

    def _ids(self, dataset_id: int, base_ids: np.ndarray) -> np.ndarray:
        inverse = {old: new for new, old in self._maps[dataset_id].items()}
        return np.array([inverse[int(i)] for i in base_ids], dtype=np.int64)

    def _train(
        self, dataset_id: int, version: int, *, exclude: np.ndarray, seed: int
    ) -> tuple[int, float]:
        """Train through the job queue; returns (model id, test accuracy on clean labels)."""
        from regrasp.learn import queue as jobs
        from regrasp.learn.worker import Worker, validate_payload
        from regrasp.platform.store.db.engine import session_scope

        config = train_config(self.args, self._ids(dataset_id, exclude), seed)
        with session_scope(self.bind) as s:
            payload = validate_payload(
                s, "train", {"dataset": dataset_id, "version": version, "config": config}
            )
            jobs.submit(s, "train", payload)
        worker = Worker(self.bind, self.store, worker_id="bench", device=self.args.device)
        t = time.perf_counter()
        outcome = worker.run_once()
        self.seconds["train"] = self.seconds.get("train", 0.0) + time.perf_counter() - t
        if outcome is None or outcome.status != "succeeded":
            raise SystemExit(f"training failed: {outcome}")
        model_id = int(outcome.result["model_id"])
        for restart in outcome.result.get("restarts", []):
            self.restarts.append({"dataset": dataset_id, "version": version, **restart})
            print(f"  training restarted: {restart}", flush=True)
        return model_id, self._test_accuracy(dataset_id, version, model_id)

    def _predict(
        self, dataset_id: int, version: int, model_id: int, base_ids: np.ndarray, k: int = 5
    ) -> dict[int, np.ndarray]:
        """Top-k grasps (K, 6: x, y, theta, opening, jaw, quality) of images, by clone id."""
        import torch

        from regrasp.learn.training.cache import build_cache, db_images
        from regrasp.learn.training.config import DecodeConfig
        from regrasp.learn.training.data import CachedGraspDataset
        from regrasp.learn.training.evaluate import predict_top_k
        from regrasp.learn.training.registry import load_registered
        from regrasp.learn.worker import model_store_name
        from regrasp.platform.store.db.engine import session_scope
        from regrasp.platform.store.db.tables import Dataset

        torch.set_num_threads(2)
        model, meta = load_registered(self.store, model_store_name(model_id), device="cpu")
        with session_scope(self.bind) as s:
            name = s.get(Dataset, dataset_id)
            sources = db_images(s, self.store, dataset_id=dataset_id, version=version)
        index = build_cache(
            self.store,
            sources,
            dataset=name.name,
            version=version,
            channels=meta["channels"],
            size=int(meta["input_size"]),
        )
        cached = set(index.image_ids)  # images removed by earlier rounds are gone
        ids = [int(i) for i in self._ids(dataset_id, base_ids) if int(i) in cached]
        data = CachedGraspDataset(self.store, index, ids, width_scale=float(meta["width_scale"]))
        decode = DecodeConfig(**{**meta.get("decode", {}), "k": k})
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(data), 64):
            picks = range(start, min(start + 64, len(data)))
            samples = [data.sample(i) for i in picks]
            x = np.stack([smp[0] for smp in samples])
            ranked = predict_top_k(
                model,
                x,
                letterboxes=[smp[2] for smp in samples],
                decode_config=decode,
                width_scale=data.width_scale,
                device="cpu",
            )
            for i, (grasps, scores) in zip(picks, ranked, strict=True):
                rows = np.concatenate([grasps.reshape(-1, 5), scores.reshape(-1, 1)], axis=1)
                out[data.image_id(i)] = rows
        return out

    def _test_accuracy(self, dataset_id: int, version: int, model_id: int) -> float:
        from regrasp.grasp.metrics import SUCCESS_IOU, best_iou_batch

        predictions = self._predict(dataset_id, version, model_id, self.test_ids, k=1)
        mapping = self._maps[dataset_id]
        ids = sorted(predictions)
        top1 = np.full((len(ids), 5), np.nan)
        predicted = np.zeros(len(ids), dtype=bool)
        for j, i in enumerate(ids):
            if len(predictions[i]):
                top1[j] = predictions[i][0, :5]
                predicted[j] = True
        truths = [self.truth[mapping[i]].grasps for i in ids]
        best = best_iou_batch(top1, truths, predicted=predicted)
        return float(np.mean(best > SUCCESS_IOU))

    def _review_round(
        self,
        dataset_id: int,
        version: int,
        model_id: int,
        predictions: dict[int, np.ndarray],
        *,
        auto: bool = False,
        flag: str = "paper",
        ordered: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """Flag, review (simulated reviewer, or auto-accept the top-1) and apply one round.

        `ordered=False` gives every flagged image a random priority (seeded by the round),
        so the budget takes a random draw of the flagged images: a binary flag's review."""
        import sqlalchemy as sa

        from regrasp.data import versions
        from regrasp.data.synthetic.reviewer import SimulatedReviewer
        from regrasp.platform.store.db.engine import session_scope
        from regrasp.platform.store.db.tables import (
            Prediction,
            ReviewItem,
            ReviewItemState,
            RoundState,
        )
        from regrasp.refine.refinement_stats import (
            add_audit_items,
            item_strata,
            round_refinement,
        )
        from regrasp.refine.review.adjudication import resolve
        from regrasp.refine.review.decisions import decide
        from regrasp.refine.review.items import confirmed_images, create_items, final_decisions
        from regrasp.refine.rounds.applying import apply_round
        from regrasp.refine.rounds.config import RoundConfig
        from regrasp.workflows.rounds import machine
        from regrasp.workflows.rounds.predicting import score

        a = self.args
        ids = np.array(sorted(predictions), dtype=np.int64)
        masks = {int(i): self._mask(int(i), dataset_id) for i in ids}  # before the write
        with session_scope(self.bind) as s:
            labels = versions.labels_at(s, dataset_id, version)
            present = np.isin(ids, versions.images_at(s, dataset_id, version))
            ids = ids[present]
            mask = np.isin(labels.image_ids, ids)
            scores = score(
                [predictions[int(i)] for i in ids],
                labels.grasps[mask],
                np.searchsorted(ids, labels.image_ids[mask]),
                threshold=0.2,
                flag=flag,  # type: ignore[arg-type]
                score_threshold=a.score_threshold,
                masks=[masks[int(i)] for i in ids],
            )
            # As a round does (RoundConfig.skip_confirmed): kept images are not flagged again.
            flagged = scores.flagged & ~np.isin(
                ids,
                confirmed_images(s, dataset_id, version)
                if a.skip_confirmed
                else np.zeros(0, dtype=np.int64),
            )
            priority = scores.priority
            if not ordered:
                # Only the queue's order is the paper's: the unflagged images keep the
                # flag's own priority, which ranks them for the audit census as in `paper`.
                draw = np.random.default_rng([a.seed, version, 104729]).random(len(ids))
                priority = np.where(flagged, draw, priority)
            unflagged_left = self._unflagged_left(
                dataset_id,
                ids,
                ~flagged,
                priority,
                labels,
                self._start(dataset_id),
            )
            rnd = machine.create_round(
                s,
                dataset_id=dataset_id,
                version=version,
                config=RoundConfig(
                    model_id=model_id,
                    confirm_changes=a.confirm_changes,
                    confirm_keeps=a.confirm_keeps,
                ),
            )
            rnd.model_id = model_id
            rnd.state = RoundState.reviewing  # the predicting step, done in this process
            s.flush()
            round_id = rnd.id
            s.execute(
                sa.insert(Prediction),
                [
                    {
                        "round_id": round_id,
                        "image_id": int(i),
                        "grasps": predictions[int(i)].tolist(),
                        "best_iou": float(scores.best_iou[j]),
                        "flagged": bool(flagged[j]),
                        "priority": float(priority[j]),
                        "quality": scores.quality[j],
                    }
                    for j, i in enumerate(ids)
                ],
            )
            create_items(s, round_id, budget=None if auto else a.review_budget)
            flagged_of = {int(i): bool(flagged[j]) for j, i in enumerate(ids)}
            queued = s.scalars(
                sa.select(ReviewItem.image_id).where(ReviewItem.round_id == round_id)
            ).all()
        # Which images each round flagged and queued, by base id (`_status`'s left-over
        # diagnosis: never flagged, flagged past the budget, or reviewed and still left).
        seen = self.__dict__.setdefault("_seen", {}).setdefault(
            dataset_id, {"flagged": set(), "queued": set()}
        )
        seen["flagged"].update(self._maps[dataset_id][int(i)] for i in ids[flagged])
        seen["queued"].update(self._maps[dataset_id][int(i)] for i in queued if flagged_of[i])
        with session_scope(self.bind) as s:
            if a.audit and not auto:
                add_audit_items(s, round_id, count=a.audit, seed=a.seed + version, top=a.audit_top)
        mapping = self._maps[dataset_id]
        # Three people who err independently: the first reviewer, the second who confirms
        # label-changing decisions (`--confirm-changes`), the admin who settles conflicts.
        people = [
            (
                user,
                SimulatedReviewer(
                    error_rate=a.error_rate, seed=a.seed + version + 7919 * n, draw=a.draw
                ),
            )
            for n, user in enumerate((self.admin, self.second, self.robot))
        ]
        reviews = queue_reviews = 0  # every review; those of flagged (queue) items
        seconds = queue_seconds = 0.0  # their review time (drawing a grasp takes longer)
        drawn_by_item: dict[int, np.ndarray] = {}  # what the first reviewer drew, to confirm
        drawn_total = 0  # grasps drawn (by first reviewers; a confirmation keeps them)
        for state, (user, reviewer) in zip(
            (ReviewItemState.pending, ReviewItemState.pending, ReviewItemState.adjudication),
            people,
            strict=True,
        ):
            with session_scope(self.bind) as s:
                items = s.scalars(
                    sa.select(ReviewItem)
                    .where(ReviewItem.round_id == round_id, ReviewItem.state == state)
                    .order_by(ReviewItem.id)
                ).all()
                for item in items:
                    mine = labels.image_ids == item.image_id
                    preds = predictions[item.image_id]
                    if auto:
                        kind, accepted, removed = (
                            ("missing_label", [0], []) if len(preds) else ("true_negative", [], [])
                        )
                        drawn, took, own = np.empty((0, 5)), 0.0, 0
                    else:
                        d = reviewer.review(
                            self.truth[mapping[item.image_id]],
                            labels.grasps[mine],
                            preds[:, :5],
                            audit=not flagged_of[item.image_id],
                            proposed=drawn_by_item.get(item.id),
                        )
                        kind, accepted = d.kind, d.accepted_predictions
                        removed = [int(labels.grasp_ids[mine][i]) for i in d.removed_labels]
                        drawn = np.asarray(d.drawn_grasps, dtype=np.float64).reshape(-1, 5)
                        # Drawing takes time; keeping what the first reviewer drew does not.
                        own = 0 if item.id in drawn_by_item else len(drawn)
                        drawn_by_item.setdefault(item.id, drawn)
                        took = a.review_seconds + a.draw_seconds * own
                    write = resolve if state == ReviewItemState.adjudication else decide
                    write(
                        s,
                        item.id,
                        self.robot if auto else user,
                        item_version=item.version,
                        decision=kind,
                        accepted_predictions=accepted,
                        removed_grasp_ids=removed,
                        drawn_grasps=drawn.tolist(),
                        seconds_taken=took,
                    )
                    reviews += 1
                    queue_reviews += flagged_of[item.image_id]
                    seconds += took
                    drawn_total += own
                    queue_seconds += took if flagged_of[item.image_id] else 0.0
            if auto:
                break
        with session_scope(self.bind) as s:
            image_of = dict(
                s.execute(
                    sa.select(ReviewItem.id, ReviewItem.image_id).where(
                        ReviewItem.round_id == round_id
                    )
                ).all()
            )
            finals = final_decisions(s, round_id)
            hits = [  # corrupted images whose final decision calls their labels wrong
                image_of[f.item_id]
                for f in finals
                if f.decision.value != "true_negative"
                and self.truth[mapping[image_of[f.item_id]]].corrupted
            ]
            found = len(hits)
            found_queue = sum(flagged_of[i] for i in hits)
            audit_truth = self._audit_truth(
                item_strata(s, round_id), finals, image_of, mapping, labels
            )
        with session_scope(self.bind) as s:
            machine.request_apply(s, round_id, force=True, by=self.admin)
            new_version = apply_round(s, round_id)
        with session_scope(self.bind) as s:
            stats = round_refinement(s, round_id)
        flagged_pool = int(flagged.sum())  # predictions cover the pool only
        hours = seconds / 3600.0
        queue_hours = queue_seconds / 3600.0
        return new_version, {
            "flagged": flagged_pool,
            "reviewed": reviews,
            "review_hours": hours,
            "queue_review_hours": queue_hours,
            "drawn_grasps": drawn_total,
            "corrupted_found": found,
            "corrupted_found_per_hour": found / hours if hours else None,
            "queue_reviewed": queue_reviews,
            "queue_corrupted_found": found_queue,
            "queue_found_per_hour": found_queue / queue_hours if queue_hours else None,
            "decisions": stats.decisions,
            "audit_decisions": stats.audit_decisions,
            "estimated_noise": stats.estimated_noise,
            "estimated_noise_low": stats.estimated_noise_low,
            "estimated_noise_high": stats.estimated_noise_high,
            "yield_per_hour": stats.yield_per_hour,
            "unflagged_left": unflagged_left,
            "audit_truth": audit_truth,
            "stats": stats.to_dict(),
        }

    def _judge(self, base_id: int, g: np.ndarray) -> tuple[bool, float]:
        """(any wrong rectangle or no label, share of true grasps covered) of one image's
        labels `g`, memoised on the labels' bytes: most images keep their labels from round
        to round and across variants, and the rectangle IoU is the bench's costliest step."""
        from regrasp.data.synthetic.reviewer import valid_against_truth
        from regrasp.grasp.metrics import SUCCESS_IOU, iou

        memo = self.__dict__.setdefault("_judged", {})
        key = (base_id, g.tobytes())
        if key not in memo:
            truth = self.truth[base_id]
            if len(g) == 0:
                memo[key] = (True, 0.0)
            else:
                bad = bool((~valid_against_truth(truth, g)).any())
                cover = float((iou(truth.grasps, g).max(axis=1) > SUCCESS_IOU).mean())
                memo[key] = (bad, cover)
        return memo[key]

    def _repaired(self, base_id: int, bad: bool, cover: float, cover0: float) -> bool:
        """A corrupted image is repaired when no wrong rectangle is left and, for a
        missing-label image, more of its true grasps are covered than at version 0 (or all
        of them)."""
        return not bad and (
            self.truth[base_id].category == "annotation_error"
            or cover > cover0 + 1e-9
            or cover >= 1.0 - 1e-9
        )

    def _audit_truth(
        self,
        strata: dict[int, str],
        finals: list[Any],
        image_of: dict[int, int],
        mapping: dict[int, int],
        labels: Any,
    ) -> dict[str, dict[str, int]]:
        """The audit's final decisions against the truth, per stratum (the census "top" and
        the random "sample"): images called wrong or kept, by whether their labels were
        noisy by the auditor's standard (a wrong label or an unlabelled true grasp). What
        the noise estimate's audit share measures, next to what it estimates
        (`audit_truth` in results.json)."""
        from regrasp.refine.refinement_stats import LABEL_ERRORS

        table: dict[str, dict[str, int]] = {}
        for final in finals:
            stratum = strata.get(final.item_id, "flagged")
            if stratum == "flagged":
                continue
            image_id = image_of[final.item_id]
            bad, cover = self._judge(mapping[image_id], _rows_of(labels, image_id))
            cell = (
                f"{'called' if final.decision in LABEL_ERRORS else 'kept'}_"
                f"{'noisy' if _noisy(bad, cover) else 'clean'}"
            )
            counts = table.setdefault(stratum, {})
            counts[cell] = counts.get(cell, 0) + 1
        return table

    def _start(self, dataset_id: int) -> Any:
        """The labels of version 0 (the import), read once: every round compares to them."""
        from regrasp.data import versions
        from regrasp.platform.store.db.engine import session_scope

        memo = self.__dict__.setdefault("_start_labels", {})
        if dataset_id not in memo:
            with session_scope(self.bind) as s:
                memo[dataset_id] = versions.labels_at(s, dataset_id, 0)
        return memo[dataset_id]

    def _unflagged_left(
        self,
        dataset_id: int,
        ids: np.ndarray,
        unflagged: np.ndarray,
        priority: np.ndarray,
        labels: Any,
        start: Any,
    ) -> dict[str, Any]:
        """Where the corrupted images still left sit among a round's unflagged images, by
        the flag's priority: how many an audit that samples the top of the unflagged would
        reach (`unflagged_left` in results.json)."""
        mapping = self._maps[dataset_id]
        order = np.argsort(-priority[unflagged], kind="stable")
        left = np.zeros(int(unflagged.sum()), dtype=bool)
        for k, new_id in enumerate(ids[unflagged]):
            base = mapping[int(new_id)]
            if self.truth[base].corrupted:
                bad, cover = self._judge(base, _rows_of(labels, int(new_id)))
                _, cover0 = self._judge(base, _rows_of(start, int(new_id)))
                left[k] = not self._repaired(base, bad, cover, cover0)
        ranked = left[order]
        return {
            "unflagged": int(unflagged.sum()),
            "left": int(left.sum()),
            "left_in_top": {str(n): int(ranked[:n].sum()) for n in (50, 100, 200, 400, 800)},
        }

    def _status(self, dataset_id: int, version: int) -> dict[str, Any]:
        """The pool's labels at `version` against the truth (module docstring)."""
        from regrasp.data import versions
        from regrasp.platform.store.db.engine import session_scope

        with session_scope(self.bind) as s:
            labels = versions.labels_at(s, dataset_id, version)
            present = set(versions.images_at(s, dataset_id, version).tolist())
        start = self._start(dataset_id)
        mapping = self._maps[dataset_id]
        remaining = removed_bad = harmed = 0
        seen = self.__dict__.get("_seen", {}).get(dataset_id)
        left_by_kind: dict[str, dict[str, int]] = {}  # why a corrupted image is still left
        coverage, noisy, incomplete = [], 0, 0
        by_kind: dict[str, dict[str, int]] = {}  # corruption → outcome → images
        for new_id in self._ids(dataset_id, self.pool_ids):
            base = mapping[int(new_id)]
            truth = self.truth[base]
            if int(new_id) not in present:
                removed_bad += truth.corrupted
                harmed += not truth.corrupted
                if truth.corrupted:
                    _count(by_kind, truth.corruption, "removed")
                continue
            bad, cover = self._judge(base, _rows_of(labels, int(new_id)))
            _, cover0 = self._judge(base, _rows_of(start, int(new_id)))
            coverage.append(cover)
            incomplete += _noisy(bad, cover)
            if truth.corrupted:
                repaired = self._repaired(base, bad, cover, cover0)
                remaining += not repaired
                if seen is not None and not repaired:
                    reason = (
                        "never_flagged"
                        if base not in seen["flagged"]
                        else "flagged_past_budget"
                        if base not in seen["queued"]
                        else "reviewed"
                    )
                    why = left_by_kind.setdefault(truth.corruption, {})
                    why[reason] = why.get(reason, 0) + 1
                noisy += not repaired
                _count(by_kind, truth.corruption, "repaired" if repaired else "left")
            else:
                harmed += bad
                noisy += bad
        in_pool = max(1, len(present & set(self._ids(dataset_id, self.pool_ids).tolist())))
        left_by_reason: dict[str, int] = {}  # the same, over every kind
        for reasons in left_by_kind.values():
            for reason, n in reasons.items():
                left_by_reason[reason] = left_by_reason.get(reason, 0) + n
        return {
            "corrupted_remaining": remaining,
            "corrupted_removed": removed_bad,
            "corrupted_by_kind": by_kind,
            "left_by_reason": left_by_reason,
            "left_by_kind_and_reason": left_by_kind,
            "clean_harmed": harmed,
            "coverage": float(np.mean(coverage)) if coverage else 0.0,
            "true_noise": noisy / in_pool,
            "true_noise_complete": incomplete / in_pool,
        }


# --- report ------------------------------------------------------------------------------


def report(args: argparse.Namespace, bench: Bench, results: dict, elapsed: float) -> str:
    lines = [
        "## Efficacy of the loop (synthetic data, simulated reviewer)",
        "",
        "Command: `python bench/efficacy.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"{args.images} images of {args.size}² px, {args.corrupt_fraction:.0%} corrupted "
        f"({args.corruption_kinds.replace(',', ', ')}); pool {len(bench.pool_ids)} images, "
        f"fixed test split {len(bench.test_ids)} images scored on clean labels; "
        f"{args.architecture} at "
        f"{args.input_size}² px, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}"
        f"{f' (warm-up {args.warmup_steps} steps)' if args.warmup_steps else ''}, "
        f"augmentation {'on' if args.augment else 'off'}; top-{args.top_k} predictions; "
        f"reviewer error rate "
        f"{args.error_rate:.0%}; audit per round: {_audit_words(args)}. "
        f"Total {elapsed / 60:.1f} min (generation {bench.seconds.get('generate', 0):.0f} s, "
        f"training {bench.seconds.get('train', 0):.0f} s); trainings restarted after a "
        f"collapse (`regrasp.learn.training.loop.collapse_reason`): {len(bench.restarts)}.",
        "",
        "| variant | round | flagged | TN / ML / AE / fix | corrupted left | corrupted removed "
        "| clean harmed | true noise (repaired / complete) | est. noise [95% CI] | coverage "
        "| test acc (clean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for row in rows:
            d = row.get("decisions")
            mix = (
                f"{d['true_negative']} / {d['missing_label']} / {d['annotation_error']} / "
                f"{d['fix']}"
                if d
                else "–"
            )
            est = row.get("estimated_noise")
            high = row.get("estimated_noise_high")
            ci = (
                f"{est:.1%} [{row['estimated_noise_low']:.1%}, "
                + (f"{high:.1%}]" if high is not None else "–] (flagged only)")
                if est is not None
                else "–"
            )
            lines.append(
                f"| {name} | {row['round']}{' (seed)' if 'seed' in row else ''} "
                f"| {row.get('flagged', '–')} | {mix} | {row['corrupted_remaining']} "
                f"| {row['corrupted_removed']} | {row['clean_harmed']} | {row['true_noise']:.1%} / "
                f"{row.get('true_noise_complete', math.nan):.1%} "
                f"| {ci} | {row['coverage']:.3f} | {row['accuracy']:.3f} |"
            )
    lines += ["", "Corrupted pool images by kind at the end (left / removed / repaired):", ""]
    for name, rows in results.items():
        kinds = rows[-1].get("corrupted_by_kind") or {}
        parts = [
            f"{kind} {c['left']} / {c['removed']} / {c['repaired']}"
            for kind, c in sorted(kinds.items())
        ]
        why = rows[-1].get("left_by_reason") or {}
        if why:  # the loops' left-over images, by what the queue did with them
            parts.append(f"left because {_reasons(why)}")
        for kind, reasons in sorted((rows[-1].get("left_by_kind_and_reason") or {}).items()):
            parts.append(f"{kind} left because {_reasons(reasons)}")
        if parts:
            lines.append(f"- {name}: " + "; ".join(parts))
    lines += ["", "Final test accuracy against the baselines (ratio to the mean of `none`):", ""]
    base = [r["accuracy"] for r in results.get("none", [])]
    ref = float(np.mean(base)) if base else math.nan
    for name, rows in results.items():
        if name in ("none", "clean"):
            accs = [r["accuracy"] for r in rows]
        else:
            accs = rows[-1].get("final_accuracies") or [rows[-1]["accuracy"]]
        mean = float(np.mean(accs))
        spread = f" (seeds {min(accs):.3f}–{max(accs):.3f})" if len(accs) > 1 else ""
        ratio = f"{mean / ref:.2f}" if ref > 0 else "n/a"
        t, pval = welch(accs, base)
        test = f", Welch t {t:.2f}, p {pval:.3g} vs none" if name != "none" and base else ""
        lines.append(f"- {name}: {mean:.3f}{spread}, ratio {ratio}{test}")
    lines += ["", "Review yield and the noise interval (rounds with a review):", ""]
    yields: dict[str, tuple[int, float, int, float]] = {}  # variant → _yield, for the ratios
    for name, rows in results.items():
        reviewed = [r for r in rows if r.get("reviewed")]
        if not reviewed:
            continue
        yields[name] = _yield(reviewed)
        found, hours, q_found, q_hours = yields[name]
        holds = [
            r["noise_interval_holds"] for r in reviewed if r.get("noise_interval_holds") is not None
        ]
        holds_complete = [
            r["noise_interval_holds_complete"]
            for r in reviewed
            if r.get("noise_interval_holds_complete") is not None
        ]
        in_queue = (
            f"; the queue alone (flagged items with their confirmations, audit left out): "
            f"{q_found} in {q_hours:.2f} h ({q_found / q_hours:.0f} per hour)"
            if q_hours
            else ""
        )
        lines.append(
            f"- {name}: {found} corrupted images found in {hours:.2f} review hours "
            f"({f'{found / hours:.0f} per hour' if hours else 'no person'}){in_queue}; "
            f"noise interval holds the truth in "
            f"{sum(holds)} of {len(holds)} rounds with a partial repair counted as repaired, "
            f"{sum(holds_complete)} of {len(holds_complete)} by the auditor's standard "
            f"(every true grasp labelled)"
        )
        audit: dict[str, dict[str, int]] = {}  # stratum → cell → images, over the rounds
        for r in reviewed:
            for stratum, cells in (r.get("audit_truth") or {}).items():
                for cell, n in cells.items():
                    audit.setdefault(stratum, {})[cell] = audit.get(stratum, {}).get(cell, 0) + n
        if audit:
            lines.append(
                f"- {name}, the audit's decisions against the truth (all rounds): "
                + "; ".join(
                    f"{'census' if stratum == 'top' else 'random sample'}: called wrong "
                    f"{c.get('called_noisy', 0)} noisy and {c.get('called_clean', 0)} clean, "
                    f"kept {c.get('kept_clean', 0)} clean and {c.get('kept_noisy', 0)} noisy"
                    for stratum, c in sorted(audit.items(), reverse=True)
                )
            )
    # The per-hour bar: the score's queue against the paper's flag, both orders.
    for name in ("paper", "paper_random"):
        mine, theirs = yields.get("insample"), yields.get(name)
        if mine and theirs and all(theirs) and all(mine):
            lines.append(
                f"- corrupted images found per review hour, insample against {name}: "
                f"×{(mine[0] / mine[1]) / (theirs[0] / theirs[1]):.2f} over all reviews, "
                f"×{(mine[2] / mine[3]) / (theirs[2] / theirs[3]):.2f} for the queue alone"
            )
    return "\n".join(lines) + "\n"


def _yield(reviewed: list[dict[str, Any]]) -> tuple[int, float, int, float]:
    """Corrupted images found and review hours, over every review and over the queue alone
    (flagged items with their confirmations), summed over the rounds with a review."""
    queue = [r for r in reviewed if r.get("queue_reviewed")]
    return (
        sum(r["corrupted_found"] for r in reviewed),
        sum(r["review_hours"] for r in reviewed),
        sum(r["queue_corrupted_found"] for r in queue),
        sum(r["queue_review_hours"] for r in queue),
    )


def charts(results: dict, out: Path) -> None:
    from regrasp.grasp.drawing import chart_metrics

    loops = {k: v for k, v in results.items() if k in ("insample", "oof", "auto")}
    if not loops:
        return
    rounds = list(range(max(len(v) for v in loops.values())))

    def series(key: str) -> dict[str, list[float | None]]:
        out_series: dict[str, list[float | None]] = {}
        for name, rows in loops.items():
            values = [r.get(key) for r in rows]
            out_series[name] = values + [None] * (len(rounds) - len(values))
        for name in ("none", "clean"):
            if name in results and key in results[name][0]:
                mean = float(np.mean([r[key] for r in results[name]]))
                out_series[name] = [mean] * len(rounds)
        return out_series

    for key, ylabel in (
        ("accuracy", "test accuracy (clean labels)"),
        ("corrupted_remaining", "corrupted images left"),
        ("clean_harmed", "clean images harmed"),
        ("flagged", "flagged images"),
    ):
        png = chart_metrics(rounds, series=series(key), ylabel=ylabel, title=ylabel)
        (out / f"{key}.png").write_bytes(png)


def _holds(row: dict[str, Any], truth: str) -> bool | None:
    """Does the round's noise interval contain the true noise (`truth`: the row's key) of
    the version it reviewed?"""
    low, high = row.get("estimated_noise_low"), row.get("estimated_noise_high")
    if low is None or high is None or truth not in row:
        return None
    return bool(low <= row[truth] <= high)


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value of mean(a) − mean(b) (no scipy here):
    the Student t tail through the regularised incomplete beta function."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return math.nan, math.nan
    va, vb = np.var(a, ddof=1) / na, np.var(b, ddof=1) / nb
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1)) if va + vb else math.nan
    return _t_test(float(np.mean(a) - np.mean(b)), float(va + vb), df)


def paired_t(differences: list[float]) -> tuple[float, float]:
    """The paired t statistic and two-sided p-value of mean(differences) ≠ 0: the
    one-sample t test on per-pair differences (NaN with fewer than two pairs)."""
    n = len(differences)
    if n < 2:
        return math.nan, math.nan
    variance = float(np.var(differences, ddof=1)) / n
    return _t_test(float(np.mean(differences)), variance, n - 1)


def _t_test(difference: float, variance: float, df: float) -> tuple[float, float]:
    """t = difference / sqrt(variance) and its two-sided Student-t p-value with `df`
    degrees of freedom; with no spread at all the difference is exact."""
    if variance == 0:
        return (0.0, 1.0) if difference == 0 else (math.copysign(math.inf, difference), 0.0)
    t = difference / math.sqrt(variance)
    return t, _betainc(df / 2.0, 0.5, df / (df + t * t))


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by Lentz's continued fraction."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-12:
            break
    return front * f / a


def _line(row: dict[str, Any]) -> str:
    return (
        f"round {row['round']}: acc {row['accuracy']:.3f}, flagged {row.get('flagged', '-')}, "
        f"corrupted left {row['corrupted_remaining']}, harmed {row['clean_harmed']}, "
        f"decisions {row.get('decisions', '-')}, {row.get('seconds', 0):.0f} s"
    )


def _audit_words(args: argparse.Namespace) -> str:
    """The audit design in words, for the report."""
    if not args.audit_top:
        return f"{args.audit} unflagged images at random"
    return (
        f"the {args.audit_top} unflagged images the flag ranks highest, then {args.audit} of "
        "the other unflagged images at random"
    )


def _rows_of(labels: Any, image_id: int) -> np.ndarray:
    """The grasps of one image of a `versions.Labels` (sorted by image id), by binary
    search: a mask over every label for every image is quadratic in the pool."""
    lo, hi = np.searchsorted(labels.image_ids, [image_id, image_id + 1])
    return labels.grasps[lo:hi]


def _noisy(bad: bool, cover: float) -> bool:
    """Noisy by the auditor's standard (`SimulatedReviewer.review(audit=True)`): a wrong
    label, or a true grasp no label covers."""
    return bad or cover < 1.0 - 1e-9


def _reasons(counts: dict[str, int]) -> str:
    """'never flagged 3, reviewed 2': the reasons an image is left, for the report."""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items()))


def _count(table: dict[str, dict[str, int]], kind: str, outcome: str) -> None:
    row = table.setdefault(kind, {"left": 0, "removed": 0, "repaired": 0})
    row[outcome] += 1


def _rank(seed: int, unit: str) -> bytes:
    return hashlib.sha256(f"{seed}:{unit}".encode()).digest()


if __name__ == "__main__":
    main()
