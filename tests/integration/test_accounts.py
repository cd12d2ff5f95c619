"""Users and API keys on both databases: hashed at rest, checked on every call."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from regrasp.platform.accounts import (
    authenticate_bearer,
    authenticate_password,
    create_api_key,
    create_user,
    login_token,
    revoke_api_key,
)
from regrasp.platform.errors import Conflict, InvalidInput, Unauthenticated
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import ApiKey, User

SECRET = "t" * 32
SERVICE_KEY = "s" * 32


def test_users_are_stored_hashed_and_log_in(migrated_engine):
    with session_scope(migrated_engine) as s:
        create_user(s, username="ana", password="annotate-all-day", role="annotator")
    with session_scope(migrated_engine) as s:
        row = s.scalar(sa.select(User).where(User.username == "ana"))
        assert "annotate-all-day" not in row.password_hash
        user = authenticate_password(s, "ana", "annotate-all-day")
        token = login_token(user, secret=SECRET, ttl_seconds=60)
        p = authenticate_bearer(s, token, token_secret=SECRET)
        assert (p.username, p.role, p.via, p.is_admin) == ("ana", "annotator", "token", False)
        for name, pw in (("ana", "wrong-password"), ("nobody", "annotate-all-day")):
            with pytest.raises(Unauthenticated, match="wrong username or password"):
                authenticate_password(s, name, pw)


def test_duplicate_and_invalid_users_refused(migrated_engine):
    with session_scope(migrated_engine) as s:
        create_user(s, username="lead", password="lead-password", role="admin")
    with pytest.raises(Conflict), session_scope(migrated_engine) as s:
        create_user(s, username="lead", password="other-password", role="admin")
    with pytest.raises(InvalidInput), session_scope(migrated_engine) as s:
        create_user(s, username="../etc", password="x" * 10, role="admin")
    with pytest.raises(InvalidInput), session_scope(migrated_engine) as s:
        create_user(s, username="bob", password="x" * 10, role="root")


def test_api_keys_hashed_checked_and_revocable(migrated_engine):
    with session_scope(migrated_engine) as s:
        owner = create_user(s, username="robot-lab", password="robot-password", role="annotator")
        made = create_api_key(s, owner_id=owner.id, name="ur5-cell-1")
    with session_scope(migrated_engine) as s:
        row = s.scalar(sa.select(ApiKey))
        assert made.key not in row.key_hash and row.last_used_at is None
        p = authenticate_bearer(s, made.key)
        assert (p.username, p.via) == ("robot-lab", "api_key")
    with session_scope(migrated_engine) as s:
        assert s.scalar(sa.select(ApiKey)).last_used_at is not None
        with pytest.raises(Unauthenticated):
            authenticate_bearer(s, made.key[:-1] + ("A" if made.key[-1] != "A" else "B"))
        revoke_api_key(s, row.id)
    with session_scope(migrated_engine) as s, pytest.raises(Unauthenticated):
        authenticate_bearer(s, made.key)


def test_service_key_and_missing_credentials(migrated_engine):
    with session_scope(migrated_engine) as s:
        p = authenticate_bearer(s, SERVICE_KEY, service_key=SERVICE_KEY)
        assert p.is_admin and p.via == "service_key"
        for bad in (None, "", "not-a-token", SERVICE_KEY + "x"):
            with pytest.raises(Unauthenticated):
                authenticate_bearer(s, bad, token_secret=SECRET, service_key=SERVICE_KEY)


def test_key_scope_is_chosen_not_inherited_from_the_owner(migrated_engine):
    from regrasp.platform.accounts import authorize_route
    from regrasp.platform.errors import PermissionDenied

    with session_scope(migrated_engine) as s:
        lead = create_user(s, username="lead", password="lead-password", role="admin")
        ana = create_user(s, username="ana", password="annotate-all-day", role="annotator")
        robot = create_api_key(s, owner_id=lead.id, name="arm").key  # default scope: robot
        service = create_api_key(s, owner_id=lead.id, name="ci", scope="service").key
        admin = create_api_key(s, owner_id=lead.id, name="ops", scope="admin").key
        with pytest.raises(InvalidInput, match="admin-scope key needs an admin owner"):
            create_api_key(s, owner_id=ana.id, name="sneaky", scope="admin")
        with pytest.raises(InvalidInput, match="unknown API key scope 'root'"):
            create_api_key(s, owner_id=lead.id, name="x", scope="root")
    with session_scope(migrated_engine) as s:
        p = authenticate_bearer(s, robot)
        assert (p.role, p.scope, p.is_admin) == ("robot", "robot", False)
        authorize_route(p, "inference", "POST", "/predict")
        authorize_route(p, "inference", "get", "/model")
        for service_name, method, path in [
            ("inference", "POST", "/predict_stored"),
            ("inference", "POST", "/warm"),
            ("inference", "GET", "/predict"),
            ("orchestrator", "GET", "/models"),
            ("trainer", "POST", "/jobs"),
        ]:
            with pytest.raises(PermissionDenied, match="robot API key"):
                authorize_route(p, service_name, method, path)
        p = authenticate_bearer(s, service)
        assert (p.role, p.scope, p.is_admin, p.user_id) == ("service", "service", True, None)
        p = authenticate_bearer(s, admin)
        assert (p.role, p.scope, p.is_admin, p.username) == ("admin", "admin", True, "lead")
        # An admin key follows its owner: demoted, the key is no longer an admin's.
        s.get(User, lead.id).role = "annotator"
    with session_scope(migrated_engine) as s:
        assert authenticate_bearer(s, admin).is_admin is False
