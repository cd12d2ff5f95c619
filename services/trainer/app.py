"""The trainer's FastAPI application: `create_app(settings)`.

At start the database schema is upgraded (development) or checked (deployment, where a
schema behind the code refuses to start with the command that fixes it). Domain errors
become `{"error": message, "detail": message}` with their HTTP status
(`regrasp.platform.web`, shared by every service); malformed requests a 422 naming each
bad field; bodies over REGRASP_MAX_REQUEST_BYTES a 413 before they are
read. No traceback ever reaches a client. One transaction per request, committed by the
session dependency (`regrasp.platform.web.fastapi.SessionDep`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, make_session_factory
from regrasp.platform.web.body_limit import BodySizeLimit
from regrasp.platform.web.fastapi import install_error_handlers
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
    app.state.session_factory = make_session_factory(engine)
    app.include_router(router)
    install_error_handlers(app)  # {"error", "detail"}: the shape of every service
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
