"""The process supervisor with real child processes: restart after a crash, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from regrasp.platform.errors import InvalidInput
from regrasp.platform.supervisor import ProcessFailed, ProcessSpec, Supervisor, kill_tree

PY = sys.executable
#: Bounds that only stop a hung test; nothing is timed.
WAIT_S = 30.0
#: Starts two sleeping grandchildren, one in its group and one that leaves it (as
#: BentoML's workers do), and writes their pids to argv[1].
SPAWNER = (
    "import subprocess, sys, time, pathlib; "
    "cmd = [sys.executable, '-c', 'import time; time.sleep(600)']; "
    "g = subprocess.Popen(cmd); h = subprocess.Popen(cmd, start_new_session=True); "
    "p = pathlib.Path(sys.argv[1]); t = p.with_suffix('.tmp'); "
    "t.write_text(f'{g.pid} {h.pid}'); t.rename(p); time.sleep(600)"
)


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        with self._lock:
            self.lines.append((name, line))

    def of(self, name: str) -> list[str]:
        with self._lock:
            return [line for n, line in self.lines if n == name]


def test_a_crashing_process_is_reported_and_restarted(tmp_path):
    counter = tmp_path / "runs"
    crasher = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        "print(f'run {n} failing', flush=True); sys.exit(3)"
    )
    out = Lines()
    crashes = []
    sup = Supervisor(
        [
            ProcessSpec("crasher", [PY, "-c", crasher, str(counter)]),
            ProcessSpec(
                "steady", [PY, "-c", "import time; print('up', flush=True); time.sleep(60)"]
            ),
        ],
        output=out,
        on_crash=crashes.append,
        backoff_seconds=0.05,
        max_backoff_seconds=0.2,
        grace_seconds=5.0,
    )
    with sup:
        _until(lambda: len(crashes) >= 2, "two crashes")
        _until(lambda: sup.starts("crasher") >= 3, "the restart after the second crash")
        assert sup.starts("steady") == 1
    mine = [c for c in crashes if c.name == "crasher"]
    assert len(mine) >= 2 and {c.returncode for c in mine} == {3}
    assert int(counter.read_text()) >= 2
    assert "run 1 failing" in mine[0].tail
    assert "run 2 failing" in out.of("crasher")
    assert any(line.startswith("restarting in") for line in out.of("crasher"))
    assert "up" in out.of("steady")
    assert not [c for c in crashes if c.name == "steady"]  # stopped, not crashed


@pytest.mark.slow
def test_stop_kills_every_process_group_and_escalates_to_sigkill(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring SIGTERM', flush=True); time.sleep(600)"
    )
    out = Lines()
    sup = Supervisor(
        [
            ProcessSpec("spawner", [PY, "-c", SPAWNER, str(pid_file)]),
            ProcessSpec("stubborn", [PY, "-c", stubborn]),
        ],
        output=out,
        grace_seconds=0.5,
    )
    sup.start()
    try:
        _until(pid_file.exists, "the grandchildren")
        _until(lambda: "ignoring SIGTERM" in out.of("stubborn"), "the stubborn child")
        pids = sup.pids()
        grandchildren = [int(p) for p in pid_file.read_text().split()]
        assert set(pids) == {"spawner", "stubborn"}
        assert all(_alive(p) for p in [*pids.values(), *grandchildren])
    finally:
        sup.stop()
    assert not sup.pids()
    for pid in [*pids.values(), *grandchildren]:
        _until(lambda pid=pid: not _alive(pid), f"process {pid} to be gone")
    assert sup.crashes == []
    assert sup.starts("stubborn") == 1  # stopping is not a crash: no restart


def test_kill_tree_kills_at_once_descendants_that_left_the_group(tmp_path):
    pid_file = tmp_path / "grandchildren.pid"
    proc = subprocess.Popen([PY, "-c", SPAWNER, str(pid_file)], start_new_session=True)
    try:
        _until(pid_file.exists, "the grandchildren")
        grandchildren = [int(p) for p in pid_file.read_text().split()]
        assert all(_alive(p) for p in grandchildren)
        kill_tree(proc.pid)
        assert proc.wait(timeout=WAIT_S) == -signal.SIGKILL
        # Gone when kill_tree returns: no grace, nothing left serving.
        assert [p for p in grandchildren if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_wait_healthy_fails_with_the_output_of_a_crash_loop():
    sup = Supervisor(
        [
            ProcessSpec(
                "broken",
                [PY, "-c", "import sys; print('bad config: no port', flush=True); sys.exit(2)"],
                health_url="http://127.0.0.1:9/health",
            )
        ],
        output=lambda n, line: None,
        backoff_seconds=0.01,
        max_backoff_seconds=0.02,
    )
    with sup, pytest.raises(ProcessFailed, match="bad config: no port"):
        sup.wait_healthy(timeout=WAIT_S, max_crashes=2, poll=0.05)


def test_specs_are_validated():
    with pytest.raises(InvalidInput):
        ProcessSpec("two words", [PY])
    with pytest.raises(InvalidInput):
        ProcessSpec("empty", [])
    with pytest.raises(InvalidInput, match="unique"):
        Supervisor([ProcessSpec("a", [PY]), ProcessSpec("a", [PY])])


def test_sigterm_runs_the_clean_up_of_the_block(tmp_path) -> None:
    """`kill` of a `regrasp demo` must stop what it started: inside the block SIGTERM
    unwinds like Ctrl-C, so the `finally` clean-up runs."""
    marker = tmp_path / "cleaned"
    script = (
        "import time\n"
        "from regrasp.platform.supervisor import interrupt_on_sigterm\n"
        "with interrupt_on_sigterm():\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        f"        open({str(marker)!r}, 'w').write('yes')\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=30)
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "yes"
