"""The embedded stack's wiring and the demo's presentation, without starting anything."""

from __future__ import annotations

import json
import stat

import pytest

from regrasp.demo import (
    RoundRow,
    StackPorts,
    ensure_admin,
    local_stack,
    round_table,
    write_charts,
)
from regrasp.platform.errors import InvalidInput
from regrasp.platform.settings import DEV_SECRET, load_settings


def test_the_stack_generates_secrets_once_and_never_passes_an_admin_password(tmp_path):
    s = load_settings(data_dir=tmp_path / "data")
    base = {"PATH": "/usr/bin", "REGRASP_ADMIN_PASSWORD": "given-in-env", "PYTHONPATH": "/x"}
    first = local_stack(s, ports=StackPorts(1, 2, 3, 4), base_env=base)
    again = local_stack(s, ports=StackPorts(1, 2, 3, 4), base_env=base)
    env = first.env
    assert env["REGRASP_SECRET_KEY"] not in ("", DEV_SECRET)
    assert env["REGRASP_SERVICE_API_KEY"] not in ("", DEV_SECRET, env["REGRASP_SECRET_KEY"])
    assert again.env["REGRASP_SECRET_KEY"] == env["REGRASP_SECRET_KEY"]  # reused, not new
    assert first.service_key == env["REGRASP_SERVICE_API_KEY"]
    secrets_file = tmp_path / "data" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert "REGRASP_ADMIN_PASSWORD" not in env
    assert json.loads(env["REGRASP_INFERENCE_URLS"]) == ["http://127.0.0.1:3"]
    assert env["REGRASP_DATABASE_URL"] == s.database_url
    assert env["PYTHONPATH"].split(":") == [str(first.root), "/x"]
    names = [p.name for p in first.specs()]
    assert names == ["orchestrator", "trainer", "worker", "inference", "review_ui"]
    assert [p.name for p in first.specs(ui=False)][-1] == "inference"
    assert all(p.health_url for p in first.specs() if p.name != "worker")


def test_secrets_set_in_the_environment_win(tmp_path):
    s = load_settings(data_dir=tmp_path, secret_key="k" * 40, service_api_key="s" * 40)
    env = local_stack(s, ports=StackPorts(), base_env={}).env
    assert env["REGRASP_SECRET_KEY"] == "k" * 40
    assert env["REGRASP_SERVICE_API_KEY"] == "s" * 40


def test_ports_must_be_distinct():
    with pytest.raises(InvalidInput):
        StackPorts(8000, 8000, 3000, 8501)


def test_the_first_admin_is_created_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'regrasp.db'}"
    password = ensure_admin(url, username="admin", password=None, mode="development")
    assert password is not None and len(password) >= 16
    assert ensure_admin(url, username="admin", password=None, mode="development") is None


def test_table_and_charts_from_rows(tmp_path):
    rows = [
        RoundRow(1, 0, 1, flagged=10, labels_added=3, images_removed=2, accuracy=0.5),
        RoundRow(2, 1, 2, flagged=6, labels_added=1, images_removed=1, accuracy=0.6),
        RoundRow("final", 2, accuracy=0.7, clean_accuracy=0.65),
    ]
    rows[0].decisions.update(true_negative=5, annotation_error=2, missing_label=3)
    table = round_table(rows)
    assert table.row_count == 3
    written = write_charts(rows, tmp_path / "charts")
    assert {p.name for p in written} == {
        "flagged.png",
        "decisions.png",
        "changes.png",
        "accuracy.png",
        "rounds.json",
    }
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "charts" / "rounds.json").read_text())
    assert [r["round"] for r in saved] == [1, 2, "final"]
    assert saved[0]["decisions"]["annotation_error"] == 2
    assert saved[2]["clean_test_accuracy"] == 0.65
