"""The unit tier starts no processes: a test that tries fails, naming what it started.

Every way Python starts a process ends in `_posixsubprocess.fork_exec` (subprocess holds
it as `subprocess._fork_exec`; multiprocessing's spawn and forkserver call it), `os.fork`
(multiprocessing's fork) or `os.posix_spawn` (subprocess, where it can); those are
replaced for the duration of each unit test. A test that needs a process
belongs in tests/integration (or tests/e2e for whole services).
"""

from __future__ import annotations

import _posixsubprocess
import os
import subprocess

import pytest


@pytest.fixture(autouse=True, scope="session")
def _font_cache() -> None:
    """Matplotlib builds its font cache on first use by running `fc-list`: on a fresh
    machine that happens here, once, before the guard below, not inside a test."""
    from matplotlib import font_manager

    font_manager.findfont("DejaVu Sans")


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    def refuse(what: str):  # type: ignore[no-untyped-def]
        def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError(
                f"{request.node.nodeid} started a process ({what}): unit tests start none; "
                "move it to tests/integration"
            )

        return refused

    monkeypatch.setattr(_posixsubprocess, "fork_exec", refuse("fork_exec"))
    monkeypatch.setattr(subprocess, "_fork_exec", refuse("subprocess"))
    monkeypatch.setattr(os, "fork", refuse("os.fork"))
    monkeypatch.setattr(os, "posix_spawn", refuse("os.posix_spawn"))
    monkeypatch.setattr(os, "posix_spawnp", refuse("os.posix_spawnp"))
