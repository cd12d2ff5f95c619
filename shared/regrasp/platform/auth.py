"""Credentials: password hashing, API keys for robots and services, signed bearer tokens.

Pure functions over strings, no database: the orchestrator and inference services look
users and keys up and call these. Passwords use scrypt (memory-hard, in the standard
library) with a per-password salt. API keys are 256-bit random secrets, so a plain
SHA-256 is enough to store them (no dictionary to attack) and keeps the per-request
check fast. Tokens are HMAC-SHA256 signed claims with an expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from regrasp.platform.errors import InvalidInput, Unauthenticated

API_KEY_PREFIX = "rgk"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 8
#: Longest password accepted anywhere: no one types more, and a login with a longer one can
#: be refused before it costs a lookup, a hash or a recorded failure.
MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    """Salted scrypt hash encoded as `scrypt$n$r$p$salt$hash` (urlsafe base64)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    check_password_length(password)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password_length(password: str) -> None:
    """InvalidInput for a password longer than `MAX_PASSWORD_LENGTH` (none can be stored)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password longer than {MAX_PASSWORD_LENGTH} characters ({len(password)})"
        )


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches `encoded`; constant-time, False on any malformed hash."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, _unb64(digest))


@dataclass(frozen=True)
class NewApiKey:
    """A freshly made key: `key` is shown once; only `prefix` and `key_hash` are stored."""

    key: str
    prefix: str
    key_hash: str


def new_api_key() -> NewApiKey:
    """A key `rgk_<prefix>_<secret>`; the prefix finds the row, the hash proves the key."""
    prefix = secrets.token_hex(4)
    key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=prefix, key_hash=hash_api_key(key))


def api_key_prefix(key: str) -> str:
    """The lookup prefix of a presented key; Unauthenticated when it is not shaped like one."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 8 or not parts[2]:
        raise Unauthenticated("malformed API key")
    return parts[1]


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def verify_api_key(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), key_hash)


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    role: str
    expires_at: float


def issue_token(secret: str, *, subject: str, role: str, ttl_seconds: float) -> str:
    """A signed bearer token `<payload>.<signature>` valid for `ttl_seconds`."""
    payload = {"sub": subject, "role": role, "exp": time.time() + ttl_seconds}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_sign(secret, body)}"


def verify_token(secret: str, token: str, *, now: float | None = None) -> TokenClaims:
    """Claims of a valid, unexpired token; Unauthenticated (never a detail of why) otherwise."""
    try:
        body, signature = token.split(".")
    except ValueError:
        raise Unauthenticated("invalid token") from None
    if not hmac.compare_digest(signature, _sign(secret, body)):
        raise Unauthenticated("invalid token")
    try:
        payload = json.loads(_unb64(body))
        claims = TokenClaims(str(payload["sub"]), str(payload["role"]), float(payload["exp"]))
    except (ValueError, KeyError, TypeError):
        raise Unauthenticated("invalid token") from None
    if claims.expires_at <= (time.time() if now is None else now):
        raise Unauthenticated("token expired")
    return claims


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32
    )


def _sign(secret: str, body: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), body.encode("ascii"), hashlib.sha256)
    return _b64(mac.digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
