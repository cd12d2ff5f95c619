"""The trainer's FastAPI application: `create_app(settings)`.

At start the database schema is upgraded (development) or checked (deployment, where a
schema behind the code refuses to start with the command that fixes it). Domain errors
become `{"detail": message}` with their HTTP status; malformed requests a 422 whose
detail names each bad field; bodies over REGRASP_MAX_REQUEST_BYTES a 413 before they are
read. No traceback ever reaches a client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from regrasp.body_limit import BodySizeLimit
from regrasp.errors import RegraspError, Unauthenticated
from regrasp.settings import Settings
from regrasp.store.db import migrations
from regrasp.store.db.engine import make_engine, make_session_factory
from services.trainer.routes import router


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The trainer API over `settings.database_url` (or the given `engine`)."""
    owned = engine is None
    engine = engine if engine is not None else make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrations.prepare(engine, mode=settings.mode)
        yield
        if owned:
            engine.dispose()

    app = FastAPI(title="Regrasp trainer", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_session_factory(engine)
    app.include_router(router)
    app.add_exception_handler(RegraspError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegraspError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
    return JSONResponse({"detail": str(exc)}, status_code=exc.http_status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return JSONResponse({"detail": "invalid request: " + "; ".join(problems)}, status_code=422)
