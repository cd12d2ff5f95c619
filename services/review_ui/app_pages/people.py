"""People (admins): annotators and admins, adding them and resetting their passwords.

A password left blank is generated and shown once here; the orchestrator stores only its
hash. The same as `regrasp user add|list|passwd`.
"""

from __future__ import annotations

import secrets

import streamlit as st
from pydantic import ValidationError

from regrasp.api.accounts import UserCreate
from regrasp.platform.errors import RegraspError
from services.review_ui import state

st.title("People")
api = state.api()
users = api.list_users()
st.dataframe(
    [
        {
            "user": u.username,
            "role": u.role,
            "active": u.active,
            "since": f"{u.created_at:%Y-%m-%d}",
        }
        for u in users
    ],
    hide_index=True,
    width="stretch",
)


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg', 'invalid')}"


left, right = st.columns(2)
with left.form("add_user", clear_on_submit=True):
    st.markdown("**Add a person**")
    name = st.text_input("Username", key="add_user_name")
    role = st.selectbox("Role", ["annotator", "admin"], key="add_user_role")
    typed = st.text_input(
        "Password (blank: generate one)", type="password", key="add_user_password"
    )
    add = st.form_submit_button("Add", key="add_user_submit")
if add:
    chosen = typed or secrets.token_urlsafe(15)
    try:
        made = api.create_user(UserCreate(username=name.strip(), password=chosen, role=role))
    except ValidationError as exc:
        left.error(_problem(exc))
    except RegraspError as exc:
        left.error(str(exc))
    else:
        left.success(f"{made.username} ({made.role}) added.")
        if not typed:
            left.markdown("Their password, shown once (stored only as a hash):")
            left.code(chosen, language=None)

with right.form("reset_password", clear_on_submit=True):
    st.markdown("**Reset a password**")
    who = st.selectbox(
        "Person", users, format_func=lambda u: f"{u.username} ({u.role})", key="reset_user"
    )
    typed_new = st.text_input(
        "New password (blank: generate one)", type="password", key="reset_password"
    )
    reset = st.form_submit_button("Reset", key="reset_submit")
if reset and who is not None:
    chosen = typed_new or secrets.token_urlsafe(15)
    try:
        api.set_password(who.id, chosen)
    except RegraspError as exc:
        right.error(str(exc))
    else:
        right.success(f"The password of {who.username} is reset; the old one no longer works.")
        if not typed_new:
            right.markdown("The new password, shown once:")
            right.code(chosen, language=None)
