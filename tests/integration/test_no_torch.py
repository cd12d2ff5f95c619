"""The orchestrator, the trainer API and the review UI run without torch.

DESIGN.md: the orchestrator and the review UI must not need torch installed (their images
install none), and the trainer API only queues jobs (its workers train). Each is started
in a fresh interpreter, as far as can be done in one process, and the test fails if any
`torch` module was imported on the way:

- orchestrator and trainer API: the app built by `create_app` over an SQLite file, its
  lifespan run (migrations, background runners), `/healthz` and the OpenAPI schema served;
- review UI: every module of the app imported, and the Streamlit app run once under
  AppTest (the sign-in page, against an orchestrator that is not there).

A fresh interpreter per service, because this test process has torch loaded already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness.ports import closed_port
from tests.harness.processes import ROOT

_SETTINGS = """
from pathlib import Path
from regrasp.platform.settings import Settings

root = Path({tmp!r})
settings = Settings(
    data_dir=root / "data",
    database_url=f"sqlite:///{{root / 'regrasp.db'}}",
    object_store_url=f"file://{{root / 'objects'}}",
    trainer_url={closed!r},
    inference_urls=[{closed!r}],
)
"""

_APP = """
from fastapi.testclient import TestClient
from {module} import create_app

with TestClient(create_app(settings)) as client:
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200
"""

_UI = """
import importlib
import pkgutil

import services.review_ui as ui
from streamlit.testing.v1 import AppTest

for info in pkgutil.iter_modules(ui.__path__, "services.review_ui."):
    if not info.ispkg and info.name != "services.review_ui.streamlit_app":
        importlib.import_module(info.name)
at = AppTest.from_file({app!r}, default_timeout=120).run()
assert not at.exception, at.exception
"""

_REPORT = """
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))))
"""


def _probe(tmp_path: Path, body: str) -> list[str]:
    """Run settings + `body` + the report in a fresh interpreter; the torch modules loaded."""
    closed = f"http://127.0.0.1:{closed_port()}"
    script = textwrap.dedent(_SETTINGS.format(tmp=str(tmp_path), closed=closed)) + body + _REPORT
    env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "REGRASP_ORCHESTRATOR_URL": closed,
        "REGRASP_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["services.orchestrator.app", "services.trainer.app"])
def test_the_api_services_run_without_importing_torch(module: str, tmp_path: Path) -> None:
    loaded = _probe(tmp_path, textwrap.dedent(_APP.format(module=module)))
    assert loaded == [], f"{module} imported {loaded[:5]}"


def test_the_review_ui_runs_without_importing_torch(tmp_path: Path) -> None:
    app = str(ROOT / "services" / "review_ui" / "streamlit_app.py")
    loaded = _probe(tmp_path, textwrap.dedent(_UI.format(app=app)))
    assert loaded == [], f"the review UI imported {loaded[:5]}"
