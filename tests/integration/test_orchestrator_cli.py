"""The `regrasp` CLI as a thin client of a real orchestrator served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
import zipfile

import numpy as np
import pytest
import uvicorn
from typer.testing import CliRunner

from regrasp.cli import app as cli
from regrasp.clients.orchestrator import OrchestratorClient, UserCreate
from regrasp.errors import PermissionDenied, Unauthenticated
from regrasp.grasps import parse_jacquard, read_jacquard
from regrasp.settings import Settings
from services.orchestrator.app import create_app

ADMIN = ("lead", "lead-password-1")


@pytest.fixture
def server(tmp_path, sqlite_url, file_store_url):
    """The orchestrator on a free port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        object_store_url=file_store_url,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
        import_workers=2,
    )
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


def _run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_cli_import_versions_diff_export(server, jacquard_samples, tmp_path):
    auth = ["--url", server, "--username", ADMIN[0], "--password", ADMIN[1]]
    r = _run("import", "samples", "--jacquard", str(jacquard_samples), *auth)
    assert r.exit_code == 0, r.output
    assert "uploaded" in r.output and "imported" in r.output

    r = _run("versions", "samples", *auth)
    assert r.exit_code == 0, r.output
    n_images = len(list(jacquard_samples.glob("*/*_grasps.txt")))
    assert f"{n_images}" in r.output.splitlines()[1]

    r = _run("diff", "samples", "0", "0", *auth)
    assert r.exit_code == 0 and "+0 / -0 grasps" in r.output, r.output

    out = tmp_path / "samples.zip"
    r = _run("export", "samples", "--output", str(out), *auth)
    assert r.exit_code == 0, r.output
    with zipfile.ZipFile(out) as archive:
        for path in sorted(jacquard_samples.glob("*/*_grasps.txt")):
            data = archive.read(f"samples-v0/{path.parent.name}/{path.name}").decode()
            np.testing.assert_array_equal(parse_jacquard(data), read_jacquard(path))

    r = _run("export", "samples", "--to-store", *auth)
    assert r.exit_code == 0 and "exports/samples/v0/" in r.output, r.output

    r = _run("import", "bad", "--jacquard", str(tmp_path / "nowhere"), *auth)
    assert r.exit_code == 1 and "nowhere" in r.output


def test_client_errors_are_domain_errors(server):
    with OrchestratorClient(server) as api:
        with pytest.raises(Unauthenticated):
            api.me()
        api.login(*ADMIN)
        api.create_user(UserCreate(username="ana", password="annotator-pw", role="annotator"))
    with OrchestratorClient(server) as ana:
        ana.login("ana", "annotator-pw")
        assert ana.me().role == "annotator"
        with pytest.raises(PermissionDenied):
            ana.list_users()


def test_admin_create_bootstraps_in_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRASP_DATABASE_URL", f"sqlite:///{tmp_path / 'boot.db'}")
    r = _run("admin", "create", "boss", "--password", "boss-password")
    assert r.exit_code == 0 and "created admin 'boss'" in r.output, r.output
    r = _run("admin", "create", "boss", "--password", "boss-password")
    assert r.exit_code != 0
