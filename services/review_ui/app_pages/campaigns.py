"""Benchmark campaigns for the lead: the accuracy table (the paper's Table I), Figures 4–8,
and the refinement statistics of the dataset's rounds, each downloadable as PNG or CSV.

Everything shown is served by the orchestrator (`/campaigns/{id}/report`, `/table.csv`,
`/figures/{name}.png|csv`); this page only lays it out. The whole report as one zip is
`regrasp campaign report ID -o DIR`. A form starts a campaign (as `regrasp campaign start`).
"""

from __future__ import annotations

import streamlit as st

from services.review_ui import lead, overview, state, widgets

st.title("Campaigns")
api = state.api()
datasets = api.list_datasets()
names = {d.id: d.name for d in datasets}
campaigns = api.list_campaigns()
if datasets:
    with st.expander("Start a campaign", expanded=not campaigns):
        lead.start_campaign_form(api, datasets)
    campaigns = api.list_campaigns()
if not campaigns:
    st.info("No campaigns yet.")
    st.stop()
labels = {c.id: f"#{c.id} {c.name or names.get(c.dataset_id, '')} ({c.state})" for c in campaigns}
campaign_id = st.selectbox(
    "Campaign", list(labels), format_func=labels.__getitem__, key="campaign_pick"
)
report = api.campaign_report(campaign_id)
campaign = next(c for c in campaigns if c.id == campaign_id)
if campaign.error:  # why it failed, or which trainer call is being retried
    notice = st.error if campaign.state == "failed" else st.warning
    notice(campaign.error)
done = sum(c.accuracy is not None for c in report.cells)
st.caption(
    f"Dataset {names.get(report.dataset_id, report.dataset_id)} · state **{report.state}** · "
    f"{done} of {len(report.cells)} runs scored · test split: {report.test_images} images "
    f"of version {report.test_version}"
)

st.subheader("Accuracy (best of each version marked *)")
st.dataframe(overview.campaign_table(report), hide_index=True, width="stretch")
st.download_button(
    "Table (CSV)",
    api.campaign_table_csv(campaign_id),
    file_name=f"campaign-{campaign_id}-table.csv",
    mime="text/csv",
    key="campaign_table_csv",
)

st.subheader("Figures")
for name in report.figures:
    figure = api.campaign_figure(campaign_id, name)
    st.image(figure, caption=overview.FIGURE_CAPTIONS.get(name, name))
    png, csv = st.columns(2)
    png.download_button(
        "PNG",
        figure,
        file_name=f"campaign-{campaign_id}-{name}.png",
        mime="image/png",
        key=f"figure_png_{name}",
    )
    csv.download_button(
        "CSV",
        api.campaign_figure(campaign_id, name, fmt="csv"),
        file_name=f"campaign-{campaign_id}-{name}.csv",
        mime="text/csv",
        key=f"figure_csv_{name}",
    )

widgets.refinement_section(report.rounds, report.stop)
