"""Static checks of the deployment files: docker-compose.yml, deploy/docker/*.Dockerfile,
deploy/compose/*.yml and the Kubernetes manifests in deploy/k8s/.

No Docker engine and no cluster are needed: the files are parsed and cross-checked
against `regrasp.platform.settings`, the services' code and each other — service names, ports and
URLs, images and the Dockerfiles that build them, secrets, GPU reservations, commands.
`docker compose config` and `kubectl kustomize` run on the files in
`tests/integration/test_deploy_tools.py` (they start processes; unit tests start none).

Image naming convention (deploy/README.md): `regrasp/<image>` is built from
`deploy/docker/<image>.Dockerfile`.
"""

from __future__ import annotations

import colorsys
import importlib
import json
import os
import re
import secrets
import tomllib
import typing
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr
from typer.testing import CliRunner

from regrasp.platform.errors import ConfigError
from regrasp.platform.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER_DIR = ROOT / "deploy" / "docker"
COMPOSE_EXTRAS = sorted((ROOT / "deploy" / "compose").glob("*.yml"))
K8S_DIR = ROOT / "deploy" / "k8s"
SECRET_TEMPLATE = K8S_DIR / "secret.template.yaml"

#: Our images (deploy/docker/<image>.Dockerfile) and the extra each installs.
IMAGES = {"orchestrator": "orchestrator", "trainer": "trainer", "inference": "inference",
          "review-ui": "ui"}  # fmt: skip
#: Images that must run without torch.
TORCHLESS = ("orchestrator", "review-ui")
#: Services (compose service = Kubernetes workload name) → the image they run.
SERVICE_IMAGES = {
    "orchestrator": "orchestrator",
    "db-upgrade": "orchestrator",
    "trainer": "trainer",
    "trainer-worker": "trainer",
    "inference": "inference",
    "review-ui": "review-ui",
}
#: Kubernetes workloads that run a compose service under another name (its second pool).
COMPOSE_SERVICE = {"inference-batch": "inference"}
#: Kubernetes workloads → the image they run: the compose services plus the batch pool.
K8S_IMAGES = SERVICE_IMAGES | {"inference-batch": "inference"}
#: The services that serve HTTP, with their liveness and readiness paths.
PROBES = {
    "orchestrator": ("/healthz", "/readyz"),
    "trainer": ("/healthz", "/readyz"),
    "inference": ("/livez", "/readyz"),
    "review-ui": ("/_stcore/health", "/_stcore/health"),
}
K8S_PROBES = PROBES | {"inference-batch": PROBES["inference"]}
GPU_SERVICES = {"inference", "trainer-worker"}
K8S_GPU_WORKLOADS = GPU_SERVICES | {"inference-batch"}
PUBLISHED = {"inference", "review-ui"}
PLACEHOLDER = "change-me"
#: Variables outside regrasp.platform.settings that hold secrets.
OTHER_SECRET_VARS = {"POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
                     "S3_ACCESS_KEY", "S3_SECRET_KEY"}  # fmt: skip


# --- settings: which variables exist, which are secret, which ports the URLs name --------


def _env_name(field: str) -> str:
    return f"REGRASP_{field.upper()}"


SETTINGS_VARS = {_env_name(name) for name in Settings.model_fields}


def _is_secret(annotation: object) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


#: Settings that hold secrets: every SecretStr field, and the database URL (its password).
SECRET_SETTINGS = {
    _env_name(name) for name, field in Settings.model_fields.items() if _is_secret(field.annotation)
} | {"REGRASP_DATABASE_URL"}
SECRET_VARS = SECRET_SETTINGS | OTHER_SECRET_VARS


def _default(field: str) -> object:
    info = Settings.model_fields[field]
    return info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]


#: Port of each service as the settings' default URLs name it.
PORTS = {
    "orchestrator": urlsplit(_default("orchestrator_url")).port,
    "trainer": urlsplit(_default("trainer_url")).port,
    "inference": _default("inference_port"),
    "review-ui": urlsplit(_default("review_ui_url")).port,
}
PORTS["inference-batch"] = PORTS["inference"]
PORTS["trainer-worker"] = None  # serves no HTTP
PORTS["db-upgrade"] = None


def test_settings_defaults_agree_on_the_inference_port() -> None:
    assert {urlsplit(u).port for u in _default("inference_urls")} == {PORTS["inference"]}
    assert all(isinstance(PORTS[name], int) for name in PROBES)


# --- compose ------------------------------------------------------------------------------


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@cache
def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example: not KEY=value: {line!r}"
        assert key not in values, f".env.example sets {key} twice"
        values[key] = value
    return values


_VAR = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z_]\w*)(?P<rest>[^}]*)\}|\$(?P<plain>[A-Za-z_]\w*)")


class _ComposeLoader(yaml.SafeLoader):
    """Safe loading that reads compose's merge tags (`!reset`, `!override`) as plain data."""


_ComposeLoader.add_multi_constructor(
    "!",
    lambda loader, _tag, node: (
        loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)
    ),
)


def load_compose_file(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # noqa: S506 - a SafeLoader


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def compose_variables(data: object) -> dict[str, set[str]]:
    """Variables a loaded compose file interpolates → the modifiers they are used with."""
    found: dict[str, set[str]] = {}
    for m in _VAR.finditer("\n".join(_strings(data))):
        if m.group(0) == "$$":
            continue
        name = m.group("braced") or m.group("plain")
        found.setdefault(name, set()).add((m.group("rest") or "")[:2])
    return found


def interpolate(value: object, env: dict[str, str]) -> object:
    """Compose's interpolation of one value: ${V}, ${V:-d}, ${V-d}, ${V:?m}, ${V?m}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("plain")
        rest = m.group("rest") or ""
        have = env.get(name)
        if rest.startswith((":?", "?")):
            if have is None or (rest.startswith(":") and not have):
                raise KeyError(f"required variable {name} unset: {rest[2:]}")
            return have
        if rest.startswith(":-"):
            return have if have else rest[2:]
        if rest.startswith("-"):
            return have if have is not None else rest[1:]
        assert not rest, f"unsupported interpolation ${{{name}{rest}}}"
        return have or ""

    return _VAR.sub(one, value)


def services() -> dict[str, dict]:
    return compose()["services"]


def ours() -> dict[str, dict]:
    """Compose services that run one of our images."""
    return {n: s for n, s in services().items() if s.get("image", "").startswith("regrasp/")}


def service_env(name: str, env: dict[str, str] | None = None) -> dict[str, str]:
    raw = services()[name].get("environment", {})
    assert isinstance(raw, dict), f"{name}: environment must be a mapping"
    if env is None:
        return raw
    return {k: str(v) for k, v in interpolate(raw, env).items()}


def _listen_port(argv: list[str]) -> int | None:
    for flag in ("--port", "--server.port"):
        if flag in argv:
            return int(argv[argv.index(flag) + 1])
    return None


def test_compose_parses_and_names_every_service() -> None:
    assert set(SERVICE_IMAGES) <= set(services())
    assert {"postgres", "minio", "create-bucket"} <= set(services())
    assert set(ours()) == set(SERVICE_IMAGES)


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    used: set[str] = set()
    for path in [COMPOSE, *COMPOSE_EXTRAS]:
        names = set(compose_variables(load_compose_file(path)))
        missing = names - set(env_example())
        assert not missing, f"{path.name} uses variables .env.example does not document: {missing}"
        used |= names
    assert set(env_example()) <= used, f"stale in .env.example: {set(env_example()) - used}"


def test_secrets_are_required_never_defaulted() -> None:
    variables = compose_variables(compose())
    secret_refs = {n: mods for n, mods in variables.items() if n in SECRET_VARS}
    assert {"POSTGRES_PASSWORD", "REGRASP_SECRET_KEY", "REGRASP_SERVICE_API_KEY"} <= set(
        secret_refs
    )
    for name, modifiers in secret_refs.items():
        assert modifiers == {":?"}, f"{name} must always be ${{{name}:?message}}: {modifiers}"


def test_no_literal_secret_in_compose() -> None:
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            value = str(value)
            if key in SECRET_VARS and key != "REGRASP_DATABASE_URL":
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{name}.{key} = {value!r}"
            password = urlsplit(value).password if "://" in value else None
            if password is not None:
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", password), (
                    f"{name}.{key}: literal password"
                )


def test_env_example_secrets_are_placeholders() -> None:
    documented = {k: v for k, v in env_example().items() if k in SECRET_VARS}
    assert documented, "no secret documented in .env.example"
    for key, value in documented.items():
        assert PLACEHOLDER in value, f".env.example {key}={value!r} is not a placeholder"


def test_compose_sets_only_known_settings() -> None:
    for name, service in services().items():
        unknown = {k for k in service.get("environment", {}) if k.startswith("REGRASP_")}
        unknown -= SETTINGS_VARS
        assert not unknown, (
            f"{name} sets variables regrasp.platform.settings does not read: {unknown}"
        )
    assert {k for k in env_example() if k.startswith("REGRASP_")} <= SETTINGS_VARS


def _strong_env() -> dict[str, str]:
    """.env.example with every placeholder replaced by a strong random value."""
    return {k: (secrets.token_hex(24) if PLACEHOLDER in v else v) for k, v in env_example().items()}


def _load(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for key in [k for k in os.environ if k.startswith("REGRASP_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


BACKENDS = [n for n in SERVICE_IMAGES if n != "review-ui"]


@pytest.mark.parametrize("name", BACKENDS)
def test_compose_backend_settings_load_in_deployment_mode(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = service_env(name, _strong_env())
    assert env["REGRASP_MODE"] == "deployment"
    settings = _load(monkeypatch, env)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.object_store_url.startswith("s3://")


@pytest.mark.parametrize(
    "variable",
    [
        "REGRASP_SECRET_KEY",
        "REGRASP_SERVICE_API_KEY",
        "REGRASP_S3_ACCESS_KEY",
        "REGRASP_S3_SECRET_KEY",
        "REGRASP_ADMIN_PASSWORD",
        "POSTGRES_PASSWORD",
    ],
)
def test_orchestrator_refuses_each_placeholder_of_env_example(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _strong_env()
    env[variable] = env_example()[variable]
    with pytest.raises(ConfigError):
        _load(monkeypatch, service_env("orchestrator", env))


def test_review_ui_gets_no_secret_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    env = service_env("review-ui", _strong_env())
    assert not set(env) & SECRET_VARS
    loaded = _load(monkeypatch, env)
    assert loaded.orchestrator_url == env["REGRASP_ORCHESTRATOR_URL"]
    # A lab's UI never shows a traceback, although it runs in development mode.
    assert loaded.ui_error_details is False
    k8s = _k8s_env("review-ui", {})
    assert k8s.get("REGRASP_UI_ERROR_DETAILS") == "false"


@pytest.mark.parametrize("name", sorted(SERVICE_IMAGES))
def test_compose_service_builds_its_image_by_convention(name: str) -> None:
    service = services()[name]
    image = service["image"].split(":")[0].removeprefix("regrasp/")
    assert image == SERVICE_IMAGES[name]
    assert (DOCKER_DIR / f"{image}.Dockerfile").is_file()
    build = service.get("build")
    assert build, f"{name} must name its build (compose would try to pull regrasp/{image})"
    assert Path(build["context"]) == Path(".")
    assert build["dockerfile"] == f"deploy/docker/{image}.Dockerfile"


@pytest.mark.parametrize("name", sorted(SERVICE_IMAGES))
def test_compose_commands_run_repo_code_on_the_service_port(name: str) -> None:
    argv = services()[name]["command"]
    assert isinstance(argv, list), f"{name}: use the exec form"
    _assert_repo_command(argv)
    assert _listen_port(argv) == PORTS[name]


def test_compose_urls_name_services_and_their_ports() -> None:
    env = service_env("orchestrator", _strong_env())
    targets = {
        "REGRASP_ORCHESTRATOR_URL": [env["REGRASP_ORCHESTRATOR_URL"]],
        "REGRASP_TRAINER_URL": [env["REGRASP_TRAINER_URL"]],
        "REGRASP_INFERENCE_URLS": json.loads(env["REGRASP_INFERENCE_URLS"]),
    }
    assert targets["REGRASP_INFERENCE_URLS"], "no inference URL"
    for urls in targets.values():
        for url in urls:
            parts = urlsplit(url)
            assert parts.hostname in services(), f"{url}: no such compose service"
            listens = _listen_port(services()[parts.hostname]["command"])
            assert listens is not None and parts.port == listens
    ui = service_env("review-ui", _strong_env())
    assert ui["REGRASP_ORCHESTRATOR_URL"] == env["REGRASP_ORCHESTRATOR_URL"]
    db = urlsplit(env["REGRASP_DATABASE_URL"])
    assert (db.hostname, db.port) == ("postgres", 5432)
    assert env["REGRASP_S3_ENDPOINT"] == "minio:9000"
    bucket = urlsplit(env["REGRASP_OBJECT_STORE_URL"]).netloc
    assert bucket == service_env("create-bucket", _strong_env())["S3_BUCKET"]


def test_only_ui_and_inference_are_published_on_loopback_by_default() -> None:
    published = {n for n, s in services().items() if s.get("ports")}
    assert published == PUBLISHED
    for name in PUBLISHED:
        for mapping in interpolate(services()[name]["ports"], env_example()):
            address, _host_port, container_port = str(mapping).split(":")
            assert address == "127.0.0.1"
            assert int(container_port) == PORTS[name]
        for mapping in interpolate(services()[name]["ports"], {}):  # nothing set: defaults
            assert str(mapping).startswith("127.0.0.1:")


@pytest.mark.parametrize("name", sorted(services()))
def test_compose_gpu_reservations(name: str) -> None:
    devices = (services()[name].get("deploy", {}).get("resources", {}).get("reservations", {})).get(
        "devices", []
    )
    gpus = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d["capabilities"]]
    assert bool(gpus) == (name in GPU_SERVICES)


def test_compose_dependencies_wait_on_real_conditions() -> None:
    for name, service in services().items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services(), f"{name} depends on unknown {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                check = services()[target].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), f"{target}: no healthcheck"
            elif condition == "service_completed_successfully":
                assert services()[target].get("restart") == "no", f"{target} must run once"
    for name in BACKENDS:
        if name != "db-upgrade":
            assert services()[name]["depends_on"]["db-upgrade"]["condition"] == (
                "service_completed_successfully"
            )


@pytest.mark.parametrize("name", sorted(PROBES))
def test_compose_healthchecks_hit_the_probe_on_the_service_port(name: str) -> None:
    test = " ".join(services()[name]["healthcheck"]["test"])
    assert f"127.0.0.1:{PORTS[name]}{PROBES[name][1]}" in test


def test_scaled_worker_has_no_fixed_identity() -> None:
    worker = services()["trainer-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["healthcheck"] == {"disable": True}


@pytest.mark.parametrize("path", COMPOSE_EXTRAS, ids=lambda p: p.name)
def test_compose_extras_touch_only_known_services(path: Path) -> None:
    for name, service in load_compose_file(path)["services"].items():
        base = service.get("extends", {}).get("service", name) if service else name
        assert base in services(), f"{path.name}: {name} extends nothing known"


# --- Dockerfiles ----------------------------------------------------------------------------


def dockerfile(image: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = (DOCKER_DIR / f"{image}.Dockerfile").read_text()
    steps: list[tuple[str, str]] = []
    buffer = ""
    for line in text.splitlines():
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        buffer += line
        instruction, _, args = buffer.strip().partition(" ")
        steps.append((instruction.upper(), args.strip()))
        buffer = ""
    assert not buffer, f"{image}.Dockerfile ends inside a continuation"
    return steps


def _final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (ins, _) in enumerate(steps) if ins == "FROM")
    return steps[last:]


def _exec_form(args: str) -> list[str]:
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def test_every_dockerfile_is_an_image_of_the_convention() -> None:
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKER_DIR.glob("*.Dockerfile")} == set(
        IMAGES
    )


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_is_multistage_non_root_with_healthcheck(image: str) -> None:
    steps = dockerfile(image)
    assert sum(ins == "FROM" for ins, _ in steps) >= 2
    final = _final_stage(steps)
    assert any(ins == "COPY" and args.startswith("--from=") for ins, args in final)
    users = [args for ins, args in final if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [args for ins, args in final if ins == "HEALTHCHECK"], "no HEALTHCHECK"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_cmd_exposed_port_and_healthcheck_agree(image: str) -> None:
    final = _final_stage(dockerfile(image))
    (cmd,) = [_exec_form(args) for ins, args in final if ins == "CMD"]
    _assert_repo_command(cmd)
    port = _listen_port(cmd)
    assert port == PORTS[image]
    assert [args for ins, args in final if ins == "EXPOSE"] == [str(port)]
    (check,) = [args for ins, args in final if ins == "HEALTHCHECK"]
    assert f"127.0.0.1:{port}{PROBES[image][1]}" in check
    # compose spells out the image's own CMD for the service of the same name
    assert services()[image]["command"] == cmd


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_installs_its_extra_only(image: str) -> None:
    steps = dockerfile(image)
    runs = " ".join(args for ins, args in steps if ins == "RUN")
    extras = set(re.findall(r"\.\[([\w,]+)\]", runs))
    assert extras == {IMAGES[image]}, f"{image} installs extras {extras}"
    if image in TORCHLESS:
        assert "torch" not in runs.lower()
        assert not any(ins == "ARG" and "TORCH" in args for ins, args in steps)


@pytest.mark.parametrize("image", sorted(set(IMAGES) - set(TORCHLESS)))
def test_torch_images_pin_the_versions_of_pyproject(image: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = dict(spec.split("==") for spec in pyproject["project"]["optional-dependencies"]["torch"])
    args = dict(a.split("=", 1) for ins, a in dockerfile(image) if ins == "ARG" and "=" in a)
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["TORCHVISION_VERSION"] == pins["torchvision"]
    runs = " ".join(a for ins, a in dockerfile(image) if ins == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs and '"torchvision==${TORCHVISION_VERSION}"' in runs


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_copies_existing_paths_and_ignores_the_rest(image: str) -> None:
    for ins, args in dockerfile(image):
        if ins == "COPY" and not args.startswith("--from="):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"{image}: COPY {source}: not in the repository"
    ignore = (DOCKER_DIR / f"{image}.Dockerfile.dockerignore").read_text().split("\n")
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*", "the ignore file must be an allowlist"
    assert not [r for r in rules if r.startswith("!") and re.search(r"\.venv|\.env|\.git", r)]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_env_names_known_settings(image: str) -> None:
    names = set()
    for ins, args in dockerfile(image):
        if ins == "ENV":
            names |= set(re.findall(r"(?:^|\s)(REGRASP_\w+)=", args))
    assert names <= SETTINGS_VARS


# --- Kubernetes -----------------------------------------------------------------------------


@cache
def kustomization() -> dict:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


@cache
def manifests() -> list[dict]:
    docs = []
    for name in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S_DIR / name).read_text()) if d]
    return docs


@cache
def secret_template() -> dict:
    return yaml.safe_load(SECRET_TEMPLATE.read_text())


def resources(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def workloads() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for kind in ("Deployment", "StatefulSet", "Job"):
        found |= resources(kind)
    return found


def container(name: str) -> dict:
    (only,) = workloads()[name]["spec"]["template"]["spec"]["containers"]
    return only


def configmap() -> dict[str, str]:
    return resources("ConfigMap")["regrasp-config"]["data"]


def test_every_manifest_parses_and_is_listed() -> None:
    files = {p.name for p in K8S_DIR.glob("*.yaml")}
    listed = set(kustomization()["resources"])
    assert listed <= files
    assert files - listed == {"kustomization.yaml", SECRET_TEMPLATE.name}
    assert all(d.get("apiVersion") and d.get("kind") for d in manifests())
    assert set(workloads()) == set(K8S_IMAGES)


def test_manifest_variables_are_settings() -> None:
    names = set(configmap())
    for name in workloads():
        names |= {e["name"] for e in container(name).get("env", [])}
    names |= set(secret_template()["stringData"])
    regrasp = {n for n in names if n.startswith("REGRASP_")}
    assert regrasp <= SETTINGS_VARS, regrasp - SETTINGS_VARS
    assert names - regrasp <= {"BENTOML_DO_NOT_TRACK"}


def test_configmap_holds_no_secret() -> None:
    assert not set(configmap()) & SECRET_VARS
    for key, value in configmap().items():
        assert "@" not in value, f"{key} looks like a URL with credentials"


def test_secret_template_holds_placeholders_only() -> None:
    secret = secret_template()
    assert secret["kind"] == "Secret" and "data" not in secret
    assert secret["metadata"]["name"] == "regrasp-secrets"
    for key, value in secret["stringData"].items():
        assert key in SECRET_SETTINGS
        assert PLACEHOLDER in value, f"{key}: not a placeholder"


@pytest.mark.parametrize("name", sorted(K8S_IMAGES))
def test_workload_secrets_come_from_the_secret(name: str) -> None:
    keys = set(secret_template()["stringData"])
    for entry in container(name).get("env", []):
        if entry["name"] in SECRET_VARS:
            assert "value" not in entry, f"{name}: literal {entry['name']}"
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "regrasp-secrets" and ref["key"] == entry["name"] in keys
        elif "value" in entry:
            assert entry["name"] not in SECRET_VARS


def _k8s_env(name: str, secret_values: dict[str, str]) -> dict[str, str]:
    spec = container(name)
    env: dict[str, str] = {}
    if any(src.get("configMapRef") for src in spec.get("envFrom", [])):
        env |= configmap()
    for entry in spec.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            env[entry["name"]] = secret_values[entry["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[entry["name"]] = configmap()[entry["valueFrom"]["configMapKeyRef"]["key"]]
    return env


def _strong_secret() -> dict[str, str]:
    values = {k: secrets.token_hex(24) for k in secret_template()["stringData"]}
    values["REGRASP_DATABASE_URL"] = (
        f"postgresql+psycopg://regrasp:{values['REGRASP_SECRET_KEY']}@db/r"
    )
    return values


@pytest.mark.parametrize("name", BACKENDS)
def test_k8s_backend_settings_load_in_deployment_mode(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _load(monkeypatch, _k8s_env(name, _strong_secret()))
    assert settings.mode == "deployment"
    assert settings.object_store_url.startswith("s3://")


def test_k8s_secret_template_is_refused_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError):
        _load(monkeypatch, _k8s_env("orchestrator", secret_template()["stringData"]))


def test_k8s_review_ui_gets_no_secret_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _k8s_env("review-ui", {})
    assert not set(env) & SECRET_VARS
    assert _load(monkeypatch, env).orchestrator_url == configmap()["REGRASP_ORCHESTRATOR_URL"]


@pytest.mark.parametrize("name", sorted(K8S_IMAGES))
def test_k8s_images_are_built_here_and_commands_match_compose(name: str) -> None:
    spec = container(name)
    image = spec["image"].split(":")[0]
    assert image == f"regrasp/{K8S_IMAGES[name]}"
    assert (DOCKER_DIR / f"{K8S_IMAGES[name]}.Dockerfile").is_file()
    argv = spec["command"] + spec.get("args", [])
    _assert_repo_command(argv)
    assert argv == services()[COMPOSE_SERVICE.get(name, name)]["command"]
    ports = [p["containerPort"] for p in spec.get("ports", [])]
    assert ports == ([PORTS[name]] if PORTS[name] else [])


def test_kustomization_images_are_ours() -> None:
    assert {i["name"] for i in kustomization()["images"]} == {f"regrasp/{i}" for i in IMAGES}


def _pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("name", sorted(K8S_PROBES))
def test_k8s_service_exposes_the_port_settings_use(name: str) -> None:
    service = resources("Service")[name]
    selector = service["spec"]["selector"]
    assert selector.items() <= _pod_labels(workloads()[name]).items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == PORTS[name]
    assert port["targetPort"] in ("http", PORTS[name])


@pytest.mark.parametrize("name", sorted(K8S_PROBES))
def test_k8s_probes_hit_the_service_health_paths(name: str) -> None:
    spec = container(name)
    live, ready = K8S_PROBES[name]
    assert spec["livenessProbe"]["httpGet"]["path"] == live
    assert spec["readinessProbe"]["httpGet"]["path"] == ready
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in spec:
            assert spec[probe]["httpGet"]["port"] in ("http", PORTS[name])


def test_configmap_urls_name_services_and_their_ports() -> None:
    svcs = resources("Service")
    for key in ("REGRASP_ORCHESTRATOR_URL", "REGRASP_TRAINER_URL"):
        url = urlsplit(configmap()[key])
        assert url.hostname in svcs
        assert url.port == svcs[url.hostname]["spec"]["ports"][0]["port"]
        assert url.geturl() == service_env("orchestrator")[key]  # same URL as compose


def test_robots_and_rounds_get_separate_inference_pools_of_one_image() -> None:
    """Robot traffic and rounds' batch traffic cannot starve each other: two Deployments of
    the same image and command, each behind its own Service; rounds reach the batch pool
    through its headless Service (every pod, discovered when a round predicts)."""
    deployments = resources("Deployment")
    robot, batch = deployments["inference"], deployments["inference-batch"]
    assert container("inference")["command"] == container("inference-batch")["command"]
    assert container("inference")["image"] == container("inference-batch")["image"]
    svcs = resources("Service")
    robot_pods, batch_pods = _pod_labels(robot), _pod_labels(batch)
    for service, own, other in (
        (svcs["inference"], robot_pods, batch_pods),
        (svcs["inference-batch"], batch_pods, robot_pods),
    ):
        selector = service["spec"]["selector"]
        assert selector.items() <= own.items() and not selector.items() <= other.items()
    assert svcs["inference-batch"]["spec"]["clusterIP"] == "None"
    urls = json.loads(configmap()["REGRASP_INFERENCE_URLS"])
    assert urls == [f"http://inference-batch:{PORTS['inference']}"]
    # Both pools follow the promoted model: neither pins one.
    env = configmap() | {
        e["name"]: e.get("value")
        for n in ("inference", "inference-batch")
        for e in container(n).get("env", [])
    }
    assert not env.get("REGRASP_INFERENCE_MODEL_ID") and not env.get("REGRASP_INFERENCE_MODEL_NAME")
    # Robots win the GPUs: their pods preempt batch pods, never the reverse.
    classes = resources("PriorityClass")
    robot_class = classes[robot["spec"]["template"]["spec"]["priorityClassName"]]
    batch_class = classes[batch["spec"]["template"]["spec"]["priorityClassName"]]
    assert robot_class["value"] > batch_class["value"]
    assert batch_class["preemptionPolicy"] == "Never"


def test_inference_autoscales_on_in_flight_requests_not_cpu() -> None:
    """KEDA scales each pool on the requests in flight that the pods export on /metrics."""
    assert not resources("HorizontalPodAutoscaler")  # KEDA makes its own from these
    scaled = resources("ScaledObject")
    assert set(scaled) == {"inference", "inference-batch"}
    exported = (ROOT / "shared" / "regrasp" / "serving" / "batching.py").read_text()
    for name, obj in scaled.items():
        assert obj["apiVersion"].startswith("keda.sh/")
        target = obj["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert obj["spec"]["minReplicaCount"] == resources("Deployment")[name]["spec"]["replicas"]
        assert obj["spec"]["minReplicaCount"] < obj["spec"]["maxReplicaCount"]
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        metric = re.match(r"sum\((\w+)\{", trigger["metadata"]["query"])[1]
        assert metric == "regrasp_inference_in_flight" and metric in exported
        assert float(trigger["metadata"]["threshold"]) > 0
        annotations = resources("Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == PORTS["inference"]
    kinds = {n: o["spec"]["triggers"][0]["metadata"]["query"] for n, o in scaled.items()}
    assert 'kind="predict"' in kinds["inference"]
    assert 'kind="predict_stored"' in kinds["inference-batch"]


@pytest.mark.parametrize("name", sorted(K8S_IMAGES))
def test_k8s_gpu_requests_and_resources(name: str) -> None:
    resources_ = container(name)["resources"]
    assert resources_["requests"]["cpu"] and resources_["limits"]["memory"]
    gpus = resources_["limits"].get("nvidia.com/gpu")
    assert gpus == (1 if name in K8S_GPU_WORKLOADS else None)


@pytest.mark.parametrize("name", sorted(K8S_IMAGES))
def test_k8s_pods_run_as_non_root(name: str) -> None:
    pod = workloads()[name]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container(name)["securityContext"]["allowPrivilegeEscalation"] is False


def test_orchestrator_replicated_and_mode_deployment() -> None:
    assert workloads()["orchestrator"]["spec"]["replicas"] == 2
    assert configmap()["REGRASP_MODE"] == "deployment"
    job = workloads()["db-upgrade"]
    assert container("db-upgrade")["command"] == ["regrasp", "db", "upgrade"]
    assert job["kind"] == "Job"


# --- the services really serve the probe paths --------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "orchestrator",
        "trainer",
    ],
)
def test_fastapi_services_define_their_probe_routes(name: str) -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "services" / name).rglob("*.py"))
    for path in set(PROBES[name]):
        assert f'"{path}"' in code, f"services/{name} defines no {path} route"


def test_inference_service_has_readiness() -> None:
    code = (ROOT / "services" / "inference" / "service.py").read_text()
    assert "def __is_ready__" in code


# --- commands -------------------------------------------------------------------------------


def _assert_repo_command(argv: list[str]) -> None:
    """The command runs a module, script or app file that exists in this repository."""
    program, *rest = argv
    if program == "python":
        assert rest[0] == "-m"
        module = ROOT.joinpath(*rest[1].split("."))
        main = module / "__main__.py"
        assert main.is_file(), f"{rest[1]} has no __main__.py"
        sub = rest[2].replace("-", "_")
        assert re.search(rf"def {sub}\(", main.read_text()), f"{rest[1]}: no `{rest[2]}` command"
    elif program == "regrasp":
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        module = scripts["regrasp"].split(":")[0]
        # Ask the real command (its Typer app, in this process: unit tests start no
        # processes): the subcommand exists when its --help succeeds.
        result = CliRunner().invoke(importlib.import_module(module).app, [*rest[:2], "--help"])
        assert result.exit_code == 0, f"regrasp {' '.join(rest[:2])}: {result.output}"
    elif program == "streamlit":
        assert rest[0] == "run" and (ROOT / rest[1]).is_file()
    elif program == "bentoml":
        assert rest[0] == "serve"
        module, _, attribute = rest[1].partition(":")
        source = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        assert re.search(rf"^class {attribute}\b", source.read_text(), re.M)
    else:
        pytest.fail(f"unknown program {program!r}")


# --- the review UI's colours ---------------------------------------------------------------

UI_CONFIG = ROOT / "services" / "review_ui" / ".streamlit" / "config.toml"
#: Streamlit's own default primary colour (a red).
STREAMLIT_DEFAULT_PRIMARY = "#ff4b4b"


def _hue_saturation(colour: str) -> tuple[float, float]:
    """Hue in degrees and saturation (0–1) of `#rrggbb` or an (r, g, b) tuple of 0–255."""
    if isinstance(colour, str):
        assert re.fullmatch(r"#[0-9a-fA-F]{6}", colour), f"not a #rrggbb colour: {colour!r}"
        colour = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    h, s, _ = colorsys.rgb_to_hsv(*(c / 255 for c in colour))
    return 360.0 * h, s


def _streamlit_primary(argv: list[str]) -> str | None:
    """The value of `--theme.primaryColor` in a `streamlit run` command line, if given."""
    for i, arg in enumerate(argv):
        if arg == "--theme.primaryColor":
            return argv[i + 1]
        if arg.startswith("--theme.primaryColor="):
            return arg.split("=", 1)[1]
    return None


def _serve_argv(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command `python -m services.review_ui serve` becomes (its exec, intercepted)."""
    from typer.testing import CliRunner

    from services.review_ui.__main__ import cli

    seen: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        seen.append(list(argv))
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", execv)
    result = CliRunner().invoke(cli, ["serve", "--host", "127.0.0.1", "--port", "8501"])
    assert result.exit_code == 0 and len(seen) == 1, result.output
    return seen[0]


def test_review_ui_primary_colour_is_neutral_for_every_launcher(monkeypatch) -> None:
    # Red means the model's predictions on every page (green labels, orange marked wrong);
    # Streamlit paints primary buttons, selected radios and chips in the primary colour.
    from regrasp.grasp import drawing as viz

    theme = tomllib.loads(UI_CONFIG.read_text())["theme"]
    primary = theme["primaryColor"]
    assert primary.lower() != STREAMLIT_DEFAULT_PRIMARY
    hue, saturation = _hue_saturation(primary)
    for name, legend in (("red", viz.PREDICTION), ("green", viz.LABEL), ("orange", viz.WRONG)):
        legend_hue, _ = _hue_saturation(legend)
        apart = min(abs(hue - legend_hue), 360.0 - abs(hue - legend_hue))
        assert saturation < 0.15 or apart > 45.0, (
            f"the UI's primary colour {primary} looks {name}, a legend colour"
        )
    launchers = {
        "serve": _serve_argv(monkeypatch),
        "compose": services()["review-ui"]["command"],
        "kubernetes": container("review-ui")["command"] + container("review-ui").get("args", []),
        "Dockerfile": next(
            _exec_form(args) for ins, args in _final_stage(dockerfile("review-ui")) if ins == "CMD"
        ),
    }
    for name, argv in launchers.items():
        assert "streamlit" in argv and "run" in argv, (name, argv)
        given = _streamlit_primary(argv)
        assert given is not None and given.lower() == primary.lower(), (
            f"{name} runs the review UI with primary colour {given}, the app's is {primary}"
        )
