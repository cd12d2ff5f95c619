"""The one error shape of every Regrasp HTTP service, and the FastAPI handlers that give it.

Every error answer, from the orchestrator, the trainer or the inference service, is
`{"error": message, "detail": message}` with the domain error's HTTP status: one sentence
for a person, never a traceback. `regrasp.clients` read either key. The inference
service's ASGI gate (`regrasp.serving.gate`) writes the same body; the FastAPI services
install `install_error_handlers`.
"""

from __future__ import annotations

import logging
from typing import Any

from regrasp.errors import RegraspError, TooManyRequests

logger = logging.getLogger(__name__)


def error_body(message: str) -> dict[str, str]:
    """`{"error": message, "detail": message}`: the body of every error response."""
    return {"error": message, "detail": message}


def install_error_handlers(app: Any) -> None:
    """Domain errors, malformed requests and anything unexpected as `error_body` answers
    (a FastAPI app; imported lazily so the library needs no FastAPI)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.requests import Request

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RegraspError)
        status = exc.http_status
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        if status >= 500:
            logger.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse(error_body(str(exc)), status_code=status, headers=headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(error_body("; ".join(parts) or "invalid request"), status_code=422)

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal error (logged on the server)"), status_code=500)

    app.add_exception_handler(RegraspError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
