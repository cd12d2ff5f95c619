"""Benchmark: the label-quality score's walks along closing lines, against an earlier commit.

    python bench/mask_walks.py --json bench/results/mask_walks.json

`regrasp.refine.label_quality` walks each candidate grasp's closing line over the object
mask, half a pixel a step: `fits_object` to find the contacts, `grasp_coverage` (through
`_chords`) to size candidates to the object. On a real Jacquard image (1024², openings of
~60 px) these walks are most of the score's cost. This times today's module against the
module as it was at `--baseline` (read with `git show`, loaded beside today's in this
process, so both run side by side on the same machine state), best of `--repeats`
alternating passes, on:

- the real samples (`--jacquard`, default the team's `../shared/data/jacquard_samples`
  beside the repository), labels and masks as Jacquard ships them;
- clean and corrupted synthetic images of the efficacy bench's size (128²);

and checks that both versions give the same values: `grasp_coverage` per image, and
`fits_object` on the labels and on random rectangles (anywhere in the image, and centred
on the object) per image. A speed-up that changed a value would be a different rule, not
a faster one. About a minute; needs the repository's git history.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _output import emit  # noqa: E402
from real_labels import (  # noqa: E402
    add_jacquard_option,
    best_of,
    pairs_by_kind,
    real_pairs,
    require_samples,
)

MODULE = "shared/regrasp/refine/label_quality.py"

Pairs = list[tuple[np.ndarray, np.ndarray]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="e4da026", help="Commit whose module is the baseline.")
    add_jacquard_option(p, "required: the large-image case is theirs")
    p.add_argument("--synthetic", type=int, default=300, help="Synthetic images (25% corrupted).")
    p.add_argument("--random", type=int, default=2000, help="Random rectangles per image.")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    require_samples(args.jacquard)
    from regrasp.refine import label_quality as today

    before = baseline_module(args.baseline)
    started = time.perf_counter()
    real = [(g, m) for g, m in real_pairs(args.jacquard) if len(g)]
    synthetic = synthetic_pairs(args.synthetic)
    out: dict[str, Any] = {
        "command": "python bench/mask_walks.py " + " ".join(sys.argv[1:]),
        "machine": platform.platform(),
        "baseline": args.baseline,
    }
    for name, pairs in (("real", real), ("synthetic_128", synthetic)):
        out[name] = {
            "images": len(pairs),
            "grasp_coverage": timed(before.grasp_coverage, today.grasp_coverage, pairs, args),
            "fits_object_on_labels": timed(before.fits_object, today.fits_object, pairs, args),
            "same_values": same_values(before, today, pairs, args.random),
        }
    out["seconds"] = round(time.perf_counter() - started, 1)
    emit(out, args.json)


def baseline_module(commit: str) -> ModuleType:
    """`label_quality` as it was at `commit`, loaded as a module of its own."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:{MODULE}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"cannot read {MODULE} at {commit}: {e.stderr.strip()}") from None
    path = Path(tempfile.mkdtemp(prefix="bench-mask-walks-")) / "label_quality_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("label_quality_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def synthetic_pairs(images: int) -> Pairs:
    """(labels, mask) of the efficacy bench's kind of images, a quarter corrupted."""
    from regrasp.data.synthetic.generate import generate_dataset

    folder = Path(tempfile.mkdtemp(prefix="bench-mask-walks-")) / "synth"
    generate_dataset(folder, images=images, size=128, seed=0, corrupt_fraction=0.25, compress=False)
    return [(g, m) for v in pairs_by_kind(folder).values() for g, m in v if len(g)]


def timed(
    before: Callable[..., Any], now: Callable[..., Any], pairs: Pairs, args: argparse.Namespace
) -> dict[str, Any]:
    """Seconds over all pairs, best of `repeats` alternating passes, and the ratio."""
    best = best_of(before, now, pairs, repeats=args.repeats)
    return {
        "seconds_before": round(best["before"], 3),
        "seconds_now": round(best["now"], 3),
        "ms_per_image_now": round(1000 * best["now"] / len(pairs), 2),
        "speedup": round(best["before"] / best["now"], 2),
    }


def same_values(before: ModuleType, now: ModuleType, pairs: Pairs, count: int) -> dict[str, Any]:
    """How many values differ between the two versions (all counts should be 0)."""
    rng = np.random.default_rng(0)
    coverage_diff = fits_diff = rectangles = fitting = 0
    for g, m in pairs:
        a, b = before.grasp_coverage(g, m), now.grasp_coverage(g, m)
        coverage_diff += int(not (a == b or (np.isnan(a) and np.isnan(b))))
        probes = np.vstack([g, random_rectangles(m, count, rng)])
        fa, fb = before.fits_object(probes, m), now.fits_object(probes, m)
        fits_diff += int((fa != fb).sum())
        rectangles += len(probes)
        fitting += int(fb.sum())
    return {
        "grasp_coverage_differs": coverage_diff,
        "fits_object_rectangles": rectangles,
        "fits_object_fitting": fitting,
        "fits_object_differs": fits_diff,
    }


def random_rectangles(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Half anywhere in (and a little beyond) the image, half centred on the object."""
    h, w = mask.shape
    half = count // 2
    anywhere = np.stack(
        [
            rng.uniform(-20, w + 20, half),
            rng.uniform(-20, h + 20, half),
            rng.uniform(-90, 90, half),
            rng.uniform(1, w / 4, half),
            rng.uniform(1, w / 10, half),
        ],
        axis=1,
    )
    on = anywhere.copy()
    ys, xs = np.nonzero(mask)
    pick = rng.integers(0, len(xs), half)
    on[:, 0] = xs[pick] + rng.uniform(-1, 1, half)
    on[:, 1] = ys[pick] + rng.uniform(-1, 1, half)
    return np.vstack([anywhere, on])


if __name__ == "__main__":
    main()
