"""Users, login tokens and API keys (`/auth/login`, `/users`, `/api-keys`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from regrasp.api.common import Public, UtcDatetime
from regrasp.platform.auth import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

__all__ = [
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyPublic",
    "PasswordSet",
    "Role",
    "Token",
    "UserCreate",
    "UserPublic",
]

Role = Literal["admin", "annotator"]


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: UtcDatetime = Field(description="When the token stops being accepted (UTC).")
    expires_in: int = Field(description="Seconds from issue to expiry.")


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    role: Role = "annotator"


class PasswordSet(BaseModel):
    """A new password for a user (an admin's reset)."""

    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class UserPublic(Public):
    id: int
    username: str
    role: Role
    active: bool
    created_at: UtcDatetime


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="What the key is for.")
    owner_id: int | None = Field(None, description="User the key acts as (default: the caller).")
    scope: Literal["robot", "service", "admin"] = Field(
        "robot",
        description=(
            "robot: only the inference service's POST /predict and GET /model; service: "
            "machine-to-machine like the services' key; admin: acts as its admin owner."
        ),
    )


class ApiKeyPublic(Public):
    """A key as listed: never the key itself, only the prefix that identifies it."""

    id: int
    name: str
    prefix: str
    owner_id: int
    scope: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    revoked: bool


class ApiKeyCreated(ApiKeyPublic):
    """The answer to creating a key: the only time `key` is ever shown."""

    key: str
