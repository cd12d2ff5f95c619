"""bench/collapse.py: the collapse census counts what its trainings did, nothing else."""

from __future__ import annotations

import pytest

from tests.harness.benches import bench_module


@pytest.fixture(scope="module")
def collapse():
    with bench_module("collapse") as module:
        yield module


def _ok(accuracy: float, restarts: int = 0) -> dict:
    return {"collapsed": False, "accuracy": accuracy, "restarts": [{}] * restarts}


DEAD = {"collapsed": True, "error": "training collapsed in its only attempt"}


def test_summary_scores_a_collapse_as_zero_and_counts_what_the_guard_recovered(collapse):
    rows = [
        {"lr": 0.001, "seed": 0, "guard_off": _ok(0.8)},
        {"lr": 0.001, "seed": 1, "guard_off": DEAD, "guard_on": _ok(0.6, restarts=1)},
        {"lr": 0.003, "seed": 0, "guard_off": DEAD, "guard_on": DEAD},
        {"lr": 0.003, "seed": 1, "guard_off": _ok(0.5)},
    ]
    summary = collapse.summarise(rows)
    assert summary["0.001"] == {
        "trainings": 2,
        "collapsed_guard_off": 1,
        "failed_guard_on": 0,
        "restarts_guard_on": 1,
        "mean_accuracy_guard_off": pytest.approx(0.4),
        "mean_accuracy_guard_on": pytest.approx(0.7),
    }
    assert summary["0.003"]["failed_guard_on"] == 1
    assert summary["0.003"]["mean_accuracy_guard_on"] == pytest.approx(0.25)


def test_seed_lists_and_ranges(collapse):
    assert collapse._seeds("0-3") == [0, 1, 2, 3]
    assert collapse._seeds("4,7") == [4, 7]


def test_bad_arguments_end_with_one_line(collapse, capsys):
    with pytest.raises(SystemExit) as raised:
        collapse.main(["--lrs", "fast"])
    assert raised.value.code == 2
    assert "--lrs takes numbers" in capsys.readouterr().err.strip().splitlines()[-1]
