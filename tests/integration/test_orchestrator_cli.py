"""The `regrasp` CLI as a thin client of a real orchestrator served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from regrasp.api.accounts import UserCreate
from regrasp.cli import app as cli
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.grasp.rectangles import parse_jacquard, read_jacquard
from regrasp.platform.errors import InvalidInput, NotFound, PermissionDenied, Unauthenticated
from regrasp.platform.settings import Settings
from services.orchestrator.app import create_app
from tests.harness.inprocess import serve

ADMIN = ("lead", "lead-password-1")


@pytest.fixture
def server(tmp_path, sqlite_url, file_store_url):
    """The orchestrator on a free port; yields its URL."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        object_store_url=file_store_url,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
        import_workers=2,
    )
    with serve(create_app(settings), "orchestrator") as url:
        yield url


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


def _main(*args: str):
    """The real `regrasp` entry point in a subprocess: bad input is one line, exit 1."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "regrasp.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_api_keys_have_scopes_and_robot_keys_reach_nothing_here(server):
    auth = ["--url", server, "--username", ADMIN[0], "--password", ADMIN[1]]
    r = _run("api-key", "create", "ur5-cell-1", *auth)
    assert r.exit_code == 0, r.output
    assert "(robot)" in r.output
    robot_key = r.output.splitlines()[0].split(": ")[-1]
    assert robot_key.startswith("rgk_")
    r = _run("api-key", "create", "ci", "--scope", "service", *auth)
    assert r.exit_code == 0 and "(service)" in r.output, r.output
    r = _main("api-key", "create", "x", "--scope", "root", *auth)
    assert r.returncode == 1 and r.stderr.startswith("error: unknown API key scope 'root'")
    assert len(r.stderr.splitlines()) == 1, r.stderr

    listed = _run("api-key", "list", *auth)
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.output.splitlines()]
    assert [(f[1], f[2], f[5]) for f in lines] == [
        ("ur5-cell-1", "robot", "active"),
        ("ci", "service", "active"),
    ]
    assert robot_key not in listed.output  # never the secret again

    # The robot's key is refused by the orchestrator, one line, exit 1.
    r = _main("model", "list", "--url", server, "--token", robot_key)
    assert r.returncode == 1 and "robot API key" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr

    key_id = lines[0][0]
    r = _run("api-key", "revoke", key_id, *auth)
    assert r.exit_code == 0, r.output
    with OrchestratorClient(server) as api, pytest.raises(Unauthenticated):
        api.use_credential(robot_key)
        api.list_models()
    with OrchestratorClient(server) as api, pytest.raises(NotFound):
        api.login(*ADMIN)
        api.revoke_api_key(999)


def test_cli_model_list_show_promote(server, sqlite_url):
    from regrasp.platform.store.db.engine import make_engine, session_scope
    from regrasp.platform.store.db.tables import Model, ModelStatus

    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        old = Model(
            architecture="ggcnn",
            in_channels=1,
            status=ModelStatus.ready,
            weights_key="models/1/weights.pt",
            metrics={"test_accuracy": 0.61, "val_accuracy": 0.7},
        )
        new = Model(
            architecture="mobilenet_v2",
            in_channels=1,
            status=ModelStatus.ready,
            weights_key="models/2/weights.pt",
            metrics={"val_accuracy": 0.82},
        )
        training = Model(architecture="ggcnn", in_channels=1, status=ModelStatus.training)
        s.add_all([old, new, training])
        s.flush()
        ids = old.id, new.id, training.id
    engine.dispose()
    auth = ["--url", server, "--username", ADMIN[0], "--password", ADMIN[1]]

    r = _main("model", "show", *auth)
    assert r.returncode == 1 and "no model is promoted to 'production'" in r.stderr, r.stderr
    r = _run("model", "list", *auth)
    assert r.exit_code == 0, r.output
    rows = {int(line.split("\t")[0]): line for line in r.output.splitlines()}
    assert "accuracy 0.610 (test_accuracy)" in rows[ids[0]]
    assert "accuracy 0.820 (val_accuracy)" in rows[ids[1]]
    assert "aliases -" in rows[ids[0]] and "accuracy -" in rows[ids[2]]

    r = _run("model", "promote", str(ids[0]), *auth)
    assert r.exit_code == 0 and f"production -> model {ids[0]}" in r.output, r.output
    with OrchestratorClient(server) as api, pytest.raises(InvalidInput, match="only a ready"):
        api.login(*ADMIN)
        api.promote_model(ids[2])
    r = _run("model", "show", *auth)
    assert r.exit_code == 0 and r.output.startswith(f"{ids[0]}\t"), r.output
    assert "aliases production" in r.output and "test_accuracy: 0.61" in r.output

    r = _run("model", "promote", str(ids[1]), *auth)
    assert r.exit_code == 0, r.output
    r = _run("model", "list", *auth)
    rows = {int(line.split("\t")[0]): line for line in r.output.splitlines()}
    assert "aliases production" in rows[ids[1]] and "aliases -" in rows[ids[0]]

    # Annotators read the registry but cannot promote.
    with OrchestratorClient(server) as api:
        api.login(*ADMIN)
        api.create_user(UserCreate(username="ana", password="annotator-pw", role="annotator"))
    ana = ["--url", server, "--username", "ana", "--password", "annotator-pw"]
    assert _run("model", "list", *ana).exit_code == 0
    with OrchestratorClient(server) as api, pytest.raises(PermissionDenied):
        api.login("ana", "annotator-pw")
        api.promote_model(ids[0])
