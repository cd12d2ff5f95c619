"""Data shaping for the lead's pages: per-round series, tables, diffs grouped by image.

Plain functions over the API's schemas (no Streamlit), so the charts' inputs are tested
without a browser. Grasp arrays are (N, 5) float64 `(x, y, theta, opening, jaw)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from regrasp.api.campaigns import CampaignReportPublic
from regrasp.api.refinement import RoundRefinementPublic
from regrasp.api.review import DECISIONS, ReviewItemPublic, ReviewStatsPublic
from regrasp.api.rounds import RoundPublic
from regrasp.api.versions import DiffPublic

#: Captions of the campaign figures (`regrasp.refine.campaigns.report.FIGURES`), as in the paper.
FIGURE_CAPTIONS = {
    "flagged": "Figure 4: flagged images per round",
    "review_outcome": "Figure 5: true negatives vs false negatives per round",
    "accuracy": "Figure 6: test accuracy per network and dataset version",
    "train_loss": "Figure 7: training loss per network and dataset version",
    "overlays": "Figure 8: labels before and after (removed crossed in orange, added thick green)",
}


@dataclass(frozen=True)
class RoundSeries:
    """One value per round, in `round_ids` order, ready for `regrasp.grasp.drawing` charts."""

    round_ids: list[int]
    flagged: list[int]
    reviewed: list[int]
    decision_mix: dict[str, list[int]]
    accuracy: dict[str, list[float | None]] = field(default_factory=dict)
    loss: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def has_metrics(self) -> bool:
        return any(
            v is not None for s in (self.accuracy, self.loss) for vs in s.values() for v in vs
        )


@dataclass(frozen=True)
class ImageChange:
    """The rectangles of one image that a diff touches: removed (K, 5), added (M, 5)."""

    name: str
    removed: np.ndarray
    added: np.ndarray

    @property
    def before(self) -> np.ndarray:
        return self.removed

    @property
    def after(self) -> np.ndarray:
        return self.added


def round_series(
    rounds: Sequence[RoundPublic], stats: Mapping[int, ReviewStatsPublic]
) -> RoundSeries:
    """Flagged images, reviewed items, decision mix and metrics per round, oldest first.

    Metrics are read from a round's `metrics` field when the API provides one
    (`accuracy`/`test_accuracy`, `loss`/`val_loss`); rounds without them leave gaps.
    """
    ordered = sorted(rounds, key=lambda r: r.id)
    mix = {
        d: [stats[r.id].decision_mix.get(d, 0) if r.id in stats else 0 for r in ordered]
        for d in DECISIONS
    }
    accuracy: list[float | None] = []
    loss: list[float | None] = []
    for r in ordered:
        metrics = r.model_dump().get("metrics") or {}
        accuracy.append(_first(metrics, ("test_accuracy", "accuracy")))
        loss.append(_first(metrics, ("val_loss", "loss")))
    return RoundSeries(
        round_ids=[r.id for r in ordered],
        flagged=[r.counts.flagged for r in ordered],
        reviewed=[stats[r.id].decided if r.id in stats else 0 for r in ordered],
        decision_mix=mix,
        accuracy={"accuracy": accuracy},
        loss={"loss": loss},
    )


def round_table(
    rounds: Sequence[RoundPublic], stats: Mapping[int, ReviewStatsPublic]
) -> list[dict[str, object]]:
    """One row per round for `st.dataframe`."""
    rows = []
    for r in sorted(rounds, key=lambda r: -r.id):
        s = stats.get(r.id)
        rows.append(
            {
                "round": r.id,
                "state": r.state,
                "base version": r.base_version,
                "new version": r.result_version,
                "predicted": r.counts.images_predicted,
                "flagged": r.counts.flagged,
                "decided": s.decided if s else 0,
                "pending": s.pending if s else 0,
                "adjudication": s.adjudication if s else 0,
                "kappa": None if s is None or s.kappa is None else round(s.kappa, 3),
            }
        )
    return rows


def annotator_table(stats: ReviewStatsPublic) -> list[dict[str, object]]:
    """One row per annotator: work, decision mix, seconds, agreement."""
    return [
        {
            "annotator": a.username,
            "decided": a.decided,
            "resolved": a.resolved,
            "changed": a.changed,
            "leased": a.leased,
            **{d.replace("_", " "): a.decision_mix.get(d, 0) for d in DECISIONS},
            "median s": None if a.median_seconds is None else round(a.median_seconds, 1),
            "double reviewed": a.double_reviewed,
            "agreement": None if a.agreement is None else round(a.agreement, 3),
            "kappa": None if a.kappa is None else round(a.kappa, 3),
        }
        for a in stats.annotators
    ]


def campaign_table(report: CampaignReportPublic) -> list[dict[str, object]]:
    """Table I as rows: one per network, one column per version, the best marked with `*`.

    Cells read `0.412 *` (accuracy, best of its version), `0.398`, or the run's state while
    it has no accuracy yet (`training`, `failed`, ...).
    """
    cells = {(c.network, c.version): c for c in report.cells}
    rows = []
    for network in report.networks:
        row: dict[str, object] = {"network": network}
        for version in report.versions:
            cell = cells.get((network, version))
            if cell is None:
                text = ""
            elif cell.accuracy is None:
                text = cell.state
            else:
                text = f"{cell.accuracy:.3f}" + (" *" if cell.best else "")
            row[f"v{version}"] = text
        rows.append(row)
    return rows


def refinement_table(rounds: Sequence[RoundRefinementPublic]) -> list[dict[str, object]]:
    """One row per round: flagged, decisions, estimated label noise with its interval, yield.

    Few, short columns so the table fits the page: the four decisions share one column
    (true negative / missing label / annotation error / fix).
    """
    return [
        {
            "round": r.round_id,
            "versions": f"v{r.base_version}→"
            + ("…" if r.result_version is None else f"v{r.result_version}"),
            "flagged": r.flagged,
            "audited": r.audited,
            "TN / ML / AE / fix": " / ".join(str(r.decisions.get(d, 0)) for d in DECISIONS),
            "label errors found": r.label_errors_found,
            "estimated noise (95 % CI)": noise_text(r),
            "errors / review hour": None
            if r.yield_per_hour is None
            else round(r.yield_per_hour, 1),
        }
        for r in rounds
    ]


def noise_text(r: RoundRefinementPublic) -> str | None:
    """The estimated share of images with label errors, always with both bounds of its
    95 % interval ("12.0 % [9.1 %, 15.6 %]"), or named a lower bound when only flagged
    images were reviewed ("≥ 10.9 % (lower bound: audit unflagged images for an upper)")."""
    if r.estimated_noise is None:
        return None
    low = r.estimated_noise_low if r.estimated_noise_low is not None else r.estimated_noise
    if r.estimated_noise_high is None:
        return f"≥ {_pct(low)} (lower bound: audit unflagged images for an upper one)"
    return f"{_pct(r.estimated_noise)} [{_pct(low)}, {_pct(r.estimated_noise_high)}]"


def _pct(value: float) -> str:
    return f"{100.0 * value:.1f} %"


def grasp_arrays(item: ReviewItemPublic) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5) labels and (K, 5) predictions of a review item."""
    labels = np.array([g.grasp for g in item.labels], dtype=np.float64).reshape(-1, 5)
    preds = np.array([p.grasp for p in item.predictions], dtype=np.float64).reshape(-1, 5)
    return labels, preds


def changes_by_image(diff: DiffPublic) -> dict[int, ImageChange]:
    """The diff's grasp changes grouped by image, images in id order."""
    names: dict[int, str] = {}
    removed: dict[int, list[tuple[float, ...]]] = {}
    added: dict[int, list[tuple[float, ...]]] = {}
    for change, into in [(c, removed) for c in diff.removed_grasps] + [
        (c, added) for c in diff.added_grasps
    ]:
        names[change.image_id] = change.image
        into.setdefault(change.image_id, []).append(change.grasp)
    return {
        i: ImageChange(
            name=names[i],
            removed=np.array(removed.get(i, []), dtype=np.float64).reshape(-1, 5),
            added=np.array(added.get(i, []), dtype=np.float64).reshape(-1, 5),
        )
        for i in sorted(names)
    }


def _first(metrics: Mapping[str, object], keys: Sequence[str]) -> float | None:
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None
