"""Campaigns end to end: two networks × two versions through the real services.

The orchestrator and the trainer API run under uvicorn on 127.0.0.1 (threads of this
process) over one PostgreSQL database and a `file://` store, with two trainer workers
claiming jobs. Version 1 comes from a real round on a small synthetic dataset (its
predictions stand in for the inference step; the simulated reviewer decides, with an
audit of unflagged images). The campaign is started with the CLI, and its table and
every figure are checked against what the database and the trainer's jobs hold.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from regrasp.api.refinement import AuditCreate
from regrasp.cli import app as cli
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.data import versions
from regrasp.data.ingest import import_jacquard
from regrasp.data.synthetic.generate import generate_dataset
from regrasp.data.synthetic.manifest import read_manifest
from regrasp.data.synthetic.reviewer import SimulatedReviewer
from regrasp.learn.worker import Worker
from regrasp.platform.accounts import create_user
from regrasp.platform.errors import Conflict
from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope
from regrasp.platform.store.db.tables import (
    Campaign,
    Image,
    Job,
    Model,
    Prediction,
    ReviewItem,
    ReviewItemState,
    RoundState,
)
from regrasp.platform.store.objects import open_store
from regrasp.refine import refinement_stats
from regrasp.refine.campaigns.report import FIGURES
from regrasp.refine.review.decisions import decide
from regrasp.refine.review.items import create_items
from regrasp.refine.rounds.applying import apply_round
from regrasp.refine.rounds.config import RoundConfig
from regrasp.workflows.rounds import machine
from regrasp.workflows.rounds.predicting import score
from services.orchestrator.app import create_app as create_orchestrator
from services.review_ui.overview import FIGURE_CAPTIONS
from services.trainer.app import create_app as create_trainer
from tests.harness.inprocess import serve
from tests.harness.seeders import labelled_dataset
from tests.harness.ui import campaign_page

SERVICE_KEY = "campaign-service-key-0123456789ab"
ADMIN = ("lead", "lead-password-1")
TRAIN = {
    "epochs": 1,
    "batch_size": 4,
    "input_size": 32,
    "num_workers": 0,
    "augment": {"enabled": False},
    "decode": {"threshold": 0.0},
    "split": {"kind": "object", "val_fraction": 0.0, "test_fraction": 0.25},
}
#: Bound that only stops a hung test; nothing is timed.
WAIT_S = 300.0


@pytest.fixture
def stack(postgres_url, file_store_url, tmp_path):
    generate_dataset(
        tmp_path / "synth", images=16, objects=8, size=64, workers=1, seed=2, corrupt_fraction=0.5
    )
    migrations.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    bind = make_session_factory(engine)
    store = open_store(file_store_url)
    with session_scope(bind) as s:
        dataset_id = import_jacquard(s, store, tmp_path / "synth", name="camp")
    round_id = _refine_once(bind, dataset_id, tmp_path / "synth")

    settings = Settings(
        database_url=postgres_url,
        object_store_url=file_store_url,
        data_dir=tmp_path / "data",
        service_api_key=SERVICE_KEY,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
    )
    servers = contextlib.ExitStack()
    trainer_url = servers.enter_context(serve(create_trainer(settings, engine=engine), "trainer"))
    settings = settings.model_copy(update={"trainer_url": trainer_url})
    url = servers.enter_context(serve(create_orchestrator(settings), "orchestrator"))
    workers = [
        Worker(bind, store, worker_id=f"w{i}", poll_interval=0.2, device="cpu") for i in (1, 2)
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        yield {"url": url, "bind": bind, "dataset_id": dataset_id, "round_id": round_id}
    finally:
        for w in workers:
            w.shutdown.set()
        for t in threads:
            t.join(timeout=60)
        servers.close()
        engine.dispose()


def test_campaign_table_and_figures_match_the_stored_metrics(stack, tmp_path, monkeypatch):
    url, bind, dataset_id = stack["url"], stack["bind"], stack["dataset_id"]
    runner = CliRunner()
    auth = ["--url", url, "--username", ADMIN[0], "--password", ADMIN[1]]
    started = runner.invoke(
        cli,
        ["campaign", "start", str(dataset_id), "--networks", "ggcnn,ggcnn2", "--versions", "0,1"]
        + ["--config", json.dumps(TRAIN)]
        + auth,
    )
    assert started.exit_code == 0, started.output
    campaign_id = int(started.output.split()[1].rstrip(":"))

    with OrchestratorClient(url, timeout=120.0) as api:
        api.login(*ADMIN)
        campaign = api.wait_campaign(campaign_id, timeout=WAIT_S, poll=0.5)
        assert campaign.state == "done", campaign
        assert len(campaign.runs) == 4 and campaign.test_version == 1
        report = api.campaign_report(campaign_id)
        table = _rows(api.campaign_table_csv(campaign_id))
        figures = {n: api.campaign_figure(campaign_id, n) for n in FIGURES}
        numbers = {
            n: _rows(api.campaign_figure(campaign_id, n, fmt="csv").decode()) for n in FIGURES
        }
        refinement = api.refinement(dataset_id)
        with pytest.raises(Conflict):  # the round is applied: no audit any more
            api.add_audit(stack["round_id"], AuditCreate(count=1))
    # A finished campaign can be neither resumed nor cancelled: one line, exit 1.
    for command, why in (("resume", "not failed"), ("cancel", "nothing to cancel")):
        refused = subprocess.run(
            [sys.executable, "-m", "regrasp.cli", "campaign", command, str(campaign_id), *auth],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1 and why in refused.stderr, refused
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

    with session_scope(bind) as s:
        evaluations = {
            j.result["model_id"]: j.result
            for j in s.scalars(sa.select(Job).where(Job.kind == "evaluate"))
        }
        trainings = {
            j.result["model_id"]: j.result
            for j in s.scalars(sa.select(Job).where(Job.kind == "train"))
        }
        splits = {m.id: m.split for m in s.scalars(sa.select(Model))}
        test_ids = set(s.get(Campaign, campaign_id).test_image_ids)
        stats = refinement_stats.round_refinement(s, stack["round_id"])
        diff = versions.diff(s, dataset_id, 0, 1)

    # The table: one cell per run, every number the trainer's jobs reported.
    assert {(c.network, c.version) for c in report.cells} == {
        (n, v) for n in ("ggcnn", "ggcnn2") for v in (0, 1)
    }
    for cell, row in zip(report.cells, table, strict=True):
        evaluation, training = evaluations[cell.model_id], trainings[cell.model_id]
        assert cell.accuracy == evaluation["accuracy"] == float(row["accuracy"])
        assert cell.images == evaluation["images"] == len(test_ids) == report.test_images
        assert cell.train_loss == training["history"][-1]["train_loss"] == float(row["train_loss"])
        assert training["dataset_version"] == cell.version
        # No model trained on a test image, whatever version it trained on.
        assert splits[cell.model_id]["train"] and not set(splits[cell.model_id]["train"]) & test_ids
        best = max(c.accuracy for c in report.cells if c.version == cell.version)
        assert cell.best == (cell.accuracy == best) == (row["best"] == "1")

    # Figures 4 and 5 from the round; 6 and 7 from the runs; 8 from the version diff.
    for name, png in figures.items():
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.size > 0, name
    assert [int(r["flagged"]) for r in numbers["flagged"]] == [stats.flagged]
    # Figures 4 and 5 name rounds by their ids (round 1 is "1", not its position 0).
    assert [int(r["round"]) for r in numbers["flagged"]] == [stack["round_id"]]
    assert [int(r["round"]) for r in numbers["review_outcome"]] == [stack["round_id"]]
    outcome = numbers["review_outcome"][0]
    assert int(outcome["true_negative"]) == stats.decisions["true_negative"]
    assert (
        int(outcome["false_negative"]) == stats.decided_flagged - stats.decisions["true_negative"]
    )
    for name in ("accuracy", "train_loss"):
        assert {(r["network"], int(r["version"])): float(r[name]) for r in numbers[name]} == {
            (c.network, c.version): getattr(c, name) for c in report.cells
        }
    changed = set(diff.added.image_ids) | set(diff.removed.image_ids) | set(diff.removed_image_ids)
    assert changed and {int(r["image_id"]) for r in numbers["overlays"]} <= changed
    assert len(numbers["overlays"]) == min(4, len(changed))

    # Refinement statistics of the round, as the API reports them.
    (served,) = refinement.rounds
    assert served.flagged == stats.flagged and served.audited == stats.audited == 2
    assert served.noise_basis == "flagged_and_audit" and served.estimated_noise is not None
    assert served.yield_per_hour == pytest.approx(
        stats.label_errors_found / (stats.review_seconds / 3600)
    )

    # The CLI prints the table and unzips every file.
    shown = runner.invoke(
        cli, ["campaign", "report", str(campaign_id), "-o", str(tmp_path / "r")] + auth
    )
    assert shown.exit_code == 0, shown.output
    assert "ggcnn2" in shown.output and "*" in shown.output
    written = {p.name for p in (tmp_path / "r").iterdir()}
    assert {f"{n}.{ext}" for n in FIGURES for ext in ("png", "csv")} <= written
    assert {"table.csv", "table.md", "report.json"} <= written

    # The lead's Campaigns page in the review UI shows the same table, figures and stats.
    at = campaign_page(url, monkeypatch, campaign_id, ADMIN)
    (table_shown, refinement_shown) = at.dataframe
    shown_cells = table_shown.value.set_index("network")
    for cell in report.cells:
        text = shown_cells.loc[cell.network, f"v{cell.version}"]
        assert text == f"{cell.accuracy:.3f}" + (" *" if cell.best else "")
    assert [img.captions[0] for img in at.image] == [FIGURE_CAPTIONS[n] for n in FIGURES]
    assert len(at.download_button) == 1 + 2 * len(FIGURES)
    (row,) = refinement_shown.value.to_dict("records")
    assert (row["round"], row["flagged"], row["audited"]) == (
        stack["round_id"],
        stats.flagged,
        stats.audited,
    )
    assert row["label errors found"] == stats.label_errors_found


def _reviewing_round(s, n: int, flagged: int, priorities=None):  # type: ignore[no-untyped-def]
    """A round of n images in review whose first `flagged` are flagged (queued), with the
    unflagged ones' priorities; returns (round id, image ids, admin user id)."""
    dataset_id, ids = labelled_dataset(
        s,
        name="audit",
        image_names=[f"{i}_o" for i in range(n)],
        object_names=["o"] * n,
        size=64,
        owners=np.arange(n),
        grasps=[[32, 32, 0, 20, 10]] * n,
    )
    user = create_user(s, username="a", password="password-1", role="admin").id
    rnd = machine.create_round(
        s, dataset_id=dataset_id, version=0, config=RoundConfig(train={"epochs": 1})
    )
    rnd.state = RoundState.reviewing
    s.flush()
    for k, image_id in enumerate(ids):
        s.add(
            Prediction(
                round_id=rnd.id,
                image_id=int(image_id),
                grasps=[[32, 32, 0, 20, 10, 0.9]],
                best_iou=0.0 if k < flagged else 0.9,
                flagged=k < flagged,
                priority=1.0 if k < flagged or priorities is None else priorities[k - flagged],
            )
        )
    s.flush()
    create_items(s, rnd.id)
    return rnd.id, ids, user


def _decide_all(s, round_id: int, user: int, wrong: set[int], skip=frozenset()) -> None:  # type: ignore[no-untyped-def]
    """Every pending item of the round but those of the `skip` images: missing_label (one
    prediction accepted) on the `wrong` images, true_negative on the rest, 30 s each."""
    items = s.scalars(
        sa.select(ReviewItem).where(
            ReviewItem.round_id == round_id, ReviewItem.state == ReviewItemState.pending
        )
    ).all()
    for item in items:
        if item.image_id in skip:
            continue
        kind = "missing_label" if item.image_id in wrong else "true_negative"
        decide(
            s,
            item.id,
            user,
            item_version=item.version,
            decision=kind,
            accepted_predictions=[0] if kind == "missing_label" else [],
            seconds_taken=30.0,
        )


def test_audit_and_stop_advice(migrated_engine, tmp_path):
    """Audit items sample unflagged images once per seed; the noise estimate covers them."""
    bind = make_session_factory(migrated_engine)
    with session_scope(bind) as s:
        rnd_id, ids, user = _reviewing_round(s, 10, 4)  # images 0-3 flagged, the rest not
        assert refinement_stats.add_audit_items(s, rnd_id, count=3, seed=1) == 3
        assert refinement_stats.add_audit_items(s, rnd_id, count=3, seed=1) == 0  # same sample
        items = s.scalars(sa.select(ReviewItem).where(ReviewItem.round_id == rnd_id)).all()
        audit_ids = sorted(i.image_id for i in items if i.image_id not in set(ids[:4].tolist()))
        assert not any(i.audit_top for i in items)
        # Flagged: images 0 and 1 miss labels; audited: the first of the three does too.
        _decide_all(s, rnd_id, user, {int(ids[0]), int(ids[1]), audit_ids[0]})
        stats = refinement_stats.round_refinement(s, rnd_id)
    assert (stats.flagged, stats.audited, stats.decided_flagged, stats.decided_audit) == (
        4,
        3,
        4,
        3,
    )
    assert stats.flagged_error_rate == pytest.approx(2 / 4)
    assert stats.audit_error_rate == pytest.approx(1 / 3)
    assert stats.estimated_noise == pytest.approx((4 * 0.5 + 6 * (1 / 3)) / 10)
    low, high = stats.estimated_noise_low, stats.estimated_noise_high
    assert low < stats.estimated_noise < high
    assert stats.yield_per_hour == pytest.approx(3 / (7 * 30 / 3600))
    # One round cannot show a trend; a later round that finds nothing says stop.
    assert not refinement_stats.suggest_stop([stats]).stop
    quiet = refinement_stats.RoundRefinement(**{**stats.to_dict(), "label_errors_found": 0})
    assert refinement_stats.suggest_stop([stats, quiet]).stop


def test_audit_census_of_the_top_and_a_sample_of_the_rest(migrated_engine, tmp_path):
    """With `top`, the unflagged images the flag ranks highest are all audited and the
    random sample comes from the rest; the noise estimate weighs the two strata apart,
    each bound the sum of the strata's Wilson bounds."""
    bind = make_session_factory(migrated_engine)
    n, flagged = 12, 2
    priorities = [0.1, 0.9, 0.0, 0.7, 0.2, 0.8, 0.05, 0.3, 0.15, 0.25]  # of the 10 unflagged
    with session_scope(bind) as s:
        rnd_id, ids, user = _reviewing_round(s, n, flagged, priorities)
        unflagged = ids[flagged:]
        top = {int(unflagged[k]) for k in np.argsort(priorities)[::-1][:3]}  # 0.9, 0.8, 0.7
        assert refinement_stats.add_audit_items(s, rnd_id, count=2, seed=3, top=3) == 5
        assert refinement_stats.add_audit_items(s, rnd_id, count=2, seed=3, top=3) == 0
        with pytest.raises(Conflict, match="census of the top 3"):  # strata would overlap
            refinement_stats.add_audit_items(s, rnd_id, count=2, seed=3, top=2)
        with pytest.raises(Conflict, match="census of the top 3"):
            refinement_stats.add_audit_items(s, rnd_id, count=2, seed=3)
        assert refinement_stats.add_audit_items(s, rnd_id, count=4, seed=3, top=3) == 2
        items = s.scalars(sa.select(ReviewItem).where(ReviewItem.round_id == rnd_id)).all()
        census = {i.image_id for i in items if i.audit_top}
        sample = {i.image_id for i in items if i.image_id in set(unflagged.tolist())} - census
        assert census == top and len(sample) == 4 and not sample & top
        # Flagged: one error of 2; census: 2 of 3; sample: 1 of 4.
        wrong = {int(ids[0])} | set(sorted(census)[:2]) | {min(sample)}
        _decide_all(s, rnd_id, user, wrong, skip=census)
        # The census undecided: its images count as the flagged ones past a budget would,
        # between the flagged share and the sample's; the sample still covers the other 7.
        early = refinement_stats.round_refinement(s, rnd_id)
        assert early.decided_audit_top == 0 and early.audit_top_error_rate is None
        assert early.estimated_noise == pytest.approx(
            (2 * 0.5 + 3 * (0.5 + 0.25) / 2 + 7 * 0.25) / n
        )
        _decide_all(s, rnd_id, user, wrong)
        stats = refinement_stats.round_refinement(s, rnd_id)
    assert (stats.audited, stats.audited_top, stats.decided_audit, stats.decided_audit_top) == (
        7,
        3,
        7,
        3,
    )
    assert stats.audit_top_error_rate == pytest.approx(2 / 3)
    assert stats.audit_error_rate == 0.25
    assert stats.noise_basis == "flagged_and_audit"
    assert stats.estimated_noise == pytest.approx((2 * 0.5 + 3 * (2 / 3) + 7 * 0.25) / n)
    wf, wt, wu = (refinement_stats.wilson_interval(*k) for k in ((1, 2), (2, 3), (1, 4)))
    assert stats.estimated_noise_low == pytest.approx((2 * wf[0] + 3 * wt[0] + 7 * wu[0]) / n)
    assert stats.estimated_noise_high == pytest.approx((2 * wf[1] + 3 * wt[1] + 7 * wu[1]) / n)
    assert stats.label_errors_found == 4


def test_audit_census_through_the_api(migrated_engine, file_store_url, tmp_path):
    """POST /rounds/{id}/audit takes `top`; a changed census is a 409 with its reason, and
    an annotator may not add an audit."""
    from fastapi.testclient import TestClient

    bind = make_session_factory(migrated_engine)
    with session_scope(bind) as s:
        rnd_id, _, _ = _reviewing_round(s, 8, 2, [0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    settings = Settings(
        database_url=migrated_engine.url.render_as_string(hide_password=False),
        object_store_url=file_store_url,
        data_dir=tmp_path / "data",
        secret_key="x" * 40,
        admin_username=ADMIN[0],
        admin_password=ADMIN[1],
    )
    with TestClient(create_orchestrator(settings)) as client:

        def login(user: tuple[str, str]) -> dict[str, str]:
            r = client.post("/auth/login", data={"username": user[0], "password": user[1]})
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        headers = login(("a", "password-1"))  # the admin `_reviewing_round` made
        body = {"username": "ana", "password": "annotator-password", "role": "annotator"}
        assert client.post("/users", json=body, headers=headers).status_code == 201
        annotator = login(("ana", "annotator-password"))
        r = client.post(f"/rounds/{rnd_id}/audit", json={"count": 1, "top": 2}, headers=headers)
        assert r.status_code == 200, r.text
        assert (r.json()["added"], r.json()["audited"]) == (3, 3)
        r = client.post(f"/rounds/{rnd_id}/audit", json={"count": 1, "top": 1}, headers=headers)
        assert r.status_code == 409 and "census of the top 2" in r.json()["detail"], r.text
        r = client.post(f"/rounds/{rnd_id}/audit", json={"count": 1, "top": -1}, headers=headers)
        assert r.status_code == 422, r.text
        r = client.post(f"/rounds/{rnd_id}/audit", json={"count": 1, "top": 2}, headers=annotator)
        assert r.status_code == 403, r.text
    with session_scope(bind) as s:
        assert refinement_stats.round_refinement(s, rnd_id).audited_top == 2


# --- helpers ---------------------------------------------------------------------------------


def _refine_once(bind, dataset_id: int, synth) -> int:  # type: ignore[no-untyped-def]
    """Round 0 → version 1: truth grasps as the predictions, simulated reviews, an audit."""
    truth = read_manifest(synth).by_stem()
    with session_scope(bind) as s:
        reviewer_id = create_user(s, username="rev", password="password-1", role="annotator").id
        rnd = machine.create_round(
            s, dataset_id=dataset_id, version=0, config=RoundConfig(train={"epochs": 1})
        )
        rnd.state = RoundState.reviewing  # the predicting step's output is written below
        s.flush()
        round_id = rnd.id
        labels = versions.labels_at(s, dataset_id, 0)
        images = s.execute(
            sa.select(Image.id, Image.name).where(Image.dataset_id == dataset_id).order_by(Image.id)
        ).all()
        ids = np.array([i for i, _ in images])
        preds = [
            np.concatenate(
                [truth[name].grasps[:3], np.ones((min(3, len(truth[name].grasps)), 1))], 1
            )
            for _, name in images
        ]
        # Rotate every other image's predictions a quarter turn: those disagree with the labels.
        for k in range(0, len(preds), 2):
            preds[k][:, 2] += 90.0
        scores = score(preds, labels.grasps, np.searchsorted(ids, labels.image_ids), threshold=0.2)
        for k, (image_id, _) in enumerate(images):
            s.add(
                Prediction(
                    round_id=round_id,
                    image_id=int(image_id),
                    grasps=preds[k].tolist(),
                    best_iou=float(scores.best_iou[k]),
                    flagged=bool(scores.flagged[k]),
                    priority=float(scores.priority[k]),
                )
            )
        s.flush()
        create_items(s, round_id)
        assert refinement_stats.add_audit_items(s, round_id, count=2, seed=0) == 2
    reviewer = SimulatedReviewer(seed=0)
    names = dict(images)
    with session_scope(bind) as s:
        for item in s.scalars(sa.select(ReviewItem).where(ReviewItem.round_id == round_id)):
            mine = labels.image_ids == item.image_id
            pred = preds[int(np.flatnonzero(ids == item.image_id)[0])][:, :5]
            d = reviewer.review(truth[names[item.image_id]], labels.grasps[mine], pred)
            decide(
                s,
                item.id,
                reviewer_id,
                item_version=item.version,
                decision=d.kind,
                accepted_predictions=d.accepted_predictions,
                removed_grasp_ids=[int(labels.grasp_ids[mine][i]) for i in d.removed_labels],
                seconds_taken=12.0,
            )
    with session_scope(bind) as s:
        machine.request_apply(s, round_id, force=False, by=reviewer_id)
        assert apply_round(s, round_id) == 1
    return round_id


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))
