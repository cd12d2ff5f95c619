"""API keys (admins): make a robot's key, see every key, revoke one.

A key is shown once, right after it is made. The scope is chosen here and defaults to
`robot` (only the inference service's /predict and /model), whoever makes it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from regrasp.api.accounts import ApiKeyCreate
from regrasp.platform.errors import RegraspError
from services.review_ui import state

SCOPES = {
    "robot": "robot: only POST /predict and GET /model of the inference service",
    "service": "service: machine-to-machine, like the services' shared key",
    "admin": "admin: acts as you, everywhere",
}
#: session_state key of the key just made (shown once, until the next action).
MADE = "api_keys_made"

st.title("API keys")
api = state.api()
st.session_state.setdefault(MADE, None)

with st.form("api_key_create", clear_on_submit=True):
    name = st.text_input("What the key is for", key="api_key_name", placeholder="ur5-cell-1")
    scope = st.selectbox("Scope", list(SCOPES), format_func=SCOPES.__getitem__, key="api_key_scope")
    if st.form_submit_button("Create key"):
        try:
            st.session_state[MADE] = api.create_api_key(ApiKeyCreate(name=name, scope=scope))
        except (RegraspError, ValueError) as exc:
            st.session_state[MADE] = None
            st.error(
                " ".join(str(exc).split())
                if isinstance(exc, RegraspError)
                else "the key needs a name of 1-128 characters"
            )

made = st.session_state[MADE]
if made is not None:
    st.success(
        f"Key {made.id} “{made.name}” ({made.scope}) made. Copy it now: it is not shown again."
    )
    st.code(made.key, language=None)

keys = api.list_api_keys()
if not keys:
    st.info("No API keys yet.")
    st.stop()
table = pd.DataFrame(
    [
        {
            "id": k.id,
            "name": k.name,
            "scope": k.scope,
            "key": f"rgk_{k.prefix}_…",
            "owner": k.owner_id,
            "state": "revoked" if k.revoked else "active",
            "last used": k.last_used_at,
            "created": k.created_at,
        }
        for k in keys
    ]
)
st.dataframe(table, hide_index=True, width="stretch")

active = {k.id: f"#{k.id} {k.name} ({k.scope})" for k in keys if not k.revoked}
if active:
    revoke_id = st.selectbox(
        "Revoke", list(active), format_func=active.__getitem__, key="api_key_revoke_pick"
    )
    if st.button("Revoke key", key="api_key_revoke", type="primary"):
        try:
            api.revoke_api_key(revoke_id)
        except RegraspError as exc:
            st.error(" ".join(str(exc).split()))
        else:
            st.session_state[MADE] = None
            st.rerun()
