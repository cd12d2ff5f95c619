"""Benchmark: how often a GG-CNN training collapses, and what the restart guard recovers.

GG-CNN is six plain ReLU layers, two of them only 8 channels wide; a large Adam step can
switch every unit of such a layer off for every input, after which no gradient reaches
the layers below and the model predicts the same map for every image: 0 % accuracy
however long it trains. The efficacy bench met one such training in 11 at its learning
rate (1e-3). `train` now notices (`regrasp.learn.training.loop.collapse_reason`) and
starts over from new weights with the next attempt's seed, up to `max_restarts` times.

This trains the efficacy bench's recipe (GG-CNN, batch 16, no dropout, no augmentation,
cosine learning rate) on `--images` synthetic images (25 % corrupted in the paper's
three ways) at each learning rate of `--lrs` with every training seed of `--seeds`, and
scores each model on `--test-images` clean images of other objects. Each training runs
first with the guard off (`max_restarts` 0): a collapse ends it with the collapse's
epoch. A collapsed training is then run again with the guard on (`max_restarts` 2); a
training that did not collapse is not rerun, because with the guard on it is the very
same run (attempt 0 keeps the configured seed and draws nothing more).

With `--warmup-steps N` every training warms its learning rate up over its first N
steps (`TrainConfig.warmup_steps`), to see whether gentler first steps prevent the
collapse rather than recover from it.

Run: `python bench/collapse.py [--lrs 1e-3,2e-3,3e-3] [--seeds 0-9] [--warmup-steps N]
[--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import efficacy  # noqa: E402
from _output import emit  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--test-images", type=int, default=300)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lrs", default="1e-3,2e-3,3e-3", help="Adam learning rates, comma-separated.")
    p.add_argument("--seeds", default="0-9", help="Training seeds: A-B or a comma list.")
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        help="TrainConfig.warmup_steps of every training (0: none, the efficacy recipe).",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        lrs = [float(x) for x in args.lrs.split(",") if x.strip()]
        seeds = _seeds(args.seeds)
    except ValueError as exc:
        p.error(f"--lrs takes numbers and --seeds A-B or a list of integers ({exc})")
    started = time.perf_counter()
    rows = run(args, lrs, seeds)
    out = {
        "command": "python bench/collapse.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": platform.platform(),
        "seconds": round(time.perf_counter() - started, 1),
        "recipe": _recipe(args, 0.0, 0, 0),
        "runs": rows,
        "summary": summarise(rows),
    }
    emit(out, args.json)


def _seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = (int(x) for x in text.split("-", 1))
        return list(range(low, high + 1))
    return [int(x) for x in text.split(",") if x.strip()]


def _recipe(args: argparse.Namespace, lr: float, seed: int, max_restarts: int) -> dict[str, Any]:
    """The efficacy bench's training recipe (`efficacy.train_config`) at this bench's size,
    `lr` and warm-up, with `max_restarts`."""
    recipe = efficacy.parse_args(
        [
            f"--epochs={args.epochs}",
            f"--input-size={args.input_size}",
            f"--lr={lr}",
            f"--warmup-steps={args.warmup_steps}",
        ]
    )
    return {**efficacy.train_config(recipe, (), seed), "max_restarts": max_restarts}


def run(args: argparse.Namespace, lrs: list[float], seeds: list[int]) -> list[dict[str, Any]]:
    import torch

    from regrasp.data.formats.jacquard import scan_jacquard
    from regrasp.data.synthetic.generate import generate_dataset
    from regrasp.learn.training.cache import build_cache, jacquard_images
    from regrasp.learn.training.config import TrainConfig
    from regrasp.learn.training.data import CachedGraspDataset
    from regrasp.learn.training.evaluate import evaluate
    from regrasp.learn.training.loop import TrainingCollapsed, train
    from regrasp.platform.store.objects import open_store

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-collapse-"))
    store = open_store(f"file://{tmp / 'objects'}")

    def dataset(name: str, images: int, seed: int, corrupt: float) -> tuple[Any, list[int]]:
        generate_dataset(
            tmp / name, images=images, size=128, seed=seed, corrupt_fraction=corrupt, compress=False
        )
        sources = jacquard_images(scan_jacquard(tmp / name))
        index = build_cache(
            store, sources, dataset=name, version=0, size=args.input_size, shard_size=64
        )
        return index, [s.image_id for s in sources]

    train_index, train_ids = dataset("train", args.images, 0, 0.25)
    test_index, test_ids = dataset("test", args.test_images, 1, 0.0)

    def attempt(lr: float, seed: int, max_restarts: int) -> dict[str, Any]:
        config = TrainConfig.model_validate(_recipe(args, lr, seed, max_restarts))
        common = {"width_scale": config.width_scale, "seed": seed, "shards_in_memory": 4}
        data = CachedGraspDataset(store, train_index, train_ids, augment=None, **common)
        test = CachedGraspDataset(store, test_index, test_ids, augment=None, **common)
        name = f"lr{lr:g}-seed{seed}-r{max_restarts}"
        t = time.perf_counter()
        try:
            result = train(
                config, train_data=data, val_data=None, store=store, name=name, device="cpu"
            )
        except TrainingCollapsed as exc:
            return {"collapsed": True, "error": str(exc), "seconds": time.perf_counter() - t}
        return {
            "collapsed": False,
            "restarts": result.restarts,
            "accuracy": evaluate(result.model, test, decode_config=config.decode).accuracy,
            "seconds": round(time.perf_counter() - t, 1),
        }

    rows = []
    for lr in lrs:
        for seed in seeds:
            off = attempt(lr, seed, 0)
            row: dict[str, Any] = {"lr": lr, "seed": seed, "guard_off": off}
            if off["collapsed"]:
                row["guard_on"] = attempt(lr, seed, 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per learning rate: trainings, collapses with the guard off, and with it on how many
    were recovered, how many restarts that took, and the mean accuracy either way (a
    collapsed training scores 0, which is what it would have registered)."""
    out: dict[str, dict[str, Any]] = {}
    for lr in sorted({r["lr"] for r in rows}):
        mine = [r for r in rows if r["lr"] == lr]
        off = [0.0 if r["guard_off"]["collapsed"] else r["guard_off"]["accuracy"] for r in mine]
        on_runs = [r.get("guard_on", r["guard_off"]) for r in mine]
        on = [0.0 if g["collapsed"] else g["accuracy"] for g in on_runs]
        out[f"{lr:g}"] = {
            "trainings": len(mine),
            "collapsed_guard_off": sum(r["guard_off"]["collapsed"] for r in mine),
            "failed_guard_on": sum(g["collapsed"] for g in on_runs),
            "restarts_guard_on": sum(len(g.get("restarts", [])) for g in on_runs),
            "mean_accuracy_guard_off": sum(off) / len(off),
            "mean_accuracy_guard_on": sum(on) / len(on),
        }
    return out


if __name__ == "__main__":
    main()
