"""`regrasp demo` as a real process: it starts the stack, runs a round unattended, prints
the table a lab lead reads, writes the charts and the rows, and leaves no process behind.

Shrunk (40 images, one round, two epochs, 40 held-out images) so that it ends in about a
minute; the command, its supervisor, the services and the simulated reviewer are the real
ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

REGRASP = Path(sys.executable).with_name("regrasp")
#: Bounds that only stop a hung test; nothing is timed.
WAIT_S = 600.0


def test_the_demo_runs_a_round_and_reports_it(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REGRASP_")},
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    charts = tmp_path / "charts"
    done = subprocess.run(
        [str(REGRASP), "demo", "--data-dir", str(tmp_path / "data"), "-o", str(charts)]
        + ["--rounds", "1", "--images", "40", "--epochs", "2", "--eval-images", "40"]
        + ["--device", "cpu"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert "40 clean images of unseen objects" in out
    assert "60% corrupted (wrong_action, one_orientation)" in out  # the demo's default data
    assert "flag 'score'" in out  # and its default flag
    assert "drawing up to 3 missing grasps an image" in out  # the reviewer draws, as people do
    assert "1 rounds" in out and "│ final │" in out
    assert "docs/benchmarks.md" in out  # the closing line points to the numbers at scale

    rows = json.loads((charts / "rounds.json").read_text())
    assert [r["round"] for r in rows] == [1, "final"]
    first = rows[0]
    assert first["base_version"] == 0 and first["result_version"] == 1
    decided = sum(first["decisions"].values())
    assert decided == first["flagged"]  # the simulated reviewer decided every flagged image
    for row in rows:
        assert row["clean_test_accuracy"] is not None
        assert 0.0 <= row["clean_test_accuracy"] <= 1.0
    assert {p.name for p in charts.glob("*.png")} >= {"accuracy.png", "decisions.png"}
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
