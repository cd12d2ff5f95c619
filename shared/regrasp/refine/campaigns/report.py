"""A campaign's results: the accuracy table and the paper's figures 4–8, as PNG and CSV.

Everything is computed from what is stored — the campaign's runs (accuracy, successes,
test images, training history from the trainer's jobs), the dataset's rounds (their
predictions and final review decisions, `regrasp.refine.refinement_stats`) and the two end
versions' labels — so a report can be rebuilt at any time and always matches the data:

- table: networks × versions, test accuracy, the best network of each version marked;
- `flagged` (Figure 4): flagged images per round;
- `review_outcome` (Figure 5): share of the flagged images the reviewers found to be true
  negatives (the model was wrong) vs false negatives (the labels were: missing label,
  annotation error or fix), per round;
- `accuracy` (Figure 6) and `train_loss` (Figure 7): per network, per version (version v
  is the dataset after v rounds);
- `overlays` (Figure 8): sample images whose labels changed between the first and the last
  version of the campaign, before and after side by side (`regrasp.grasp.drawing.before_after`).

Drawing is `regrasp.grasp.drawing`'s; this module only chooses the numbers and lays images out.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session

from regrasp.data import versions
from regrasp.platform.errors import NotFound
from regrasp.platform.store.db.tables import Campaign, Image
from regrasp.refine.campaigns.config import parse_config
from regrasp.refine.refinement_stats import (
    LABEL_ERRORS,
    RoundRefinement,
    StopAdvice,
    dataset_refinement,
    suggest_stop,
)

if TYPE_CHECKING:
    from regrasp.platform.store.objects import ObjectStore

__all__ = [
    "FIGURES",
    "CampaignReport",
    "Cell",
    "SampleChange",
    "build_report",
    "figure_csv",
    "figure_png",
    "report_dict",
    "report_zip",
    "table_csv",
    "table_markdown",
]

#: Figure names, in the paper's order (4, 5, 6, 7, 8).
FIGURES = ("flagged", "review_outcome", "accuracy", "train_loss", "overlays")
#: Sample images shown in the overlays figure.
SAMPLES = 4


@dataclass(frozen=True)
class Cell:
    """One (network, version) run: its state, test accuracy and final training loss."""

    network: str
    version: int
    state: str
    accuracy: float | None
    successes: int | None
    images: int | None
    train_loss: float | None
    model_id: int | None
    best: bool
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SampleChange:
    """An image whose labels differ between the campaign's first and last version."""

    image_id: int
    name: str
    before: np.ndarray
    after: np.ndarray
    removed: bool


@dataclass(frozen=True)
class CampaignReport:
    """Everything the table and figures show (see the module docstring)."""

    campaign_id: int
    dataset_id: int
    name: str
    state: str
    networks: list[str]
    versions: list[int]
    test_version: int
    test_images: int
    cells: list[Cell]
    rounds: list[RoundRefinement]
    stop: StopAdvice
    samples: list[SampleChange]

    def cell(self, network: str, version: int) -> Cell:
        for c in self.cells:
            if c.network == network and c.version == version:
                return c
        raise NotFound(f"campaign {self.campaign_id} has no run {network} v{version}")


def build_report(session: Session, campaign_id: int, *, samples: int = SAMPLES) -> CampaignReport:
    """The report of a campaign, from the stored runs, rounds and labels."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    config = parse_config(campaign)
    runs = list(campaign.runs)
    best: dict[int, float] = {}
    for r in runs:
        if r.get("accuracy") is not None:
            best[r["version"]] = max(best.get(r["version"], -1.0), float(r["accuracy"]))
    cells = [
        Cell(
            network=r["network"],
            version=int(r["version"]),
            state=r["state"],
            accuracy=r.get("accuracy"),
            successes=r.get("successes"),
            images=r.get("images"),
            train_loss=r.get("train_loss"),
            model_id=r.get("model_id"),
            best=r.get("accuracy") is not None and float(r["accuracy"]) == best[r["version"]],
            history=list(r.get("history") or []),
        )
        for r in runs
    ]
    lo, hi = min(config.versions), max(config.versions)
    rounds = [
        r for r in dataset_refinement(session, campaign.dataset_id) if lo <= r.base_version < hi
    ]
    return CampaignReport(
        campaign_id=campaign.id,
        dataset_id=campaign.dataset_id,
        name=campaign.name,
        state=campaign.state.value,
        networks=list(config.networks),
        versions=list(config.versions),
        test_version=config.scored_version,
        test_images=len(campaign.test_image_ids),
        cells=cells,
        rounds=rounds,
        stop=suggest_stop(rounds),
        samples=_samples(session, campaign.dataset_id, lo, hi, samples) if hi > lo else [],
    )


def table_csv(report: CampaignReport) -> str:
    """One row per (network, version): accuracy, successes, images, loss, best (0/1)."""
    rows = [
        [
            c.network,
            c.version,
            c.state,
            _num(c.accuracy),
            c.successes if c.successes is not None else "",
            c.images if c.images is not None else "",
            _num(c.train_loss),
            c.model_id if c.model_id is not None else "",
            int(c.best),
        ]
        for c in report.cells
    ]
    header = ["network", "version", "state", "accuracy", "successes", "images"]
    return _csv(header + ["train_loss", "model_id", "best"], rows)


def table_markdown(report: CampaignReport) -> str:
    """The paper's Table I: networks × versions, accuracy in %, best per version in bold."""
    head = "| network | " + " | ".join(f"v{v}" for v in report.versions) + " |"
    lines = [head, "|---|" + "---|" * len(report.versions)]
    for network in report.networks:
        cells = []
        for v in report.versions:
            c = report.cell(network, v)
            text = f"{100 * c.accuracy:.1f}" if c.accuracy is not None else c.state
            cells.append(f"**{text}**" if c.best else text)
        lines.append(f"| {network} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure_csv(report: CampaignReport, name: str) -> str:
    """The numbers behind one figure (`FIGURES`), one row per point."""
    _check_figure(name)
    if name == "flagged":
        return _csv(
            ["round", "base_version", "result_version", "images", "flagged", "decided"],
            [
                [
                    r.round_id,
                    r.base_version,
                    _opt(r.result_version),
                    r.images,
                    r.flagged,
                    r.decided_flagged,
                ]
                for r in report.rounds
            ],
        )
    if name == "review_outcome":
        return _csv(
            ["round", "decided", "true_negative", "false_negative"]
            + ["true_negative_share", "false_negative_share"],
            [
                [
                    r.round_id,
                    r.decided_flagged,
                    r.decisions["true_negative"],
                    sum(r.decisions[d.value] for d in LABEL_ERRORS),
                    _num(r.true_negative_share),
                    _num(r.false_negative_share),
                ]
                for r in report.rounds
            ],
        )
    if name in ("accuracy", "train_loss"):
        return _csv(
            ["network", "version", name],
            [[c.network, c.version, _num(getattr(c, name))] for c in report.cells],
        )
    return _csv(
        ["image_id", "name", "labels_before", "labels_after", "image_removed"],
        [[s.image_id, s.name, len(s.before), len(s.after), int(s.removed)] for s in report.samples],
    )


def figure_png(report: CampaignReport, name: str, *, session: Session, store: ObjectStore) -> bytes:
    """One figure (`FIGURES`) as PNG bytes (the overlays read the sample images' RGB)."""
    from regrasp.grasp import drawing as viz

    _check_figure(name)
    rounds = [r.round_id for r in report.rounds]  # labelled by the rounds' own ids
    if name == "flagged":
        return viz.chart_flagged(
            rounds,
            flagged=[r.flagged for r in report.rounds],
            reviewed=[r.decided_flagged for r in report.rounds],
            title="Flagged images per round",
        )
    if name == "review_outcome":
        return viz.chart_metrics(
            rounds,
            series={
                "true negative (model wrong)": [_pct(r.true_negative_share) for r in report.rounds],
                "false negative (labels wrong)": [
                    _pct(r.false_negative_share) for r in report.rounds
                ],
            },
            ylabel="% of reviewed flagged images",
            title="Review outcome per round",
        )
    if name in ("accuracy", "train_loss"):
        scale = 100.0 if name == "accuracy" else 1.0
        series = {
            n: [_scaled(report.cell(n, v), name, scale) for v in report.versions]
            for n in report.networks
        }
        return viz.chart_metrics(
            report.versions,
            series=series,
            ylabel="test accuracy (%)" if name == "accuracy" else "final training loss",
            xlabel="dataset version",
            ticks=[f"v{v}" for v in report.versions],
            title=(
                f"Accuracy per network (test split of v{report.test_version})"
                if name == "accuracy"
                else "Training loss per network"
            ),
        )
    return _overlays(report, session=session, store=store)


def report_zip(session: Session, store: ObjectStore, campaign_id: int) -> bytes:
    """table.csv, table.md, report.json and every figure as PNG and CSV, zipped."""
    import json

    report = build_report(session, campaign_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("table.csv", table_csv(report))
        z.writestr("table.md", table_markdown(report))
        z.writestr("report.json", json.dumps(report_dict(report), indent=1))
        for name in FIGURES:
            z.writestr(f"{name}.csv", figure_csv(report, name))
            z.writestr(f"{name}.png", figure_png(report, name, session=session, store=store))
    return buffer.getvalue()


def report_dict(report: CampaignReport) -> dict[str, Any]:
    """JSON-ready form of the report (what `GET /campaigns/{id}/report` returns)."""
    return {
        "campaign_id": report.campaign_id,
        "dataset_id": report.dataset_id,
        "name": report.name,
        "state": report.state,
        "networks": report.networks,
        "versions": report.versions,
        "test_version": report.test_version,
        "test_images": report.test_images,
        "cells": [{k: getattr(c, k) for k in Cell.__dataclass_fields__} for c in report.cells],
        "rounds": [r.to_dict() for r in report.rounds],
        "stop": {"stop": report.stop.stop, "reason": report.stop.reason},
        "samples": [
            {
                "image_id": s.image_id,
                "name": s.name,
                "labels_before": len(s.before),
                "labels_after": len(s.after),
                "image_removed": s.removed,
            }
            for s in report.samples
        ],
        "figures": list(FIGURES),
    }


# --- private ----------------------------------------------------------------------------


def _samples(session: Session, dataset_id: int, lo: int, hi: int, count: int) -> list[SampleChange]:
    """Up to `count` changed images, spread evenly over the changed ids (deterministic)."""
    d = versions.diff(session, dataset_id, lo, hi)
    changed = np.unique(
        np.concatenate([d.added.image_ids, d.removed.image_ids, d.removed_image_ids])
    ).astype(np.int64)
    if not len(changed) or count <= 0:
        return []
    spread = np.linspace(0, len(changed) - 1, min(count, len(changed))).round().astype(np.int64)
    picks = changed[np.unique(spread)]
    removed = set(d.removed_image_ids.tolist())
    out = []
    for image_id in picks.tolist():
        image = session.get(Image, image_id)
        before = versions.labels_for_image(session, image_id, lo).grasps
        after = (
            np.zeros((0, 5))
            if image_id in removed
            else versions.labels_for_image(session, image_id, hi).grasps
        )
        out.append(
            SampleChange(
                int(image_id), image.name if image else "", before, after, image_id in removed
            )
        )
    return out


def _overlays(report: CampaignReport, *, session: Session, store: ObjectStore) -> bytes:
    from regrasp.grasp import drawing as viz
    from regrasp.grasp.imaging import decode_depth, decode_rgb

    panels = []
    for sample in report.samples:
        image = session.get(Image, sample.image_id)
        if image is None:
            continue
        if image.rgb_key:
            picture = decode_rgb(store.get_bytes(image.rgb_key))
        else:
            picture = viz.depth_to_rgb(decode_depth(store.get_bytes(image.depth_key)))
        panels.append(viz.before_after(picture, before=sample.before, after=sample.after, size=320))
    if not panels:  # no label changed: an empty (white) picture, the CSV says why
        return viz.to_png(np.full((32, 320, 3), 255, dtype=np.uint8))
    width = max(p.shape[1] for p in panels)
    gap = np.full((8, width, 3), 255, dtype=np.uint8)
    rows: list[np.ndarray] = []
    for p in panels:
        pad = np.full((p.shape[0], width - p.shape[1], 3), 255, dtype=np.uint8)
        rows += [np.concatenate([p, pad], axis=1), gap]
    return viz.to_png(np.concatenate(rows[:-1], axis=0))


def _check_figure(name: str) -> None:
    if name not in FIGURES:
        raise NotFound(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")


def _scaled(cell: Cell, name: str, scale: float) -> float | None:
    value = getattr(cell, name)
    return None if value is None else float(value) * scale


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _opt(value: int | None) -> int | str:
    return "" if value is None else value


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
