"""Entry point of the review UI: `streamlit run services/review_ui/streamlit_app.py`.

Routing only: which pages a visitor sees depends on who they are (nobody: sign in;
annotator: home and review; admin: also the lead's pages, People included). The pages
live in app_pages/.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Streamlit runs this file as a script: make `services.review_ui` importable from it.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

import streamlit as st  # noqa: E402

from services.review_ui import state  # noqa: E402

st.set_page_config(page_title="Regrasp review", page_icon=":material/pan_tool:", layout="wide")
state.client_options()
state.init()

login = st.Page("app_pages/login.py", title="Sign in", icon=":material/login:")
if state.user() is None:
    page = st.navigation([login], position="hidden")
else:
    pages = {
        "Review": [
            st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
            st.Page("app_pages/review.py", title="Review", icon=":material/task_alt:"),
        ]
    }
    if state.is_admin():
        pages["Lead"] = [
            st.Page("app_pages/rounds.py", title="Rounds", icon=":material/monitoring:"),
            st.Page("app_pages/annotators.py", title="Annotators", icon=":material/group:"),
            st.Page("app_pages/adjudication.py", title="Adjudication", icon=":material/balance:"),
            st.Page("app_pages/diff.py", title="Version diff", icon=":material/difference:"),
            st.Page("app_pages/campaigns.py", title="Campaigns", icon=":material/leaderboard:"),
            st.Page("app_pages/people.py", title="People", icon=":material/person_add:"),
            st.Page("app_pages/models.py", title="Models", icon=":material/model_training:"),
            st.Page("app_pages/api_keys.py", title="API keys", icon=":material/key:"),
        ]
    # Signed in: no "Sign in" entry (signing out is the sidebar's button).
    page = st.navigation(pages)
    with st.sidebar:
        user = state.user()
        st.caption(f"Signed in as **{user.username}** ({user.role})")
        if st.button("Sign out", key="logout"):
            state.logout()
            st.rerun()
page.run()
