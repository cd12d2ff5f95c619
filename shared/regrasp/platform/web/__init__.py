"""What every Regrasp HTTP service shares, so the orchestrator, the trainer and the inference
service answer and authenticate the same way.

- the one error body: `{"error": message, "detail": message}` with the domain error's
  HTTP status (`error_body`), one sentence for a person, never a traceback; the clients
  (`regrasp.clients.base`) read either key;
- the one reading of `Authorization: Bearer <credential>` (`bearer_credential`): a login
  token, an API key or the services' shared key, resolved by `regrasp.platform.accounts`;
- `body_limit`: bodies over the service's limit refused with 413 before they are read;
- `fastapi`: the FastAPI side (orchestrator, trainer): the error handlers, the settings,
  session and caller dependencies. The inference service (BentoML) puts the plain-ASGI
  gate `regrasp.serving.gate` in front instead, built on this module.

This module and `body_limit` import no web framework, so the inference service needs no
FastAPI.
"""

from __future__ import annotations

__all__ = ["bearer_credential", "error_body"]


def error_body(message: str) -> dict[str, str]:
    """`{"error": message, "detail": message}`: the body of every error response."""
    return {"error": message, "detail": message}


def bearer_credential(authorization: str | None) -> str | None:
    """The credential of an `Authorization` header value, or None when it is absent, empty or
    not of the bearer scheme (the scheme's case does not matter, blanks around are dropped)."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential
