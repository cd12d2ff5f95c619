"""The orchestrator's FastAPI application: `create_app(settings)`.

Start-up (the lifespan) brings the database to the code's schema (development: upgrade;
deployment: verify and refuse with the fix command), creates the first admin when there is
none, marks imports orphaned by a dead process as failed, and starts the import runner.
Every domain error leaves as `{"error": "...", "detail": "..."}` with its HTTP status from
ONE handler (`regrasp.platform.web`, shared by every service); nothing else reaches a client but a
generic 500. Bodies over REGRASP_MAX_REQUEST_BYTES are refused with 413 before they are
read (`regrasp.platform.web.body_limit`).
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from regrasp.data.ingest import fail_stale_imports
from regrasp.platform.accounts import create_user
from regrasp.platform.errors import RegraspError
from regrasp.platform.settings import Settings
from regrasp.platform.store.db import migrations
from regrasp.platform.store.db.engine import make_engine, make_session_factory, session_scope
from regrasp.platform.store.db.tables import User, UserRole
from regrasp.platform.store.objects import store_from_settings
from regrasp.platform.store.objects.base import ObjectStore
from regrasp.platform.web.body_limit import BodySizeLimit
from regrasp.platform.web.fastapi import install_error_handlers
from regrasp.workflows.imports import ImportRunner
from regrasp.workflows.rounds.machine import RetryPolicy, Services
from regrasp.workflows.rounds.runner import RoundRunner
from services.orchestrator.routes import api_keys, auth, datasets, images, models, users, versions
from services.orchestrator.routes import campaigns as campaign_routes
from services.orchestrator.routes import review as review_routes
from services.orchestrator.routes import rounds as rounds_routes

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """The application over the database and object store that `settings` name."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.orchestrator_threads,
        pre_ping=settings.database_pre_ping,
    )
    session_factory = make_session_factory(engine)
    store = store_from_settings(settings)
    runner = ImportRunner(
        engine,
        session_factory,
        store,
        work_dir=settings.data_dir / "tmp",
        workers=settings.import_workers,
        max_file_bytes=settings.import_max_file_bytes,
        import_roots=settings.import_roots,
    )
    round_runner = _round_runner(settings, engine, session_factory, store)
    campaign_runner = _campaign_runner(settings, engine, session_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in AnyIO's worker threads: as many as the pool has connections.
        anyio.to_thread.current_default_thread_limiter().total_tokens = (
            settings.orchestrator_threads
        )
        prepare_database(settings)
        with session_scope(session_factory) as session:
            fail_stale_imports(session)
        runner.start()
        round_runner.start()
        campaign_runner.start()
        try:
            yield
        finally:
            campaign_runner.stop()
            round_runner.stop()
            runner.stop()
            engine.dispose()

    app = FastAPI(
        title="Regrasp orchestrator",
        summary="Datasets, versions, users and exports of the human-in-the-loop grasp loop.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.store = store
    app.state.auth_cache = {}
    app.state.import_runner = runner
    app.state.round_runner = round_runner
    app.state.campaign_runner = campaign_runner

    install_error_handlers(app)  # {"error", "detail"}: the shape of every service
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    # The review queue first: routes are matched in order, router by router, and its
    # claims and decisions are most of the traffic (no other router's paths overlap).
    app.include_router(review_routes.router)
    for module in (auth, users, api_keys, models, datasets, versions, images):
        app.include_router(module.router)
    app.include_router(rounds_routes.router)
    app.include_router(campaign_routes.router)
    app.include_router(campaign_routes.refinement_router)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["meta"], responses={503: {"description": "Not ready."}})
    def readyz() -> JSONResponse:
        """Readiness: the database answers and its schema matches the code."""
        try:
            migrations.check_schema(app.state.engine)
        except RegraspError as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app


def app_from_environment() -> FastAPI:
    """The app over the settings in the environment: each uvicorn worker process's factory."""
    from regrasp.platform.settings import load_settings

    return create_app(load_settings())


def access_log_on(settings: Settings) -> bool:
    """Per-request access lines: on in development, off in deployment unless asked for."""
    if settings.access_log is not None:
        return settings.access_log
    return settings.mode == "development"


def prepare_database(settings: Settings, *, ensure: bool = True) -> None:
    """Migrate (development) or verify (deployment) the schema; then, with `ensure`, make
    sure an admin exists (`ensure_admin`)."""
    migrations.prepare(settings.database_url, mode=settings.mode)
    if not ensure:
        return
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            ensure_admin(session, settings)
    finally:
        engine.dispose()


def ensure_admin(session: sa.orm.Session, settings: Settings) -> str | None:
    """Create `settings.admin_username` as admin when no admin exists.

    Uses REGRASP_ADMIN_PASSWORD, or generates a password and prints it once on stderr
    (returned too). Returns None when an admin already exists.
    """
    exists = session.scalar(sa.select(User.id).where(User.role == UserRole.admin).limit(1))
    if exists is not None:
        return None
    given = settings.admin_password.get_secret_value() if settings.admin_password else None
    password = given or secrets.token_urlsafe(18)
    create_user(session, username=settings.admin_username, password=password, role="admin")
    if not given:
        print(
            f"regrasp: created admin {settings.admin_username!r} with password {password} "
            "(shown once; set REGRASP_ADMIN_PASSWORD to choose it)",
            file=sys.stderr,
        )
    log.warning("created the first admin %r", settings.admin_username)
    return password


def _services(settings: Settings, store: ObjectStore | None = None) -> Services:
    """Where the workflows find the other services, and how long they retry them (rounds
    and campaigns share the policy); rounds read object masks from `store`."""
    return Services(
        store=store,
        trainer_url=settings.trainer_url,
        inference_urls=tuple(settings.inference_urls),
        credential=settings.service_api_key.get_secret_value(),
        retries=settings.round_chunk_retries,
        retry=RetryPolicy(
            budget_seconds=settings.round_retry_seconds,
            max_attempts=settings.round_retry_max_attempts,
            initial_seconds=settings.round_retry_initial_seconds,
            max_delay_seconds=settings.round_retry_max_delay_seconds,
        ),
    )


def _round_runner(
    settings: Settings, engine: sa.Engine, session_factory, store: ObjectStore
) -> RoundRunner:  # type: ignore[no-untyped-def]
    """The background driver of refinement rounds (`regrasp.workflows.rounds.runner`)."""
    return RoundRunner(engine, session_factory, _services(settings, store))


def _campaign_runner(settings: Settings, engine: sa.Engine, session_factory):  # type: ignore[no-untyped-def]
    """The background driver of benchmark campaigns (`regrasp.workflows.campaigns.runner`)."""
    from regrasp.workflows.campaigns.runner import CampaignRunner

    return CampaignRunner(engine, session_factory, _services(settings))
