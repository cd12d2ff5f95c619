"""The library's imports point down its layers (`shared/regrasp/README.md` draws the map).

Every module of `regrasp` is parsed (imports inside functions included, since a lazy
import is still a dependency) and each `regrasp.*` import is checked against the layer of
the importing module: a module may import its own layer and the ones below, never one
above. A package that is in no layer fails the test too, so a new one is placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "shared" / "regrasp"

#: Bottom first. Packages of one layer may import each other.
LAYERS: list[tuple[str, ...]] = [
    ("platform",),
    ("grasp",),
    ("data",),
    ("learn",),
    ("refine",),
    ("api",),
    ("clients",),
    ("workflows", "serving"),
    ("cli", "demo"),
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def _modules() -> list[Path]:
    return sorted(p for p in LIBRARY.rglob("*.py") if "alembic_tree" not in p.parts)


def _package_of(path: Path) -> str | None:
    parts = path.relative_to(LIBRARY).with_suffix("").parts
    return None if parts == ("__init__",) else parts[0]


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top package under `regrasp`) of every `regrasp` import in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = (
                [f"regrasp.{a.name}" for a in node.names]
                if node.module == "regrasp"
                else [node.module]
            )
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "regrasp" and len(parts) > 1 and parts[1] != "__version__":
                found.append((node.lineno, parts[1]))
    return found


def test_every_package_has_a_layer() -> None:
    packages = {_package_of(p) for p in _modules()} - {None}
    assert packages, f"no modules found under {LIBRARY}"
    assert sorted(packages - set(RANK)) == []


def test_imports_point_down() -> None:
    upward = []
    for path in _modules():
        package = _package_of(path)
        if package is None:
            continue
        for line, target in _imported_packages(path):
            if RANK.get(target, -1) > RANK[package]:
                where = path.relative_to(LIBRARY)
                upward.append(f"{where}:{line} ({package}) imports regrasp.{target}")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The parser finds lazy and `from regrasp import x` imports (the check can fail)."""
    module = tmp_path / "m.py"
    module.write_text(
        "from regrasp.platform import errors\n"
        "def f():\n"
        "    from regrasp import workflows\n"
        "    import regrasp.clients.trainer\n"
    )
    assert _imported_packages(module) == [(1, "platform"), (3, "workflows"), (4, "clients")]


@pytest.mark.parametrize("package", ["grasp", "data", "learn", "refine"])
def test_domain_layers_call_no_service(package: str) -> None:
    """The domain layers import no HTTP client: calling a service is a workflow's job.
    (`platform.supervisor` polls the health of the processes it starts, so `platform` is
    not listed.)"""
    offenders = [
        str(p.relative_to(LIBRARY))
        for p in (LIBRARY / package).rglob("*.py")
        if any(
            isinstance(n, ast.Import | ast.ImportFrom)
            and any(
                (getattr(n, "module", None) or a.name).split(".")[0] in {"httpx", "requests"}
                for a in n.names
            )
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    assert offenders == []
