"""The demo's rows as a rich table and as PNG charts (`regrasp.grasp.drawing`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regrasp.demo.loop import DECISION_NAMES, RoundRow

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["round_table", "write_charts"]


def round_table(rows: Sequence[RoundRow], *, title: str = "Refinement rounds") -> Table:
    """The rows as a rich table (accuracy as percentages; '-' where not measured)."""
    from rich.table import Table

    table = Table(title=title)
    for header in (
        "round",
        "version",
        "flagged",
        "decided",
        "TN",
        "missing",
        "error",
        "fix",
        "labels +",
        "labels -",
        "images -",
        "corrupt hit",
        "clean harmed",
        "acc (labels)",
        "acc (clean)",
    ):
        table.add_column(header, justify="right")
    for r in rows:
        reviewed = isinstance(r.round, int)
        version = f"v{r.base_version}→v{r.result_version}" if reviewed else f"v{r.base_version}"
        counts = (
            [
                r.flagged,
                r.decided,
                *(r.decisions.get(k, 0) for k in DECISION_NAMES),
                r.labels_added,
                r.labels_removed,
                r.images_removed,
                r.corrupted_hit,
                r.clean_harmed,
            ]
            if reviewed
            else [""] * 11
        )
        table.add_row(
            str(r.round), version, *map(str, counts), _pct(r.accuracy), _pct(r.clean_accuracy)
        )
    return table


def write_charts(rows: Sequence[RoundRow], folder: Path) -> list[Path]:
    """PNG charts of the rows into `folder` (flagged, decisions, changes, accuracy) and the
    rows as rounds.json; returns the paths written."""
    from regrasp.grasp import drawing as viz

    folder.mkdir(parents=True, exist_ok=True)
    reviewed = [r for r in rows if isinstance(r.round, int)]
    numbers = [int(r.round) for r in reviewed]
    with_model = [*numbers, numbers[-1] + 1] if len(rows) > len(reviewed) else numbers
    charts = {
        "flagged.png": viz.chart_flagged(
            numbers, flagged=[r.flagged for r in reviewed], reviewed=[r.decided for r in reviewed]
        ),
        "decisions.png": viz.chart_decision_mix(
            numbers, mix={k: [r.decisions.get(k, 0) for r in reviewed] for k in DECISION_NAMES}
        ),
        "changes.png": viz.chart_metrics(
            numbers,
            series={
                "labels added": [r.labels_added for r in reviewed],
                "images removed": [r.images_removed for r in reviewed],
                "corrupted images hit": [r.corrupted_hit for r in reviewed],
                "clean images harmed": [r.clean_harmed for r in reviewed],
            },
            ylabel="count",
            title="What each round changed",
        ),
        "accuracy.png": viz.chart_metrics(
            with_model,
            series={
                "test, version labels": [r.accuracy for r in rows],
                "test, clean labels": [r.clean_accuracy for r in rows],
            },
            ylabel="accuracy",
            title="Test accuracy of the model each round trains"
            + (
                f" (round {with_model[-1]}: final version)"
                if len(with_model) > len(numbers)
                else ""
            ),
        ),
    }
    written = []
    for name, png in charts.items():
        path = folder / name
        path.write_bytes(png)
        written.append(path)
    data = folder / "rounds.json"
    data.write_text(json.dumps([_row_dict(r) for r in rows], indent=2))
    written.append(data)
    return written


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _row_dict(row: RoundRow) -> dict[str, Any]:
    return {
        "round": row.round,
        "base_version": row.base_version,
        "result_version": row.result_version,
        "predicted": row.predicted,
        "flagged": row.flagged,
        "decisions": dict(row.decisions),
        "labels_added": row.labels_added,
        "labels_removed": row.labels_removed,
        "images_removed": row.images_removed,
        "corrupted_hit": row.corrupted_hit,
        "clean_harmed": row.clean_harmed,
        "reviewer_errors": row.reviewer_errors,
        "test_accuracy": row.accuracy,
        "clean_test_accuracy": row.clean_accuracy,
        "model_id": row.model_id,
        "seconds": round(row.seconds, 1),
    }
