"""The HTTP contract (`regrasp.api`) and the shared HTTP module (`regrasp.platform.web`).

- a public schema built from a library dataclass (`fields_of`) holds every field of the
  dataclass, in its order, and reads an instance with `model_validate` (properties too);
- the bearer header is read one way: scheme in any case, blanks dropped, anything else None;
- the inference service's gate and the framework-free half of `regrasp.platform.web` import no
  FastAPI at module level, directly or through the library (checked on the sources, so
  no process is started): the inference image does not install it.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from regrasp.api.campaigns import CampaignCellPublic, CampaignReportPublic
from regrasp.api.common import Public, fields_of
from regrasp.api.models import ModelPublic
from regrasp.api.refinement import RoundRefinementPublic, StopAdvicePublic
from regrasp.api.review import AnnotatorStatsPublic, ReviewStatsPublic
from regrasp.api.rounds import ApplyPreviewPublic
from regrasp.api.versions import ExportPublic
from regrasp.data.export import ExportSummary
from regrasp.learn.model_registry import RegisteredModel
from regrasp.platform.web import bearer_credential, error_body
from regrasp.refine.campaigns.report import CampaignReport, Cell
from regrasp.refine.refinement_stats import RoundRefinement, StopAdvice
from regrasp.refine.review.stats import AnnotatorStats, RoundStats
from regrasp.refine.rounds.applying import ApplyPreview

SHARED = Path(__file__).resolve().parents[2] / "shared"

PAIRS = [
    (AnnotatorStatsPublic, AnnotatorStats),
    (ReviewStatsPublic, RoundStats),
    (RoundRefinementPublic, RoundRefinement),
    (StopAdvicePublic, StopAdvice),
    (CampaignCellPublic, Cell),
    (CampaignReportPublic, CampaignReport),
    (ApplyPreviewPublic, ApplyPreview),
    (ModelPublic, RegisteredModel),
    (ExportPublic, ExportSummary),
]


@pytest.mark.parametrize("public, source", PAIRS, ids=[p.__name__ for p, _ in PAIRS])
def test_public_schema_has_every_field_of_its_dataclass_in_order(public, source):
    names = [f.name for f in dataclasses.fields(source)]
    fields = list(public.model_fields)
    assert set(names) <= set(fields), set(names) - set(fields)
    assert sorted(names, key=fields.index) == names


def test_model_validate_reads_a_dataclass_with_its_properties():
    preview = ApplyPreview(
        round_id=3,
        base_version=1,
        items=10,
        decided=8,
        undecided=2,
        decisions={"fix": 2, "true_negative": 6},
        images_removed=1,
        grasps_added=4,
        grasps_removed=2,
        grasps_removed_with_images=5,
        images_before=100,
        grasps_before=900,
    )
    public = ApplyPreviewPublic.model_validate(preview)
    assert public.images_after == 99 and public.grasps_after == 900 + 4 - 2 - 5
    assert public.decisions == {"fix": 2, "true_negative": 6}
    advice = StopAdvicePublic.model_validate(StopAdvice(stop=True, reason="noise under 1%"))
    assert advice.model_dump() == {"stop": True, "reason": "noise under 1%"}


def test_fields_of_takes_dataclasses_only():
    with pytest.raises(TypeError, match="not a dataclass"):
        fields_of(Public)


@pytest.mark.parametrize(
    "header, credential",
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer rgk_123", "rgk_123"),
        ("BEARER   padded  ", "padded"),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic dXNlcjpwdw==", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_header_is_read_one_way(header, credential):
    assert bearer_credential(header) == credential


def test_error_body_is_one_sentence_under_both_keys():
    assert error_body("dataset 4 does not exist") == {
        "error": "dataset 4 does not exist",
        "detail": "dataset 4 does not exist",
    }


def _module_level_imports(module: str) -> set[str]:
    """Modules imported at module level (not inside functions, not TYPE_CHECKING-only)."""
    parts = module.split(".")
    path = SHARED.joinpath(*parts)
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(source.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return found


def _exists(module: str) -> bool:
    path = SHARED.joinpath(*module.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


@pytest.mark.parametrize(
    "root", ["regrasp.serving.gate", "regrasp.platform.web", "regrasp.platform.web.body_limit"]
)
def test_framework_free_http_modules_import_no_fastapi(root):
    seen: set[str] = set()
    todo = [root]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _module_level_imports(module):
            top = name.split(".")[0]
            assert top != "fastapi", f"{module} imports {name}"
            if top == "regrasp" and _exists(name):
                todo.append(name)
                # importing a.b.c runs a/__init__ and a/b/__init__ too
                parents = name.split(".")
                todo.extend(".".join(parents[:i]) for i in range(1, len(parents)))
    assert "regrasp.platform.web" in seen or root == "regrasp.platform.web.body_limit"
