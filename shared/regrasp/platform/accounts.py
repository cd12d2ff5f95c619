"""Users and API keys in the database: who may call what.

Sits between the credential primitives (`regrasp.platform.auth`) and the tables. Every service
authenticates through here: the orchestrator's users log in with a password and get a
bearer token; robots and services present an API key. The services' shared key
(`REGRASP_SERVICE_API_KEY`) is accepted as a key of the built-in `service` principal so
the orchestrator can call the trainer and inference without a database row.

An API key has a scope, chosen when it is made and never taken from its owner's role: a
`robot` key may call only the inference service's `POST /predict` and `GET /model`
(`ROBOT_ROUTES`, enforced by `authorize_route` in every service), a `service` key acts as
the services do, an `admin` key acts as its (admin) owner. So a key an admin makes for a
robot cannot reload models, queue GPU jobs or read datasets.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass
from datetime import UTC, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from regrasp.platform.auth import (
    NewApiKey,
    api_key_prefix,
    check_password_length,
    hash_password,
    issue_token,
    new_api_key,
    verify_api_key,
    verify_password,
    verify_token,
)
from regrasp.platform.clock import utcnow
from regrasp.platform.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from regrasp.platform.store.db.tables import ApiKey, ApiKeyScope, User, UserRole

#: Role of callers authenticated by the shared service key (or a `service` API key).
SERVICE_ROLE = "service"
#: Role of callers authenticated by a `robot` API key.
ROBOT_ROLE = "robot"
#: The only (service, method, path) a `robot` key may call.
ROBOT_ROUTES = frozenset({("inference", "POST", "/predict"), ("inference", "GET", "/model")})
_USE_RESOLUTION = timedelta(minutes=1)
_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (by token or by one of their API keys) or the services."""

    user_id: int | None
    username: str
    role: str  # "admin", "annotator", SERVICE_ROLE or ROBOT_ROLE
    via: str  # "token", "api_key" or "service_key"
    scope: str | None = None  # an API key's scope; None for tokens and the service key

    @property
    def is_admin(self) -> bool:
        return self.role in (UserRole.admin.value, SERVICE_ROLE)

    @property
    def is_robot(self) -> bool:
        return self.role == ROBOT_ROLE


def authorize_route(principal: Principal, service: str, method: str, path: str) -> None:
    """PermissionDenied when `principal`'s key scope does not cover this route.

    Called by every service right after authentication, before any route runs, so a
    robot key is refused everywhere but `ROBOT_ROUTES` whatever a route itself checks.
    """
    if principal.is_robot and (service, method.upper(), path) not in ROBOT_ROUTES:
        raise PermissionDenied(
            "a robot API key may call only the inference service's POST /predict and GET /model"
        )


def create_user(session: Session, *, username: str, password: str, role: UserRole | str) -> User:
    """Add a user with a hashed password; Conflict when the name is taken."""
    if not username or len(username) > 128 or not set(username) <= _USERNAME_CHARS:
        raise InvalidInput("username must be 1-128 characters of letters, digits, '._-@'")
    try:
        role = UserRole(role)
    except ValueError:
        raise InvalidInput(f"unknown role {role!r}; known: admin, annotator") from None
    if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, role=role, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user_id: int, password: str) -> User:
    """Replace a user's password (stored hashed); NotFound for an unknown user.

    Tokens issued before stay valid until they expire (`REGRASP_TOKEN_TTL_SECONDS`);
    the old password stops working at once.
    """
    check_password_length(password)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    user.password_hash = hash_password(password)
    session.flush()
    return user


def authenticate_password(session: Session, username: str, password: str) -> User:
    """The active user with these credentials; one vague Unauthenticated otherwise.

    A password longer than any stored one is InvalidInput, before any lookup or hash.
    """
    check_password_length(password)
    user = session.scalar(sa.select(User).where(User.username == username))
    # Verify against a dummy hash for unknown users so timing does not reveal names.
    encoded = user.password_hash if user is not None else _dummy_hash()
    if not verify_password(password, encoded) or user is None or not user.active:
        raise Unauthenticated("wrong username or password")
    return user


def login_token(user: User, *, secret: str, ttl_seconds: float) -> str:
    return issue_token(secret, subject=str(user.id), role=user.role.value, ttl_seconds=ttl_seconds)


def create_api_key(
    session: Session,
    *,
    owner_id: int,
    name: str,
    scope: ApiKeyScope | str = ApiKeyScope.robot,
) -> NewApiKey:
    """A new key for `owner_id` with `scope` (default the least: `robot`); the returned
    `key` is the only time it is visible. An `admin` key needs an admin owner."""
    owner = session.get(User, owner_id)
    if owner is None:
        raise NotFound(f"user {owner_id} not found")
    if not name or len(name) > 128:
        raise InvalidInput("API key name must be 1-128 characters")
    scope = parse_scope(scope)
    if scope is ApiKeyScope.admin and owner.role is not UserRole.admin:
        raise InvalidInput(f"an admin-scope key needs an admin owner; {owner.username!r} is not")
    made = new_api_key()
    session.add(
        ApiKey(
            name=name,
            prefix=made.prefix,
            key_hash=made.key_hash,
            owner_id=owner_id,
            scope=scope,
        )
    )
    session.flush()
    return made


def parse_scope(scope: ApiKeyScope | str) -> ApiKeyScope:
    """The scope named `scope`; InvalidInput listing the known ones otherwise."""
    try:
        return ApiKeyScope(scope)
    except ValueError:
        known = ", ".join(s.value for s in ApiKeyScope)
        raise InvalidInput(f"unknown API key scope {scope!r}; known: {known}") from None


def revoke_api_key(session: Session, key_id: int) -> None:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key {key_id} not found")
    row.revoked = True


def authenticate_bearer(
    session: Session | None,
    credential: str | None,
    *,
    token_secret: str | None = None,
    service_key: str | None = None,
) -> Principal:
    """Resolve an `Authorization: Bearer` credential: service key, API key or user token.

    `session` may be None for services that accept only the service key and tokens.
    Raises Unauthenticated for anything else, never saying which check failed.
    """
    if not credential:
        raise Unauthenticated("missing bearer credential")
    if service_key and hmac.compare_digest(credential.encode(), service_key.encode()):
        return Principal(None, SERVICE_ROLE, SERVICE_ROLE, "service_key")
    if credential.startswith("rgk_"):
        if session is None:
            raise Unauthenticated("invalid API key")
        return _principal_from_api_key(session, credential)
    if token_secret:
        claims = verify_token(token_secret, credential)
        if session is None:
            return Principal(int(claims.subject), "", claims.role, "token")
        user = session.get(User, int(claims.subject))
        if user is None or not user.active:
            raise Unauthenticated("invalid token")
        return Principal(user.id, user.username, user.role.value, "token")
    raise Unauthenticated("invalid credential")


def _principal_from_api_key(session: Session, key: str) -> Principal:
    row = session.scalar(sa.select(ApiKey).where(ApiKey.prefix == api_key_prefix(key)))
    if row is None or row.revoked or not verify_api_key(key, row.key_hash):
        raise Unauthenticated("invalid API key")
    owner = session.get(User, row.owner_id)
    if owner is None or not owner.active:
        raise Unauthenticated("invalid API key")
    now = utcnow()
    # Record use at most once a minute: a robot calling many times a second must not turn
    # every read into a write (SQLite serialises writers).
    last = row.last_used_at
    if last is None or now - (last if last.tzinfo else last.replace(tzinfo=UTC)) > _USE_RESOLUTION:
        row.last_used_at = now
    scope = ApiKeyScope(row.scope)
    role = {
        ApiKeyScope.robot: ROBOT_ROLE,
        ApiKeyScope.service: SERVICE_ROLE,
        # Follows the owner: an admin demoted since the key was made loses its powers.
        ApiKeyScope.admin: owner.role.value,
    }[scope]
    # A service key is a machine, not a person: like the shared service key it has no user
    # id, so routes that act for a person (claiming review items) refuse it the same way.
    user_id = None if scope is ApiKeyScope.service else owner.id
    return Principal(user_id, owner.username, role, "api_key", scope=scope.value)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("timing-equaliser-not-a-password")
