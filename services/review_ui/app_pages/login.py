"""Sign in with a username and password (the orchestrator issues the token)."""

from __future__ import annotations

import streamlit as st

from regrasp.platform.errors import RegraspError
from services.review_ui import state

st.title("Regrasp review")
if state.user() is not None:
    st.switch_page("app_pages/home.py")

username = st.text_input("Username", key="login_username")
password = st.text_input("Password", type="password", key="login_password")
if st.button("Sign in", key="login_submit", type="primary", shortcut="Enter"):
    try:
        state.login(username, password)
    except RegraspError as exc:
        st.error(str(exc))
    else:
        st.rerun()
