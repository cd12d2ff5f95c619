"""Run a few named local processes as one unit: output, restarts, health and a clean stop.

`regrasp up` and `regrasp demo` start the four services (and a trainer worker) on one
machine. They need, from one small component:

- each process started with its own command, environment and working folder, in its own
  process group (session), so that stopping it also stops what it spawned (BentoML's
  workers, Streamlit under its launcher, DataLoader workers) and leaves no orphan;
- its output streamed line by line with a `name |` prefix;
- a crashed process shown (exit code and its last lines) and restarted with an exponential
  backoff that resets once it has stayed up for a while;
- waiting until every process answers its HTTP health URL, failing early with the tail of
  the output of a process that keeps crashing;
- Ctrl-C / SIGTERM stopping everything: SIGTERM to every group, then SIGKILL to the groups
  still alive after a grace period. Some programs put their workers in groups of their own
  (BentoML's arbiter starts each worker with setsid), so the supervisor also follows every
  process's descendants (sampled every `sample_seconds` and right before stopping, with
  psutil when installed) and kills those that outlive their group.

Why not an existing process manager: `honcho` (a Procfile runner) stops every process as
soon as one exits and has no restart; `circus` brings ZeroMQ and a daemon with its own
control socket; `supervisor` (supervisord) is a daemon driven by an INI file and a control
client, not a library to embed in a foreground command. What is needed here is about two
hundred lines over `subprocess` and threads (one watcher thread and one reader thread per
process), with no new dependency. POSIX only (process groups, `killpg`).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from regrasp.platform.errors import InvalidInput, RegraspError

__all__ = [
    "Crash",
    "LogFiles",
    "ProcessFailed",
    "ProcessSpec",
    "Supervisor",
    "kill_tree",
    "stop_on_signals",
]

#: Lines of output kept per process, shown when it crashes.
TAIL_LINES = 40

#: (process name, line without its newline) -> None; called from reader threads.
OutputSink = Callable[[str, str], None]


class ProcessFailed(RegraspError):
    """A supervised process did not come up (crashed repeatedly or never became healthy)."""

    http_status = 503


@dataclass(frozen=True)
class ProcessSpec:
    """One process to supervise.

    command: argv (no shell). env: the complete environment of the process (None: inherit
    this one's). cwd: working folder (None: this one's). health_url: an HTTP URL that
    answers 200 once the process is ready (None: ready once started). restart: restart it
    when it exits while the supervisor runs (a one-shot command sets False).
    """

    name: str
    command: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    health_url: str | None = None
    restart: bool = True

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise InvalidInput(f"process name must be a non-empty word, got {self.name!r}")
        if not self.command:
            raise InvalidInput(f"process {self.name!r} has an empty command")


@dataclass(frozen=True)
class Crash:
    """A supervised process that exited on its own: its exit code (negative: the signal
    that killed it), how long it had run (seconds) and its last output lines."""

    name: str
    returncode: int
    ran_seconds: float
    tail: tuple[str, ...]


@dataclass
class _Slot:
    spec: ProcessSpec
    process: subprocess.Popen[bytes] | None = None
    family: list[Any] = field(default_factory=list)  # psutil.Process of its descendants
    starts: int = 0
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=TAIL_LINES)
    )
    thread: threading.Thread | None = None


class Supervisor:
    """Starts `specs`, restarts crashed ones, and stops all of them cleanly.

        with Supervisor(specs) as sup:       # start() on enter, stop() on exit
            sup.wait_healthy(timeout=300)
            with stop_on_signals() as stop:
                stop.wait()                  # until Ctrl-C / SIGTERM

    output: where each output line goes (default: printed with a `name |` prefix).
    on_crash: called with each `Crash` (default: printed through `output`).
    grace_seconds: how long `stop` waits after SIGTERM before SIGKILL.
    backoff_seconds / max_backoff_seconds: the first restart delay and its cap (doubling).
    stable_seconds: a process that ran this long before crashing restarts after the first
    delay again. sample_seconds: how often each process's descendants are listed.
    """

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        output: OutputSink | None = None,
        on_crash: Callable[[Crash], None] | None = None,
        grace_seconds: float = 10.0,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        stable_seconds: float = 30.0,
        sample_seconds: float = 2.0,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise InvalidInput(f"process names must be unique, got {names}")
        if grace_seconds < 0 or backoff_seconds < 0 or max_backoff_seconds < backoff_seconds:
            raise InvalidInput("grace and backoff seconds must be >= 0, max >= first")
        self._slots = {s.name: _Slot(s) for s in specs}
        self._width = max((len(n) for n in names), default=0)
        self._output = output or self._print
        self._on_crash = on_crash or self._report_crash
        self._grace = grace_seconds
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._stable = stable_seconds
        self._sample = sample_seconds
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._print_lock = threading.Lock()
        self.crashes: list[Crash] = []

    # -- public ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start every process (each watched by its own thread); returns at once."""
        for slot in self._slots.values():
            if slot.thread is not None:
                raise InvalidInput(f"process {slot.spec.name!r} was already started")
            slot.thread = threading.Thread(
                target=self._watch, args=(slot,), name=f"supervise-{slot.spec.name}", daemon=True
            )
            slot.thread.start()

    def wait_healthy(
        self,
        *,
        timeout: float,
        max_crashes: int = 3,
        poll: float = 0.5,
        cancel: threading.Event | None = None,
    ) -> None:
        """Block until every process with a health URL answers 200.

        Raises ProcessFailed (with the process's last lines) when one crashed more than
        `max_crashes` times meanwhile, `timeout` seconds pass first, or `cancel` is set
        (e.g. by `stop_on_signals`: Ctrl-C during a slow start).
        """
        import httpx

        pending = {n: s for n, s in self._slots.items() if s.spec.health_url}
        deadline = time.monotonic() + timeout
        while pending:
            for name, slot in list(pending.items()):
                crashes = sum(1 for c in self.crashes if c.name == name)
                if crashes > max_crashes:
                    raise ProcessFailed(
                        f"{name} crashed {crashes} times while starting; last output:\n"
                        + "\n".join(slot.tail)
                    )
                try:
                    ok = httpx.get(slot.spec.health_url, timeout=2.0).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"--- {n}:\n" + "\n".join(list(s.tail)[-10:]) for n, s in pending.items()
                )
                raise ProcessFailed(
                    f"not healthy after {timeout:.0f} s: {', '.join(pending)}\n{tails}"
                )
            if self._stopping.wait(poll) or (cancel is not None and cancel.is_set()):
                raise ProcessFailed("stopped while waiting for the processes to be healthy")

    def pids(self) -> dict[str, int]:
        """Process ids (= process group ids) of the processes running now."""
        with self._lock:
            return {
                n: s.process.pid
                for n, s in self._slots.items()
                if s.process is not None and s.process.poll() is None
            }

    def starts(self, name: str) -> int:
        """How many times `name` was started (1 + restarts)."""
        return self._slots[name].starts

    def tail(self, name: str) -> list[str]:
        """The last output lines of `name` (all its runs)."""
        return list(self._slots[name].tail)

    def stop(self) -> None:
        """Stop everything: SIGTERM to every process group, SIGKILL after the grace period.

        Idempotent. Returns once every started process has exited and been reaped.
        """
        self._stopping.set()
        with self._lock:
            slots = [s for s in self._slots.values() if s.process is not None]
        family = []
        for slot in slots:
            assert slot.process is not None
            family += _descendants(slot.process.pid) or slot.family
            _signal_group(slot.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._grace
        for slot in slots:
            assert slot.process is not None
            try:
                slot.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Also groups whose leader is gone (their children may still run), and descendants
        # that left the group; they had the grace period to exit with their parent.
        _wait_gone(family, max(0.0, deadline - time.monotonic()))
        for slot in slots:
            assert slot.process is not None
            if _group_alive(slot.process.pid):
                _signal_group(slot.process.pid, signal.SIGKILL)
            slot.process.wait()
        _kill(family)
        for slot in self._slots.values():
            if slot.thread is not None:
                slot.thread.join(timeout=5.0)

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- private --------------------------------------------------------------------------

    def _watch(self, slot: _Slot) -> None:
        """Run the slot's process until stop; restart it after a crash, with backoff."""
        delay = self._backoff
        while not self._stopping.is_set():
            started = time.monotonic()
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    slot.process = self._spawn(slot.spec)
                except OSError as exc:
                    slot.process = None
                    self._line(slot, f"cannot start {list(slot.spec.command)}: {exc}")
                    return
                slot.starts += 1
            reader = threading.Thread(target=self._read, args=(slot, slot.process), daemon=True)
            reader.start()
            code = self._wait_sampling(slot, slot.process)
            reader.join(timeout=5.0)
            if self._stopping.is_set():
                return
            # Whatever it spawned dies with it, so the restart starts from a clean slate.
            _signal_group(slot.process.pid, signal.SIGKILL)
            _kill(slot.family)
            ran = time.monotonic() - started
            crash = Crash(slot.spec.name, code, ran, tuple(slot.tail))
            self.crashes.append(crash)
            self._on_crash(crash)
            if not slot.spec.restart:
                return
            if ran >= self._stable:
                delay = self._backoff
            self._line(slot, f"restarting in {delay:.1f} s (start {slot.starts + 1})")
            if self._stopping.wait(delay):
                return
            delay = min(self._max_backoff, max(delay * 2, 0.1))

    def _wait_sampling(self, slot: _Slot, proc: subprocess.Popen[bytes]) -> int:
        """Wait for `proc` to exit, listing its descendants now and then (once it is gone
        they are orphans nobody can find)."""
        while True:
            try:
                return proc.wait(timeout=self._sample)
            except subprocess.TimeoutExpired:
                slot.family = _descendants(proc.pid) or slot.family

    def _spawn(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(spec.command),
            cwd=spec.cwd,
            env=dict(spec.env) if spec.env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C reaches us only; killpg
        )

    def _read(self, slot: _Slot, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self._line(slot, raw.decode(errors="replace").rstrip("\r\n"))
        proc.stdout.close()

    def _line(self, slot: _Slot, line: str) -> None:
        slot.tail.append(line)
        self._output(slot.spec.name, line)

    def _print(self, name: str, line: str) -> None:
        with self._print_lock:
            print(f"{name:<{self._width}} | {line}", flush=True)

    def _report_crash(self, crash: Crash) -> None:
        how = f"signal {-crash.returncode}" if crash.returncode < 0 else f"code {crash.returncode}"
        self._output(crash.name, f"*** exited with {how} after {crash.ran_seconds:.1f} s")


class LogFiles:
    """An output sink writing each process's lines to `<folder>/<name>.log` (appending),
    for commands that keep the console for themselves. `close()` when done."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._files: dict[str, TextIO] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        with self._lock:
            out = self._files.get(name)
            if out is None:
                out = self._files[name] = (self.folder / f"{name}.log").open("a")
            out.write(line + "\n")
            out.flush()

    def close(self) -> None:
        with self._lock:
            for out in self._files.values():
                out.close()
            self._files.clear()


@contextmanager
def stop_on_signals(
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[threading.Event]:
    """An event set by Ctrl-C / SIGTERM while inside the block (main thread only); the
    previous handlers come back on exit. A second Ctrl-C raises KeyboardInterrupt."""
    event = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        event.set()

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield event
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt (main thread only), as Ctrl-C
    does, so the caller's `with`/`finally` clean-up runs: a `regrasp demo` stopped by
    `kill` stops the services it started instead of leaving them running."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def kill_tree(pid: int) -> None:
    """SIGKILL process `pid` (a group leader), its group and every descendant, at once.

    Killing the group alone is not enough: BentoML's arbiter starts its workers with
    setsid, and a worker outside the group goes on serving until it notices its parent is
    gone. Returns once the descendants are gone; the caller reaps `pid` itself.
    """
    family = _descendants(pid)
    _signal_group(pid, signal.SIGKILL)
    _kill(family)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _descendants(pid: int) -> list[Any]:
    """psutil.Process handles of `pid`'s descendants ([] without psutil, or when gone).

    Handles, not numbers: psutil checks the creation time, so a reused pid is never hit.
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with the services' dependencies
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _wait_gone(family: list[Any], timeout: float) -> None:
    if not family:
        return
    import psutil

    psutil.wait_procs(family, timeout=timeout)


def _kill(family: list[Any]) -> None:
    if not family:
        return
    import psutil

    for proc in family:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(family, timeout=5.0)
