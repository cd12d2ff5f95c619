"""Credential primitives: hashes never store the secret, tokens expire and resist tampering."""

from __future__ import annotations

import pytest

from regrasp.platform.auth import (
    api_key_prefix,
    hash_password,
    issue_token,
    new_api_key,
    verify_api_key,
    verify_password,
    verify_token,
)
from regrasp.platform.errors import InvalidInput, Unauthenticated


def test_password_hash_is_salted_and_verifies():
    h1, h2 = hash_password("correct horse"), hash_password("correct horse")
    assert h1 != h2 and "correct horse" not in h1
    assert verify_password("correct horse", h1) and verify_password("correct horse", h2)
    assert not verify_password("correct horsE", h1)
    assert not verify_password("correct horse", "garbage")
    assert not verify_password("correct horse", "bcrypt$1$2$3$4$5")


def test_short_password_refused():
    with pytest.raises(InvalidInput, match="at least"):
        hash_password("short")


def test_api_key_round_trip():
    k = new_api_key()
    assert k.key.startswith("rgk_") and k.prefix in k.key and k.key_hash != k.key
    assert api_key_prefix(k.key) == k.prefix
    assert verify_api_key(k.key, k.key_hash)
    assert not verify_api_key(k.key + "x", k.key_hash)
    assert new_api_key().key != k.key


@pytest.mark.parametrize("bad", ["", "rgk", "xyz_12345678_abc", "rgk_123_abc", "rgk_12345678_"])
def test_malformed_api_key(bad):
    with pytest.raises(Unauthenticated):
        api_key_prefix(bad)


def test_token_valid_then_expired():
    t = issue_token("s" * 32, subject="7", role="admin", ttl_seconds=60)
    claims = verify_token("s" * 32, t)
    assert (claims.subject, claims.role) == ("7", "admin")
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token("s" * 32, t, now=claims.expires_at + 1)


def test_token_tampering_and_wrong_secret_rejected():
    t = issue_token("s" * 32, subject="7", role="annotator", ttl_seconds=60)
    body, sig = t.split(".")
    forged = issue_token("other" * 8, subject="7", role="admin", ttl_seconds=60).split(".")[0]
    for bad in (f"{forged}.{sig}", t + "x", "nodot", f"{body}.", ""):
        with pytest.raises(Unauthenticated):
            verify_token("s" * 32, bad)
    with pytest.raises(Unauthenticated):
        verify_token("t" * 32, t)
