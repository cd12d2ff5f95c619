"""Streamlit pieces that more than one page shows (the pages themselves stay flat scripts)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from regrasp.clients.orchestrator import RoundRefinementPublic, StopAdvicePublic
from services.review_ui import overview


def refinement_section(rounds: Sequence[RoundRefinementPublic], stop: StopAdvicePublic) -> None:
    """The rounds' label-noise estimates and yield, and whether another round is worth it."""
    st.subheader("Refinement statistics")
    if rounds:
        st.dataframe(overview.refinement_table(rounds), hide_index=True, width="stretch")
    if stop.stop:
        st.success(f"Suggestion: stop refining. {stop.reason}")
    else:
        st.info(f"Suggestion: keep refining. {stop.reason}")
