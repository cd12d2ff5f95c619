"""Benchmark: how the label-quality score's mask terms judge real Jacquard labels.

    python bench/real_labels.py --json bench/results/real_labels.json

The score's wrong-action term and its `fits_object` gate read the object mask with the
geometry of the synthetic objects (`regrasp.refine.label_quality`). Jacquard's own
labels come from a physics simulation. This scores the real samples' labels alone (no
model, so no missing-grasp evidence): the share of each image's labels the mask test
passes, the share the wrong-action term calls along the object (0) or half-wrong (½),
and how many images the labels alone would queue under `flag: score` (1 − quality ≥
0.5), with the same numbers for clean synthetic images of the efficacy bench's size as
the reference; and the demo's wrong-action images queued by their labels alone, with
the one-pixel tolerance on label centres and without it. Seconds; no training.
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

from _output import emit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--jacquard",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "jacquard_samples",
        help="The real Jacquard samples (required: this bench is about them).",
    )
    p.add_argument("--synthetic", type=int, default=200, help="Clean synthetic images.")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if not args.jacquard.is_dir():
        raise SystemExit(f"no Jacquard samples at {args.jacquard} (--jacquard PATH)")
    started = time.perf_counter()
    out = {
        "command": "python bench/real_labels.py " + " ".join(sys.argv[1:]),
        "machine": platform.platform(),
        "real": judge(real_pairs(args.jacquard)),
        "synthetic_clean": judge(synthetic_pairs(args.synthetic)),
        "demo_wrong_action": demo_wrong_action(),
    }
    out["seconds"] = round(time.perf_counter() - started, 1)
    emit(out, args.json)


def agreement(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per image, the share of its labels that pass `fits_object`: the median, quartiles,
    and how many images reach AGREEMENT (where the score's mask gate applies)."""
    from regrasp.refine.label_quality import AGREEMENT, fits_object

    shares = np.array([fits_object(g, m).mean() for g, m in pairs if len(g)])
    return {
        "images": len(shares),
        "median_share": float(np.median(shares)) if len(shares) else None,
        "quartiles": np.percentile(shares, [25, 75]).round(3).tolist() if len(shares) else None,
        f"images_at_agreement_{AGREEMENT}": int((shares >= AGREEMENT).sum()),
    }


def real_pairs(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labels, mask) of every real Jacquard sample in `folder`."""
    from regrasp.data.formats.jacquard import scan_jacquard

    dataset = scan_jacquard(folder, required=("grasps", "mask"))
    return [(i.load_grasps(), i.load_mask()) for i in dataset.images]


def synthetic_pairs(images: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from regrasp.data.formats.jacquard import scan_jacquard
    from regrasp.data.synthetic.generate import generate_dataset

    folder = Path(tempfile.mkdtemp(prefix="bench-real-labels-")) / "synth"
    generate_dataset(folder, images=images, size=128, seed=0, compress=False)
    dataset = scan_jacquard(folder, required=("grasps", "mask"))
    return [(i.load_grasps(), i.load_mask()) for i in dataset.images]


def demo_wrong_action() -> dict[str, int]:
    """The demo's wrong-action images queued by their labels alone, by centre tolerance."""
    from regrasp.data.formats.jacquard import scan_jacquard
    from regrasp.demo.loop import SyntheticSpec
    from regrasp.refine import label_quality

    folder = Path(tempfile.mkdtemp(prefix="bench-real-labels-")) / "demo"
    truth = SyntheticSpec().generate(folder).by_stem()
    pairs = [
        (i.load_grasps(), i.load_mask())
        for i in scan_jacquard(folder, required=("grasps", "mask")).images
        if truth[i.name].corruption == "wrong_action"
    ]
    out = {"images": len(pairs)}
    kept = label_quality.CENTRE_TOLERANCE
    try:
        for tolerance in (kept, 0):
            label_quality.CENTRE_TOLERANCE = tolerance  # the ablation: no pixel tolerance
            out[f"queued_with_tolerance_{tolerance}px"] = judge(pairs)[
                "images_queued_by_labels_alone"
            ]
    finally:
        label_quality.CENTRE_TOLERANCE = kept
    return out


def judge(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The score's label terms over (labels, mask) pairs (module docstring)."""
    from regrasp.refine.label_quality import action_group_scores
    from regrasp.workflows.rounds.predicting import score

    pairs = [(g, m) for g, m in pairs if len(g)]
    action = [action_group_scores(g, m) for g, m in pairs]
    labels = np.concatenate([g for g, _ in pairs])
    index = np.repeat(np.arange(len(pairs)), [len(g) for g, _ in pairs])
    scored = score(
        [np.zeros((0, 6)) for _ in pairs],
        labels,
        index,
        threshold=0.2,
        flag="score",
        masks=[m for _, m in pairs],
    )
    kinds = [q["kind"] for q, f in zip(scored.quality, scored.flagged, strict=True) if f]
    return {
        **agreement(pairs),
        "labels": len(labels),
        "labels_along_the_object": float(np.mean(np.concatenate(action) == 0.0)),
        "labels_half_wrong": float(np.mean(np.concatenate(action) == 0.5)),
        "images_queued_by_labels_alone": int(scored.flagged.sum()),
        "queued_by_kind": {k: kinds.count(k) for k in sorted(set(kinds))},
    }


if __name__ == "__main__":
    main()
