"""Per-browser-session state of the review UI, and the one shared HTTP connection pool.

Every browser session signs in as its own user, so each holds its own
`OrchestratorClient` (its bearer token) in `st.session_state`; what is created once per
process with `st.cache_resource` is the connection pool those clients share and the
settings read at start. Nothing here talks to the database or the object store.
"""

from __future__ import annotations

import httpx
import streamlit as st

from regrasp.api.accounts import UserPublic
from regrasp.api.rounds import RoundPublic
from regrasp.clients.orchestrator import OrchestratorClient
from regrasp.platform.settings import Settings, load_settings
from services.review_ui.session import ReviewSession

#: session_state keys
API, USER, REVIEW, ROUND = "api", "user", "review_session", "round_id"


@st.cache_resource
def settings() -> Settings:
    """The settings, read once per process (REGRASP_ORCHESTRATOR_URL names the API)."""
    return load_settings()


@st.cache_resource
def transport() -> httpx.HTTPTransport:
    """One keep-alive connection pool to the orchestrator for every browser session."""
    return httpx.HTTPTransport(limits=httpx.Limits(max_connections=64))


def client_options() -> None:
    """What the browser may show, set from the app so every launcher gets it (the `serve`
    command, `streamlit run` in the images): tracebacks only in development mode, and
    never the developer menu or the "Deploy" button."""
    s = settings()
    show = s.mode == "development" if s.ui_error_details is None else s.ui_error_details
    details = "full" if show else "none"
    st.set_option("client.showErrorDetails", details)
    st.set_option("client.toolbarMode", "viewer")


def init() -> None:
    """Initialise this browser session's keys (idempotent, every run)."""
    st.session_state.setdefault(API, None)
    st.session_state.setdefault(USER, None)
    st.session_state.setdefault(REVIEW, None)
    st.session_state.setdefault(ROUND, None)


def login(username: str, password: str) -> UserPublic:
    """Sign in: a client with this user's token for the rest of the browser session."""
    client = OrchestratorClient(settings().orchestrator_url, transport=transport())
    client.login(username, password)
    user = client.me()
    st.session_state[API] = client
    st.session_state[USER] = user
    return user


def logout() -> None:
    session: ReviewSession | None = st.session_state.get(REVIEW)
    if session is not None:
        session.close()
    for key in (API, USER, REVIEW, ROUND):
        st.session_state[key] = None


def api() -> OrchestratorClient:
    client = st.session_state.get(API)
    if client is None:
        st.switch_page("app_pages/login.py")
    return client


def user() -> UserPublic | None:
    return st.session_state.get(USER)


def is_admin() -> bool:
    u = user()
    return u is not None and u.role == "admin"


def reviewing_rounds() -> list[RoundPublic]:
    """Rounds open for review, newest first."""
    return [r for r in api().list_rounds() if r.state == "reviewing"]


def dataset_names() -> dict[int, str]:
    """Dataset id → name: pages name datasets, never show their ids."""
    return {d.id: d.name for d in api().list_datasets()}


def choose_round(rounds: list[RoundPublic], *, label: str = "Round") -> int | None:
    """A round picker shared by the pages (remembers the choice in the session)."""
    if not rounds:
        return None
    names = dataset_names()
    ids = [r.id for r in rounds]
    current = st.session_state.get(ROUND)
    index = ids.index(current) if current in ids else 0
    chosen = st.selectbox(
        label,
        ids,
        index=index,
        format_func=lambda i: (
            f"round {i} ({names.get(_by_id(rounds, i).dataset_id, '?')} "
            f"v{_by_id(rounds, i).base_version}, {_by_id(rounds, i).state})"
        ),
        key=f"pick_{label}",
    )
    st.session_state[ROUND] = chosen
    return chosen


def review_session(round_id: int) -> ReviewSession:
    """This browser session's review of `round_id` (a new one when the round changes)."""
    session: ReviewSession | None = st.session_state.get(REVIEW)
    if session is None or session.round_id != round_id:
        if session is not None:
            session.close()
        session = ReviewSession(api(), round_id)
        session.start()
        st.session_state[REVIEW] = session
    return session


def _by_id(rounds: list[RoundPublic], round_id: int) -> RoundPublic:
    return next(r for r in rounds if r.id == round_id)
