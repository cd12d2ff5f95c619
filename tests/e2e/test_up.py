"""`regrasp up` as a real process: four healthy services, the printed admin, a review, a
clean Ctrl-C with no process left behind, and a second start that reuses the state.

The demo data is shrunk (30 images of 128² px) so that round 1 reaches review quickly on
a loaded 2-core machine; the command, its supervisor and the services are the real ones.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from regrasp.api.review import DecisionCreate
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.demo import free_ports

#: A long end-to-end run: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

REGRASP = Path(sys.executable).with_name("regrasp")
#: Bounds that only stop a hung test; nothing is timed.
WAIT_S = 300.0


class Up:
    """One `regrasp up` process and the lines it printed."""

    def __init__(self, data_dir: Path, ports: list[int], cwd: Path) -> None:
        self.ports = ports
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("REGRASP_")},
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": "1",
            "BENTOML_DO_NOT_TRACK": "true",
        }
        o, t, i, u = ports
        self.proc = subprocess.Popen(
            [str(REGRASP), "up", "--data-dir", str(data_dir)]
            + ["--orchestrator-port", str(o), "--trainer-port", str(t)]
            + ["--inference-port", str(i), "--ui-port", str(u)]
            + ["--images", "30", "--size", "128", "--device", "cpu"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the test signals this process only, like a terminal would
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode(errors="replace").rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None:
                pytest.fail(f"regrasp up exited ({self.proc.returncode}):\n{self.text()[-4000:]}")
            time.sleep(0.2)
        pytest.fail(f"no line matching {pattern!r}:\n{self.text()[-4000:]}")

    def tree(self) -> list[psutil.Process]:
        """The command and every process under it (the services and their workers)."""
        me = psutil.Process(self.proc.pid)
        return [me, *me.children(recursive=True)]

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=120)

    def kill(self) -> None:
        if self.proc.poll() is None:
            for p in self.tree():
                p.kill()
            self.proc.wait()


def _gone(processes: list[psutil.Process]) -> list[str]:
    """The processes still running (zombies count as gone: only a parent can reap them)."""
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def up(tmp_path):
    started: list[Up] = []

    def start() -> Up:
        u = Up(tmp_path / "data", ports, tmp_path)
        started.append(u)
        return u

    ports = free_ports(4)
    yield start
    for u in started:
        u.kill()


def test_up_runs_the_stack_reviews_and_stops_cleanly(up, tmp_path):
    first = up()
    password = first.wait_for(r"admin\s+'admin' / (\S+)\s+\(generated").group(1)
    first.wait_for(r"Ctrl-C stops everything")
    o, t, i, u = first.ports
    for url in (
        f"http://127.0.0.1:{o}/readyz",
        f"http://127.0.0.1:{t}/healthz",
        f"http://127.0.0.1:{i}/readyz",
        f"http://127.0.0.1:{u}/_stcore/health",
    ):
        assert httpx.get(url, timeout=10).status_code == 200, url
    assert httpx.get(f"http://127.0.0.1:{o}/docs", timeout=10).status_code == 200

    flagged = int(first.wait_for(r"round \d+ is reviewing: (\d+) flagged images").group(1))
    with OrchestratorClient(f"http://127.0.0.1:{o}", timeout=60.0) as api:
        api.login("admin", password)
        (dataset,) = api.list_datasets()
        assert dataset.name == "demo" and dataset.image_count == 30
        (rnd,) = api.list_rounds()
        # The console states the real count, and the queue holds every flagged image.
        assert flagged == rnd.counts.flagged == rnd.counts.items > 0
        reviewed = 0
        while reviewed < 3:
            item = api.claim_next(rnd.id)
            assert item is not None, "round 1 has fewer than 3 flagged images"
            decision = DecisionCreate(
                item_version=item.version, decision="true_negative", seconds_taken=1.0
            )
            api.decide(item.id, decision)
            reviewed += 1
        assert api.review_stats(rnd.id).decided == 3

    # One framed summary; the services' own output went to their log files, not here.
    text = first.text()
    assert text.count("┌─ regrasp is up") == 1 and "│ state " in text
    assert not any(line.startswith(("orchestrator |", "trainer |")) for line in first.lines)
    # While it waits, a line when the round moves on, none repeated (ProgressLines).
    waiting = [
        line for line in first.lines if re.match(r"regrasp: round \d+ is (train|predict)", line)
    ]
    assert len(waiting) == len(set(waiting)), waiting
    logs = tmp_path / "data" / "logs"
    assert {"orchestrator.log", "trainer.log", "worker.log"} <= {p.name for p in logs.iterdir()}
    shown = subprocess.run(
        [str(REGRASP), "logs", "orchestrator", "-n", "5", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0 and 0 < len(shown.stdout.splitlines()) <= 5, shown

    tree = first.tree()
    assert len(tree) >= 6  # the command, four services, a worker (and their children)
    assert first.interrupt() == 0, first.text()[-3000:]
    assert _gone(tree) == []
    assert "Traceback" not in first.text()

    # Second start on the same folder: no new admin, no new dataset, same password.
    second = up()
    second.wait_for(r"1 dataset\(s\) here already; no demo data imported")
    assert "(generated" not in second.text()
    assert "importing the demo dataset" not in second.text()
    with OrchestratorClient(f"http://127.0.0.1:{o}", timeout=60.0) as api:
        api.login("admin", password)
        assert [d.name for d in api.list_datasets()] == ["demo"]
        assert len(api.list_rounds()) == 1
    tree = second.tree()
    assert second.interrupt() == 0
    assert _gone(tree) == []
