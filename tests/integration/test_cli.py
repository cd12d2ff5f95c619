"""The `regrasp` console command as a user runs it: a real process, real databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

REGRASP = [sys.executable, "-m", "regrasp.cli"]


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REGRASP_")}
    full_env.update(env)
    return subprocess.run(
        [*REGRASP, *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_db_upgrade_and_downgrade_through_the_cli(database_url, tmp_path):
    env = {"REGRASP_DATABASE_URL": database_url}
    up = _run("db", "upgrade", env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert _run("db", "current", env=env, cwd=tmp_path).stdout.strip() != "empty"
    tables = set(sa.inspect(sa.create_engine(database_url)).get_table_names())
    assert {"datasets", "grasps", "images", "jobs", "rounds", "review_items", "api_keys"} <= tables
    down = _run("db", "downgrade", "base", env=env, cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert _run("db", "current", env=env, cwd=tmp_path).stdout.strip() == "empty"


def test_embedded_default_creates_its_folder(tmp_path):
    result = _run("db", "upgrade", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".regrasp" / "regrasp.db").is_file()


@pytest.mark.slow
def test_errors_are_one_line_and_exit_nonzero(tmp_path):
    bad_scheme = _run("db", "current", env={"REGRASP_DATABASE_URL": "mysql://x/y"}, cwd=tmp_path)
    assert bad_scheme.returncode == 1
    assert bad_scheme.stderr.strip().count("\n") == 0 and "known:" in bad_scheme.stderr
    unreachable = _run(
        "db",
        "current",
        env={"REGRASP_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:1/x"},
        cwd=tmp_path,
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error:") and unreachable.stderr.strip().count("\n") == 0
    unsafe = _run("settings", env={"REGRASP_MODE": "deployment"}, cwd=tmp_path)
    assert unsafe.returncode == 1 and "REGRASP_SECRET_KEY" in unsafe.stderr
