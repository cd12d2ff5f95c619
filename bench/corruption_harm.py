"""Benchmark: which label corruptions hurt a small model, and what removing wrong actions wins.

The demo can show accuracy rising across rounds only if its corrupted labels cost the
round-0 model more than the spread between two trainings. This trains the demo's own
recipe (`regrasp.demo.DEMO_TRAIN`: GG-CNN at 128², 40 epochs of 8-image batches, no
augmentation) on 200 synthetic images corrupted in several ways, every image training (no
split), and scores each model on 400 clean images of other objects (another seed), as
`regrasp demo` does. Each condition is trained with every seed of `--seeds`, so the
spread between trainings is measured beside the effects.

Conditions (`name: fraction, kinds`):
- `clean`: no corruption (the bound);
- `paper25`, `paper50`: the paper's three kinds at 25% and 50%;
- `missing50`: the two missing-label kinds at 50%; `wrong50`: wrong actions at 50%;
- `demo60`: the demo's default (60%: wrong actions and one orientation, half each);
- `demo60-fixed`: the same images without the wrong-action ones, which is what the loop's
  first round leaves when its reviewer removes every image it flags as an annotation
  error (the demo's round 1 removes all of them).

Run: `python bench/corruption_harm.py [--seeds 0,1] [--conditions ...] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAPER = ("one_orientation", "part_only", "wrong_action")
#: name -> (corrupt fraction, kinds, drop the wrong-action images)
CONDITIONS: dict[str, tuple[float, tuple[str, ...], bool]] = {
    "clean": (0.0, PAPER, False),
    "paper25": (0.25, PAPER, False),
    "paper50": (0.5, PAPER, False),
    "missing50": (0.5, ("one_orientation", "part_only"), False),
    "wrong50": (0.5, ("wrong_action",), False),
    "demo60": (0.6, ("wrong_action", "one_orientation"), False),
    "demo60-fixed": (0.6, ("wrong_action", "one_orientation"), True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--test-images", type=int, default=400)
    p.add_argument("--seeds", default="0,1", help="Training seeds of every condition.")
    p.add_argument("--conditions", default=",".join(CONDITIONS))
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="Override a field of the demo's recipe, e.g. --set batch_size=4 (repeatable).",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    try:
        overrides = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.set)}
    except ValueError as exc:
        raise SystemExit(f"--set takes FIELD=JSON, e.g. batch_size=4 ({exc})") from None
    names = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONDITIONS))
    if unknown:
        raise SystemExit(f"unknown conditions {unknown}; known: {', '.join(CONDITIONS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    rows = run(names, seeds, images=args.images, test_images=args.test_images, overrides=overrides)
    summary = summarise(rows)
    for name in names:
        s = summary[name]
        print(
            f"{name:13s} train {s['train_images']:4d} images  accuracy "
            f"{' '.join(f'{a:.3f}' for a in s['accuracies'])}  mean {s['mean']:.3f}  "
            f"vs clean {s['vs_clean']:+.3f}",
            flush=True,
        )
    spread = max(s["spread"] for s in summary.values())
    print(f"largest spread between seeds of one condition: {spread:.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {
            "command": "python bench/corruption_harm.py " + " ".join(sys.argv[1:]),
            "machine": platform.platform(),
            "seconds": round(time.perf_counter() - started, 1),
            "images": args.images,
            "test_images": args.test_images,
            "seeds": seeds,
            "recipe_overrides": overrides,
            "runs": rows,
            "summary": summary,
        }
        args.json.write_text(json.dumps(out, indent=1))
        print(f"written: {args.json}")


def run(
    names: list[str],
    seeds: list[int],
    *,
    images: int,
    test_images: int,
    overrides: dict[str, Any] | None = None,
) -> list[dict]:
    import torch

    from regrasp.data.formats.jacquard import scan_jacquard
    from regrasp.data.synthetic.generate import generate_dataset
    from regrasp.data.synthetic.manifest import read_manifest
    from regrasp.demo import DEMO_TRAIN
    from regrasp.learn.training.cache import build_cache, jacquard_images
    from regrasp.learn.training.config import TrainConfig
    from regrasp.learn.training.data import CachedGraspDataset
    from regrasp.learn.training.evaluate import evaluate
    from regrasp.learn.training.loop import train
    from regrasp.platform.store.objects import open_store

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-harm-"))
    store = open_store(f"file://{tmp / 'objects'}")
    recipe = {k: v for k, v in {**DEMO_TRAIN, **(overrides or {})}.items() if k != "split"}
    size = int(recipe["input_size"])

    def cached(folder: Path, name: str) -> tuple[Any, list[int], dict[int, str]]:
        """The folder's cache index, its image ids and each id's file stem (the ids are
        numbered in name order, `jacquard_images`)."""
        dataset = scan_jacquard(folder)
        sources = jacquard_images(dataset)
        index = build_cache(store, sources, dataset=name, version=0, size=size, shard_size=64)
        stems = sorted(image.name for image in dataset)
        return (
            index,
            [s.image_id for s in sources],
            dict(zip((s.image_id for s in sources), stems, strict=True)),
        )

    generate_dataset(tmp / "test", images=test_images, size=128, seed=1, compress=False)
    test_index, test_ids, _ = cached(tmp / "test", "test")
    rows = []
    for name in names:
        fraction, kinds, fixed = CONDITIONS[name]
        folder = tmp / name
        generate_dataset(
            folder,
            images=images,
            size=128,
            seed=0,
            corrupt_fraction=fraction,
            corruption_kinds=kinds,
            compress=False,
        )
        index, ids, stem_of = cached(folder, name)
        if fixed:
            truth = read_manifest(folder).by_stem()
            ids = [i for i in ids if truth[stem_of[i]].corruption != "wrong_action"]
        for seed in seeds:
            config = TrainConfig(**recipe, seed=seed, split={"val_fraction": 0.0})
            common = {
                "width_scale": config.width_scale,
                "seed": seed,
                "shards_in_memory": config.shards_in_memory,
            }
            data = CachedGraspDataset(store, index, ids, augment=None, **common)
            test = CachedGraspDataset(store, test_index, test_ids, augment=None, **common)
            t = time.perf_counter()
            result = train(
                config,
                train_data=data,
                val_data=None,
                store=store,
                name=f"{name}-{seed}",
                device="cpu",
            )
            accuracy = evaluate(result.model, test, decode_config=config.decode).accuracy
            row = {
                "condition": name,
                "corrupt_fraction": fraction,
                "kinds": list(kinds),
                "wrong_actions_removed": fixed,
                "train_images": len(ids),
                "seed": seed,
                "accuracy": accuracy,
                "train_seconds": round(time.perf_counter() - t, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict[str, dict]:
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["condition"], []).append(r)
    clean = statistics.fmean(r["accuracy"] for r in by["clean"]) if "clean" in by else None
    out = {}
    for name, rs in by.items():
        accs = [r["accuracy"] for r in rs]
        mean = statistics.fmean(accs)
        out[name] = {
            "train_images": rs[0]["train_images"],
            "accuracies": accs,
            "mean": mean,
            "spread": max(accs) - min(accs),
            "vs_clean": mean - clean if clean is not None else float("nan"),
        }
    return out


if __name__ == "__main__":
    main()
