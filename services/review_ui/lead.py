"""Streamlit pieces of the lead's pages: a round's progress, its audit, the apply
confirmation, the next step once a queue is empty, and the forms that start rounds and
campaigns.

The words come from `regrasp.workflows.rounds.describe` (the console says the same); every call
goes through the orchestrator's typed client, and a refusal becomes one line on the page.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st
from pydantic import ValidationError

from regrasp.api.campaigns import CampaignCreate
from regrasp.api.datasets import DatasetPublic
from regrasp.api.refinement import AuditCreate
from regrasp.api.rounds import RoundCreate, RoundPublic
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.errors import RegraspError
from regrasp.workflows.rounds.describe import apply_summary, round_summary
from services.review_ui import state

#: States in which a round is working on its own (nobody needs to act).
ACTIVE_STATES = ("created", "training", "predicting", "applying")


def round_label(rnd: RoundPublic, names: Mapping[int, str]) -> str:
    """The round and its dataset by name, e.g. "round 3 on jacquard v2"."""
    dataset = names.get(rnd.dataset_id, f"dataset {rnd.dataset_id}")
    return f"round {rnd.id} on {dataset} v{rnd.base_version}"


def round_text(rnd: RoundPublic, names: Mapping[int, str]) -> str:
    """The round's state in words (`round_summary`), its dataset named."""
    return round_summary(rnd).replace(f"round {rnd.id}", round_label(rnd, names), 1)


def round_progress(rnd: RoundPublic, names: Mapping[int, str]) -> None:
    """A working round: a progress bar while it trains (epoch n of N, loss, ETA), its
    state in words otherwise."""
    if rnd.state == "training" and rnd.training:
        done = sum(t.progress for t in rnd.training) / len(rnd.training)
        st.progress(min(1.0, max(0.0, done)), text=round_text(rnd, names))
    else:
        st.info(round_text(rnd, names))


def queue_done(rnd: RoundPublic, names: Mapping[int, str]) -> None:
    """What the lead does once every flagged image of a reviewing round is decided."""
    if state.is_admin():
        st.success(
            f"Every flagged image of {round_label(rnd, names)} is decided. Next step: apply "
            "the round, which makes the next dataset version."
        )
        st.page_link(
            "app_pages/rounds.py", label=f"Apply round {rnd.id}", icon=":material/done_all:"
        )
    else:
        st.success("Nothing is left to review in this round. Thank you!")


def after_queue(round_id: int) -> None:
    """Shown to the lead when their review queue is empty: the next step, not just thanks.

    Every item decided: apply the round (link to Rounds). Items still with annotators or
    waiting for an adjudication: say how many and where.
    """
    if not state.is_admin():
        return
    stats = state.api().review_stats(round_id)
    if stats.pending == 0 and stats.leased == 0 and stats.adjudication == 0:
        st.info(f"Every flagged image of round {round_id} is decided. Next step: apply it.")
        st.page_link(
            "app_pages/rounds.py", label=f"Apply round {round_id}", icon=":material/done_all:"
        )
        return
    waiting = []
    if stats.pending or stats.leased:
        waiting.append(f"{stats.pending + stats.leased} items are still with annotators")
    if stats.adjudication:
        waiting.append(f"{stats.adjudication} disagreements wait for you on Adjudication")
    st.info("; ".join(waiting) + ". Apply the round once they are done (or apply with force).")
    st.page_link("app_pages/rounds.py", label="Rounds", icon=":material/monitoring:")


def audit_section(api: OrchestratorClient, rnd: RoundPublic) -> None:
    """Queue an audit of a reviewing round's unflagged images: without one its label-noise
    estimate is only a lower bound (`regrasp.refine.refinement_stats`)."""
    with st.form(f"audit_{rnd.id}"):
        st.markdown(
            f"**Audit round {rnd.id}**: reviewers also see unflagged images, so the "
            "label-noise estimate gets an upper bound and the errors the flag missed are fixed."
        )
        left, right = st.columns(2)
        count = left.number_input(
            "Random sample of the unflagged",
            min_value=0,
            max_value=100_000,
            value=25,
            step=1,
            key=f"audit_count_{rnd.id}",
        )
        top = right.number_input(
            "First, every one of the highest-ranked",
            min_value=0,
            max_value=100_000,
            value=25,
            step=1,
            key=f"audit_top_{rnd.id}",
            help="The unflagged images the flag ranks highest, all of them: where the errors "
            "it missed sit. Fixed by the round's first audit.",
        )
        if st.form_submit_button("Queue the audit", key=f"audit_submit_{rnd.id}"):
            try:
                done = api.add_audit(rnd.id, AuditCreate(count=int(count), top=int(top)))
            except RegraspError as exc:
                st.error(str(exc))
            else:
                st.success(f"{done.added} audit items queued ({done.audited} in the round).")


def apply_section(api: OrchestratorClient, rnd: RoundPublic, names: Mapping[int, str]) -> None:
    """What applying would change, a confirmation, then the apply itself."""
    try:
        preview = api.apply_preview(rnd.id)
    except RegraspError as exc:
        st.error(str(exc))
        return
    st.markdown(f"**Apply {round_label(rnd, names)}**: {apply_summary(preview)}.")
    cols = st.columns(4)
    cols[0].metric("Images removed", preview.images_removed)
    cols[1].metric("Grasps added", preview.grasps_added)
    cols[2].metric("Grasps removed (fixes)", preview.grasps_removed)
    cols[3].metric("Labels removed with images", preview.grasps_removed_with_images)
    st.caption(
        f"v{preview.base_version}: {preview.images_before} images, {preview.grasps_before} "
        f"grasps → next version: {preview.images_after} images, {preview.grasps_after} grasps."
    )
    force = False
    if preview.undecided:
        force = st.checkbox(
            f"Apply although {preview.undecided} items are undecided (they count as true "
            "negatives)",
            key=f"apply_force_{rnd.id}",
        )
    confirmed = st.checkbox(
        "I have read what will change", key=f"apply_confirm_{rnd.id}", value=False
    )
    ready = confirmed and (force or not preview.undecided)
    if st.button(f"Apply round {rnd.id}", key=f"apply_{rnd.id}", disabled=not ready):
        try:
            api.apply_round(rnd.id, force=force)
        except RegraspError as exc:
            st.error(str(exc))
        else:
            st.success(f"Round {rnd.id} is applying; the new version appears in a moment.")


def start_round_form(api: OrchestratorClient, datasets: list[DatasetPublic]) -> None:
    """Start a round with its main options (the rest keep the paper's defaults)."""
    with st.form("start_round"):
        st.markdown("**Start a round**")
        dataset = st.selectbox(
            "Dataset", datasets, format_func=lambda d: d.name, key="start_round_dataset"
        )
        left, right = st.columns(2)
        version = left.number_input(
            "Base version (blank: the latest)",
            min_value=0,
            value=None,
            step=1,
            key="start_round_version",
        )
        architecture = right.text_input(
            "Network", value="mobilenet_v2", key="start_round_architecture"
        )
        epochs = left.number_input(
            "Epochs", min_value=1, max_value=1000, value=100, key="start_round_epochs"
        )
        flag = right.number_input(
            "Flag below top-1 IoU",
            min_value=0.0,
            max_value=1.0,
            value=0.2,
            step=0.05,
            key="start_round_flag",
        )
        top_k = left.number_input(
            "Predictions kept per image",
            min_value=1,
            max_value=100,
            value=5,
            key="start_round_top_k",
        )
        double = right.number_input(
            "Double review fraction",
            min_value=0.0,
            max_value=1.0,
            value=0.0,
            step=0.05,
            key="start_round_double",
        )
        folds = left.number_input(
            "Out-of-fold models (0: one model)",
            min_value=0,
            max_value=10,
            value=0,
            key="start_round_folds",
        )
        flag_rule = right.selectbox(
            "Flag by",
            ("paper", "score"),
            format_func=lambda f: {
                "paper": "paper: top-1 misses every label",
                "score": "label-quality score (missing grasps too)",
            }[f],
            key="start_round_flag_rule",
        )
        budget = left.number_input(
            "Review budget, items (0: every flagged image)",
            min_value=0,
            value=0,
            key="start_round_budget",
        )
        hours = right.number_input(
            "Review budget, hours (0: none)",
            min_value=0.0,
            value=0.0,
            step=0.5,
            key="start_round_hours",
        )
        submitted = st.form_submit_button("Start round", key="start_round_submit")
    if not submitted or dataset is None:
        return
    try:
        request = RoundCreate(
            dataset_id=dataset.id,
            version=None if version is None else int(version),
            train={"architecture": architecture.strip(), "epochs": int(epochs)},
            flag_threshold=float(flag),
            top_k=int(top_k),
            double_review_fraction=float(double),
            folds=int(folds),
            flag=flag_rule,
            review_budget=int(budget) or None,
            review_budget_hours=float(hours) or None,
        )
        rnd = api.create_round(request)
    except ValidationError as exc:
        st.error(f"Invalid options: {_problems(exc)}")
    except RegraspError as exc:
        st.error(str(exc))
    else:
        st.success(f"Round {rnd.id} started on {dataset.name} v{rnd.base_version}.")


def start_campaign_form(api: OrchestratorClient, datasets: list[DatasetPublic]) -> None:
    """Start a campaign: networks × versions, scored on one test split."""
    with st.form("start_campaign"):
        st.markdown("**Start a campaign**")
        dataset = st.selectbox(
            "Dataset", datasets, format_func=lambda d: d.name, key="start_campaign_dataset"
        )
        networks = st.text_input(
            "Networks (comma-separated)", value="ggcnn,ggcnn2", key="start_campaign_networks"
        )
        versions = st.text_input(
            "Versions (comma-separated; blank: every version)",
            value="",
            key="start_campaign_versions",
        )
        left, right = st.columns(2)
        epochs = left.number_input(
            "Epochs", min_value=1, max_value=1000, value=100, key="start_campaign_epochs"
        )
        split = right.selectbox(
            "Test split",
            ["auto", "imported", "recipe"],
            format_func=lambda s: {
                "auto": "the import's split when it recorded one",
                "imported": "the split recorded at import",
                "recipe": "the training recipe's split",
            }[s],
            key="start_campaign_split",
        )
        name = st.text_input("Name (optional)", value="", key="start_campaign_name")
        submitted = st.form_submit_button("Start campaign", key="start_campaign_submit")
    if not submitted or dataset is None:
        return
    try:
        numbers = (
            [int(v) for v in versions.replace(" ", "").split(",") if v]
            if versions.strip()
            else [v.number for v in api.list_versions(dataset.id)]
        )
        request = CampaignCreate(
            dataset_id=dataset.id,
            name=name,
            networks=[n.strip() for n in networks.split(",") if n.strip()],
            versions=numbers,
            train={"epochs": int(epochs)},
            test_split=split,
        )
        campaign = api.create_campaign(request)
    except ValidationError as exc:
        st.error(f"Invalid options: {_problems(exc)}")
    except ValueError:  # int() of a version that is not a number
        st.error(f"Versions must be comma-separated numbers, got {versions!r}")
    except RegraspError as exc:
        st.error(str(exc))
    else:
        st.success(
            f"Campaign {campaign.id} started: {len(campaign.runs)} runs, test split of "
            f"v{campaign.test_version} ({campaign.test_images} images)."
        )


def _problems(exc: ValidationError) -> str:
    """`field: message; ...` on one line (a form's bad value, never a traceback)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or 'value'}: {e.get('msg', 'invalid')}"
        for e in exc.errors()
    )
