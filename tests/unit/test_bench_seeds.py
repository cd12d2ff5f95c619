"""bench/seeds.py: the across-seed summary of efficacy runs reads the runs' own numbers."""

from __future__ import annotations

import json
import math

import pytest

from tests.harness.benches import bench_module


@pytest.fixture(scope="module")
def seeds():
    with bench_module("seeds") as module:
        yield module


def _run(left: int, removed: int, repaired: int, harmed: int, acc: float, holds: list) -> list:
    rows = [{"noise_interval_holds_complete": h, "accuracy": 0.0} for h in holds]
    rows.append(
        {
            "corrupted_by_kind": {
                "part_only": {"left": left, "removed": 0, "repaired": repaired},
                "wrong_action": {"left": 0, "removed": removed, "repaired": 0},
            },
            "clean_harmed": harmed,
            "accuracy": acc,
        }
    )
    return rows


def test_summary_counts_each_seed_and_pairs_accuracy_by_seed(seeds) -> None:
    loops = {
        0: {"insample": _run(10, 50, 40, 1, 0.80, [True, False])},
        1: {"insample": _run(5, 45, 50, 0, 0.70, [True, True])},
        2: {"insample": _run(20, 40, 40, 3, 0.75, [True])},
    }
    nones = {
        0: {"none": [{"accuracy": 0.78}]},
        1: {"none": [{"accuracy": 0.66}, {"accuracy": 0.70}]},
    }
    cleans = {1: {"clean": [{"accuracy": 0.875}]}}
    out = seeds.summarise(loops, nones, "insample", cleans)

    by_seed = {s["seed"]: s for s in out["seeds"]}
    assert by_seed[0]["removed_or_repaired"] == 90 and by_seed[0]["corrupted"] == 100
    assert by_seed[2]["share_removed_or_repaired"] == pytest.approx(0.8)
    assert by_seed[1]["none_accuracy"] == pytest.approx(0.68)  # the mean of the seed's repeats
    assert by_seed[2]["none_accuracy"] is None  # no `none` run for seed 2: left out of the test
    assert out["share_removed_or_repaired"]["seeds_at_or_above_90"] == 2
    assert out["clean_harmed_max"] == 3
    assert (out["interval_holds"], out["interval_rounds"]) == (4, 5)
    acc = out["accuracy"]
    assert acc["seeds"] == 2
    assert acc["difference_points"] == pytest.approx(100 * ((0.80 + 0.70) / 2 - (0.78 + 0.68) / 2))
    bound = out["bound"]  # only seed 1 has a clean-label run: the share is over that seed
    assert bound["seeds"] == 1 and bound["loop_share_of_clean"] == pytest.approx(0.70 / 0.875)
    assert bound["none_seeds"] == 1 and bound["none_share_of_clean"] == pytest.approx(0.68 / 0.875)
    assert bound["final_seeds"] == 0 and bound["final_share_of_clean"] is None  # no repeats


def test_bound_shares_of_the_final_trainings_use_the_seeds_with_a_bound(seeds) -> None:
    """The final trainings' share is over the seeds with both a bound and repeats."""
    loops = {
        0: {"insample": _run(1, 9, 0, 0, 0.80, [True])},
        1: {"insample": _run(1, 9, 0, 0, 0.70, [True])},
    }
    loops[0]["insample"][-1]["final_accuracies"] = [0.80, 0.90]
    loops[1]["insample"][-1]["final_accuracies"] = [0.60, 0.70]
    nones = {0: {"none": [{"accuracy": 0.84}]}, 1: {"none": [{"accuracy": 0.60}]}}
    cleans = {0: {"clean": [{"accuracy": 0.90}, {"accuracy": 0.92}]}}  # seed 0 only
    bound = seeds.summarise(loops, nones, "insample", cleans)["bound"]
    assert bound["final_seeds"] == 1 and bound["final_share_of_clean"] == pytest.approx(0.85 / 0.91)
    assert bound["none_share_of_clean"] == pytest.approx(0.84 / 0.91)


def test_summary_names_a_missing_variant(seeds) -> None:
    with pytest.raises(ValueError, match="no variant 'oof'"):
        seeds.summarise({0: {"insample": _run(1, 1, 1, 0, 0.5, [])}}, {}, "oof")


def test_welch_matches_the_t_distribution(seeds) -> None:
    """t = -1 with 8 degrees of freedom has a two-sided p of 0.3466 (tables)."""
    t, p = seeds.welch([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0, 6.0])
    assert t == pytest.approx(-1.0)
    assert p == pytest.approx(0.3466, abs=1e-4)
    assert all(math.isnan(x) for x in seeds.welch([1.0], [2.0, 3.0]))


def test_cli_writes_the_summary_and_rejects_a_bad_pair(seeds, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    results = {"insample": _run(1, 9, 0, 0, 0.6, [True]), "none": [{"accuracy": 0.5}]}
    (run / "results.json").write_text(json.dumps(results))
    seeds.main(["--loop", f"7={run}", "--none", f"7={run}", "--json", str(tmp_path / "s.json")])
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["seeds"][0]["seed"] == 7 and written["seeds"][0]["none_accuracy"] == 0.5
    with pytest.raises(SystemExit, match="expected SEED=DIR"):
        seeds.main(["--loop", "seven"])
    with pytest.raises(SystemExit, match="no results.json"):
        seeds.main(["--loop", f"1={tmp_path / 'missing'}"])


def test_cli_names_a_missing_variant_in_one_line(seeds, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"insample": _run(1, 9, 0, 0, 0.6, [True])}))
    with pytest.raises(SystemExit) as exited:
        seeds.main(["--loop", f"3={run}", "--variant", "oof"])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith("seed 3: the run has no variant 'oof'")
    assert "Traceback" not in last and not last.endswith('"')


def test_final_trainings_are_compared_with_none_per_seed_and_across(seeds) -> None:
    """A loop run with --final-repeats is compared like for like: its final labels' trainings
    against none's trainings of the same seed, and their mean across seeds."""
    first = _run(10, 50, 40, 0, 0.60, [True])
    first[-1]["final_accuracies"] = [0.60, 0.80, 0.82]
    second = _run(10, 50, 40, 0, 0.70, [True])
    second[-1]["final_accuracies"] = [0.70, 0.72, 0.74]
    loops = {
        0: {"insample": first},
        1: {"insample": second},
        2: {"insample": _run(1, 9, 0, 0, 0.5, [])},
    }
    nones = {s: {"none": [{"accuracy": a} for a in (0.76, 0.78, 0.80)]} for s in (0, 1, 2)}
    out = seeds.summarise(loops, nones, "insample")

    by_seed = {s["seed"]: s for s in out["seeds"]}
    assert by_seed[0]["final_accuracy"] == pytest.approx((0.60 + 0.80 + 0.82) / 3)
    assert by_seed[0]["none_accuracies"] == [0.76, 0.78, 0.80]
    t, p = seeds.welch([0.60, 0.80, 0.82], [0.76, 0.78, 0.80])
    assert by_seed[0]["final_vs_none"] == {"welch_t": pytest.approx(t), "welch_p": pytest.approx(p)}
    assert by_seed[2]["final_accuracy"] is None  # no final trainings: no per-seed test
    assert by_seed[2]["final_vs_none"] == {"welch_t": None, "welch_p": None}
    final = out["accuracy_final"]  # only seeds 0 and 1 have final trainings
    assert final["seeds"] == 2
    assert final["loop_mean"] == pytest.approx(((0.60 + 0.80 + 0.82) / 3 + 0.72) / 2)
    assert final["difference_points"] == pytest.approx(100 * (final["loop_mean"] - 0.78))
    # the one-training comparison still uses every seed's own last-round model
    assert out["accuracy"]["seeds"] == 3
    assert out["accuracy"]["loop_mean"] == pytest.approx((0.60 + 0.70 + 0.5) / 3)


def test_trainings_pair_by_training_seed(seeds) -> None:
    """The loop's last-round model is its seed-0 training; with final trainings, seed i is
    final_accuracies[i]. Each pairs with none's training of the same seed only."""
    plain = _run(1, 9, 0, 0, 0.70, [])  # one training: seed 0
    repeated = _run(1, 9, 0, 0, 0.60, [])
    repeated[-1]["final_accuracies"] = [0.60, 0.90]  # seeds 0 and 1
    loops = {0: {"insample": plain}, 1: {"insample": repeated}, 2: {"insample": plain}}
    nones = {
        0: {"none": [{"seed": 0, "accuracy": 0.66}, {"seed": 1, "accuracy": 0.90}]},
        1: {"none": [{"seed": 0, "accuracy": 0.62}, {"seed": 1, "accuracy": 0.80}]},
        2: {"none": [{"seed": 0, "accuracy": 0.71}]},
    }
    out = seeds.summarise(loops, nones, "insample")
    by_seed = {s["seed"]: s for s in out["seeds"]}
    assert by_seed[0]["paired_training_seeds"] == [0]  # none's seed-1 training has no pair
    assert by_seed[0]["paired_difference_points"] == pytest.approx(4.0)
    assert by_seed[1]["paired_training_seeds"] == [0, 1]
    assert by_seed[1]["paired_difference_points"] == pytest.approx(((-2.0) + 10.0) / 2)
    paired = out["accuracy_paired"]
    assert (paired["seeds"], paired["trainings"]) == (3, 4)
    assert paired["difference_points"] == pytest.approx((4.0 + 4.0 - 1.0) / 3)
    t, p = seeds.paired_t([4.0, 4.0, -1.0])
    assert (paired["t"], paired["p"]) == (pytest.approx(t), pytest.approx(p))
    # an out-of-fold loop's round accuracy is a mean of fold models: it pairs with nothing
    oof = seeds.summarise({0: {"oof": plain}}, nones, "oof")
    assert oof["seeds"][0]["paired_training_seeds"] == []
    assert oof["accuracy_paired"]["seeds"] == 0


def test_paired_t_matches_the_t_distribution(seeds) -> None:
    """Differences 1, 2, 3, 4, 5 − 2 (mean 1, sd 1.58, n 5): t = 1.414, df 4, p = 0.2302."""
    t, p = seeds.paired_t([-1.0, 0.0, 1.0, 2.0, 3.0])
    assert t == pytest.approx(1.0 / (math.sqrt(2.5) / math.sqrt(5)))
    assert p == pytest.approx(0.2302, abs=1e-4)
    assert all(math.isnan(x) for x in seeds.paired_t([1.0]))
    assert seeds.paired_t([2.0, 2.0]) == (math.inf, 0.0)
