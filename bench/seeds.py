"""Benchmark summary: the efficacy loop across seeds, from committed `bench/efficacy.py` runs.

Issue 17 asks for its bars over several seeds, and one efficacy run is one seed (about
25 minutes here). This reads the `results.json` of several runs made with the same
settings and puts them side by side: per seed, the share of corrupted pool images removed
or repaired after the last round, the clean images harmed, how often the noise interval
held the truth, and the final test accuracy of the loop against no refinement (`none`,
trained on the corrupted labels of the same seed) and against the clean-label bound
(`clean`, trained on the true labels). Across seeds it gives Welch's t and p-value of loop
against none, the test the issue names for the accuracy bar, and the loop's mean as a share
of the bound's.

Where a loop run was made with `--final-repeats N`, its final labels were also trained with
N seeds exactly as `none` is; per seed the summary then also compares those trainings with
none's (Welch over trainings: is the difference larger than training noise?), and across
seeds it uses their mean as the loop's accuracy in a second test (`accuracy_final`).

Trainings differ most by their training seed (the weights' initialisation and the data
order), and every loop round trains with seed 0, as `none`'s first training does. So the
summary also pairs them: per data seed, the loop's and none's trainings with the same
training seed (the loop's last-round model is seed 0, its final trainings seeds 0..N-1),
their mean difference, and across data seeds the paired t test of those differences
(`accuracy_paired`): the same labels' noise, the initialisation held fixed.

Nothing is trained or reviewed here; the numbers are the runs' own.

Run: `python bench/seeds.py --loop 0=docs/efficacy/census-3000 ... --none 0=DIR ...
--clean 0=DIR ... [--variant insample] [--json out.json]` (each value SEED=DIR, a run's
output folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _output import emit  # noqa: E402
from efficacy import paired_t, welch  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for kind, what in (
        ("loop", "A loop run, by seed."),
        ("none", "A run holding the `none` variant, by seed (may be the loop's own folder)."),
        ("clean", "A run holding the `clean` variant (the clean-label bound), by seed."),
    ):
        parser.add_argument(f"--{kind}", action="append", default=[], metavar="SEED=DIR", help=what)
    parser.add_argument("--variant", default="insample", help="The loop variant to read.")
    parser.add_argument("--json", type=Path, help="Write the summary here.")
    args = parser.parse_args(argv)
    if not args.loop:
        parser.error("give at least one --loop SEED=DIR")
    runs = {kind: dict(map(_pair, getattr(args, kind))) for kind in ("loop", "none", "clean")}
    loaded = {
        kind: {seed: _results(path) for seed, path in folders.items()}
        for kind, folders in runs.items()
    }
    try:
        out = summarise(loaded["loop"], loaded["none"], args.variant, loaded["clean"])
    except ValueError as e:  # a run without the variant: one line, not a traceback
        parser.error(str(e))
    out["runs"] = runs
    emit(out, args.json)


def summarise(
    loops: dict[int, dict[str, Any]],
    nones: dict[int, dict[str, Any]],
    variant: str,
    cleans: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per-seed rows and the across-seed figures of the loop `variant` (see the module)."""
    seeds = []
    for seed, results in sorted(loops.items()):
        if variant not in results:
            raise ValueError(f"seed {seed}: the run has no variant {variant!r}")
        none = nones.get(seed, {}).get("none", [])
        clean = (cleans or {}).get(seed, {}).get("clean", [])
        seeds.append(_seed_row(seed, results[variant], none, clean, variant))
    shares = [s["share_removed_or_repaired"] for s in seeds]
    with_none = [s for s in seeds if s["none_accuracy"] is not None]
    loop_acc = [s["accuracy"] for s in with_none]
    none_acc = [s["none_accuracy"] for s in with_none]
    with_final = [s for s in with_none if s["final_accuracy"] is not None]
    bound = [s for s in seeds if s["clean_accuracy"] is not None]
    # The loop's last-round model against the bound, then the like-for-like shares: the
    # loop's final trainings and none's, each a mean over training seeds, against the
    # bound on the seeds that have both.
    final_b = [s for s in bound if s["final_accuracy"] is not None]
    none_b = [s for s in bound if s["none_accuracy"] is not None]
    return {
        "variant": variant,
        "seeds": seeds,
        "share_removed_or_repaired": {
            "min": min(shares),
            "max": max(shares),
            "mean": float(np.mean(shares)),
            "seeds_at_or_above_90": sum(x >= 0.9 for x in shares),
        },
        "clean_harmed_max": max(s["clean_harmed"] for s in seeds),
        "interval_holds": sum(s["interval_holds"] for s in seeds),
        "interval_rounds": sum(s["interval_rounds"] for s in seeds),
        "accuracy": _compare(loop_acc, none_acc),
        # The same test with the loop's like-for-like number (its final labels trained
        # with several seeds, as none is) on the seeds that have it.
        "accuracy_final": _compare(
            [s["final_accuracy"] for s in with_final], [s["none_accuracy"] for s in with_final]
        ),
        "accuracy_paired": _paired(seeds),
        "bound": {  # the seeds with a clean-label run
            "seeds": len(bound),
            "loop_mean": _mean(bound, "accuracy"),
            "clean_mean": _mean(bound, "clean_accuracy"),
            "loop_share_of_clean": _share(bound, "accuracy"),
            "final_seeds": len(final_b),
            "final_share_of_clean": _share(final_b, "final_accuracy"),
            "none_seeds": len(none_b),
            "none_share_of_clean": _share(none_b, "none_accuracy"),
        },
    }


def _seed_row(
    seed: int,
    rows: list[dict[str, Any]],
    none_rows: list[dict[str, Any]],
    clean_rows: list[dict[str, Any]],
    variant: str,
) -> dict[str, Any]:
    """One data seed: its loop run's last round against its none and clean trainings."""
    last = rows[-1]
    kinds = last["corrupted_by_kind"].values()
    corrupted = sum(k["left"] + k["removed"] + k["repaired"] for k in kinds)
    dealt = sum(k["removed"] + k["repaired"] for k in kinds)
    holds = [
        r["noise_interval_holds_complete"]
        for r in rows
        if r.get("noise_interval_holds_complete") is not None
    ]
    none = [r["accuracy"] for r in none_rows]
    clean = [r["accuracy"] for r in clean_rows]
    final = [float(a) for a in last.get("final_accuracies") or []]
    # Training seed → accuracy. final_accuracies[i] was trained with seed i; without
    # them an in-sample loop's last-round model is its seed-0 training (an out-of-fold
    # round's accuracy is its fold models' mean, which pairs with nothing).
    if final:
        loop_by_seed = dict(enumerate(final))
    else:
        loop_by_seed = {} if variant == "oof" else {0: float(last["accuracy"])}
    none_by_seed = {int(r.get("seed", i)): float(r["accuracy"]) for i, r in enumerate(none_rows)}
    common = sorted(set(loop_by_seed) & set(none_by_seed))
    diffs = [loop_by_seed[k] - none_by_seed[k] for k in common]
    t_final, p_final = welch(final, none) if final and none else (np.nan, np.nan)
    return {
        "seed": seed,
        "corrupted": corrupted,
        "removed_or_repaired": dealt,
        "share_removed_or_repaired": dealt / corrupted if corrupted else None,
        "clean_harmed": last["clean_harmed"],
        "interval_holds": int(sum(holds)),
        "interval_rounds": len(holds),
        "accuracy": last["accuracy"],
        "none_accuracy": float(np.mean(none)) if none else None,
        "clean_accuracy": float(np.mean(clean)) if clean else None,
        "none_accuracies": none,
        "final_accuracies": final,
        "final_accuracy": float(np.mean(final)) if final else None,
        "final_vs_none": {"welch_t": _num(t_final), "welch_p": _num(p_final)},
        "paired_training_seeds": common,
        "paired_difference_points": 100 * float(np.mean(diffs)) if diffs else None,
    }


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    return float(np.mean([s[key] for s in rows])) if rows else None


def _share(rows: list[dict[str, Any]], key: str) -> float | None:
    """Mean of `key` over the mean of the clean-label bound, on the same seeds."""
    clean = _mean(rows, "clean_accuracy")
    return _mean(rows, key) / clean if clean else None


def _compare(loop_acc: list[float], none_acc: list[float]) -> dict[str, Any]:
    """Loop against none across seeds: means, difference in points, Welch's t and p."""
    t, p = welch(loop_acc, none_acc)
    return {
        "seeds": len(loop_acc),
        "loop_mean": float(np.mean(loop_acc)) if loop_acc else None,
        "none_mean": float(np.mean(none_acc)) if none_acc else None,
        "difference_points": 100 * float(np.mean(loop_acc) - np.mean(none_acc))
        if loop_acc
        else None,
        "welch_t": _num(t),
        "welch_p": _num(p),
    }


def _paired(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Across data seeds: the loop's mean difference from none at equal training seeds,
    and the paired t test of the per-seed differences."""
    diffs = [
        s["paired_difference_points"] for s in seeds if s["paired_difference_points"] is not None
    ]
    t, p = paired_t(diffs)
    return {
        "seeds": len(diffs),
        "trainings": sum(len(s["paired_training_seeds"]) for s in seeds),
        "difference_points": float(np.mean(diffs)) if diffs else None,
        "t": _num(t),
        "p": _num(p),
    }


def _num(x: float) -> float | None:
    """JSON has no NaN: an undefined statistic (too few samples) is null."""
    return None if np.isnan(x) else float(x)


def _pair(text: str) -> tuple[int, str]:
    """`SEED=DIR` → (seed, folder)."""
    seed, sep, path = text.partition("=")
    if not sep or not seed.strip().isdigit() or not path:
        raise SystemExit(f"expected SEED=DIR, got {text!r}")
    return int(seed), path


def _results(folder: str) -> dict[str, Any]:
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise SystemExit(f"no results.json in {folder}")
    return json.loads(path.read_text())


if __name__ == "__main__":
    main()
