"""The one place configuration is read: environment variables with the `REGRASP_` prefix.

Settings are built once in an entrypoint (`Settings()`) and passed down; nothing reads
the environment at import time. Development mode runs on embedded defaults (SQLite and a
local folder under `./.regrasp/`); deployment mode refuses to start while any secret
still has its development placeholder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from regrasp.platform.errors import ConfigError

#: Placeholder secrets: fine on a laptop, refused in deployment mode.
#: Every placeholder secret (dev defaults, `.env.example`) contains this marker.
PLACEHOLDER_MARKER = "change-me"
DEV_SECRET = "dev-insecure-change-me"
DEV_S3_ACCESS_KEY = "minioadmin"
DEV_S3_SECRET_KEY = "minioadmin"

DEFAULT_DATA_DIR = Path(".regrasp")


class Settings(BaseSettings):
    """Every knob of every service; the field name upper-cased with `REGRASP_` is its variable."""

    model_config = SettingsConfigDict(env_prefix="REGRASP_", extra="ignore")

    mode: Literal["development", "deployment"] = Field(
        "development",
        description=(
            "`deployment` refuses default secrets; `development` runs on embedded defaults."
        ),
    )
    ui_error_details: bool | None = Field(
        None,
        description="Show tracebacks in the review UI (None: only in development mode). "
        "The UI's containers run in development mode, having no secret to check, and set "
        "this false so a lab's annotators never see one.",
    )
    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="Folder for the embedded defaults (SQLite file, local object store, logs).",
    )
    database_url: str = Field(
        "",
        description=(
            "SQLAlchemy URL: `postgresql+psycopg://user:pass@host/db` in deployment, "
            "empty for an SQLite file under data_dir."
        ),
    )
    object_store_url: str = Field(
        "",
        description=(
            "`file:///path` (empty: data_dir/objects) or `s3://bucket` with the s3_* fields."
        ),
    )
    s3_endpoint: str = Field(
        "127.0.0.1:9000", description="host:port of the S3 API (MinIO) for s3:// stores."
    )
    s3_access_key: SecretStr = Field(SecretStr(DEV_S3_ACCESS_KEY), description="S3 access key.")
    s3_secret_key: SecretStr = Field(SecretStr(DEV_S3_SECRET_KEY), description="S3 secret key.")
    s3_secure: bool = Field(False, description="Use HTTPS for the S3 endpoint.")
    s3_region: str = Field("us-east-1", description="S3 region name.")

    secret_key: SecretStr = Field(
        SecretStr(DEV_SECRET),
        description="Signs the orchestrator's bearer tokens. Must be set in deployment.",
    )
    service_api_key: SecretStr = Field(
        SecretStr(DEV_SECRET),
        description="API key the services use to call each other. Must be set in deployment.",
    )
    admin_username: str = Field("admin", description="First admin, created at start if absent.")
    admin_password: SecretStr | None = Field(
        None, description="Password of the first admin; generated and printed once when unset."
    )

    orchestrator_url: str = Field("http://127.0.0.1:8000", description="Orchestrator base URL.")
    trainer_url: str = Field("http://127.0.0.1:8001", description="Trainer base URL.")
    inference_urls: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:3000"],
        description="Inference base URLs; batch prediction fans chunks out over all of them.",
    )
    review_ui_url: str = Field("http://127.0.0.1:8501", description="Review UI base URL.")
    bind_host: str = Field("127.0.0.1", description="Address services listen on.")
    max_request_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description=(
            "Largest request body the orchestrator and the trainer accept, in bytes; a larger "
            "one is refused with 413 before it is read."
        ),
    )

    # -- orchestrator: auth and dataset imports --------------------------------------------
    token_ttl_seconds: int = Field(
        8 * 3600, gt=0, description="Lifetime of a login bearer token, in seconds."
    )
    login_max_failures: int = Field(
        10, gt=0, description="Failed logins per username and client within the window → 429."
    )
    login_failure_window_seconds: int = Field(
        60, gt=0, description="Window (seconds) over which failed logins are counted."
    )
    import_roots: list[Path] = Field(
        default_factory=list,
        description=(
            "Server folders dataset imports may read from (JSON list); empty allows any "
            "path the orchestrator can read (imports are admin-only either way)."
        ),
    )
    orchestrator_workers: int = Field(
        1,
        gt=0,
        description=(
            "Orchestrator processes `serve` runs (uvicorn workers; compose/k8s replicas). "
            "The review queue's guarantees hold across them: they live in the database."
        ),
    )
    orchestrator_threads: int = Field(
        32,
        gt=0,
        description=(
            "Requests one orchestrator process runs at once (its worker threads); its "
            "database pool keeps as many connections open (and opens as many again at "
            "peaks), so a steady load opens no new ones."
        ),
    )
    auth_cache_seconds: float = Field(
        5.0,
        ge=0,
        description=(
            "How long an orchestrator process trusts a verified login token's user "
            "(active, role) without reading it again; 0 reads it on every request."
        ),
    )
    database_pre_ping: bool = Field(
        False,
        description=(
            "Test every pooled connection with a round trip before use. Off: a connection "
            "the server dropped fails one request and the pool then discards it."
        ),
    )
    access_log: bool | None = Field(
        None,
        description="Log every HTTP request; by default on in development, off in deployment.",
    )
    import_workers: int = Field(
        4, gt=0, description="Threads that read, check and upload files during an import."
    )
    import_max_file_bytes: int = Field(
        512 * 1024 * 1024,
        gt=0,
        description=(
            "Largest single dataset file an import reads, in bytes; a larger one fails the "
            "import, naming the file, before anything is written."
        ),
    )
    orchestrator_token: SecretStr | None = Field(
        None, description="Bearer token or API key the `regrasp` CLI sends to the orchestrator."
    )

    # -- refinement rounds ------------------------------------------------------------------
    round_retry_seconds: float = Field(
        600.0,
        ge=0,
        description=(
            "How long a round keeps retrying a step that fails because a service, the object "
            "store or the database is unreachable, from the first failure of a streak, before "
            "the round fails (resume it once the cause is fixed). Campaigns whose trainer "
            "is unreachable use the same policy."
        ),
    )
    round_retry_max_attempts: int = Field(
        100, ge=1, description="Most tries of one failing step before the round fails."
    )
    round_retry_initial_seconds: float = Field(
        2.0, gt=0, description="Wait after a round step's first transient failure; doubles."
    )
    round_retry_max_delay_seconds: float = Field(
        60.0, gt=0, description="Longest wait between two tries of a failing round step."
    )
    round_chunk_retries: int = Field(
        3,
        ge=0,
        description=(
            "Times a round's chunk of images is sent again (to another inference replica "
            "where there are several) before the predicting step counts as failed and its "
            "retry streak (round_retry_*) takes over."
        ),
    )

    # -- review queue ---------------------------------------------------------------------
    review_lease_seconds: int = Field(
        300,
        gt=0,
        description="How long a claimed review item stays leased without a heartbeat.",
    )

    # -- trainer workers --------------------------------------------------------------------
    trainer_poll_interval: float = Field(
        2.0, gt=0, description="Seconds a trainer worker waits between claims on an empty queue."
    )
    trainer_heartbeat_interval: float = Field(
        5.0, gt=0, description="Seconds between a trainer worker's heartbeats while it runs a job."
    )
    trainer_heartbeat_timeout: float = Field(
        60.0,
        gt=0,
        description=(
            "Seconds without a heartbeat after which a running job counts as lost and is "
            "requeued (or failed after its max attempts)."
        ),
    )

    # -- inference service ------------------------------------------------------------------
    inference_model_id: int | None = Field(
        None,
        ge=1,
        description=(
            "Pin this replica's default model (its `models` id) instead of following the "
            "`production` alias; unset (the default): serve what an admin promoted "
            "(`regrasp model promote`)."
        ),
    )
    inference_model_name: str | None = Field(
        None,
        description=(
            "Or pin a model by its object-store name (one registered without a `models` "
            "row); not together with `inference_model_id`."
        ),
    )
    inference_device: str = Field(
        "", description="torch device for inference (`cuda`, `cuda:1`, `cpu`); empty: auto."
    )
    inference_max_batch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Largest adaptive batch per forward pass; 1 turns batching off. Unset: 2 on CPU "
            "(a bigger CPU batch slows every request in it; scale by replicas) and 16 on CUDA."
        ),
    )
    inference_cpu_threads: int = Field(
        1,
        ge=1,
        description=(
            "torch threads per inference worker on CPU (one worker per replica: more replicas, "
            "not more threads, is how CPU inference scales)."
        ),
    )
    inference_model_cache_size: int = Field(
        3,
        ge=1,
        description=(
            "Models one inference replica holds at once (production pinned, then least "
            "recently used evicted): production plus the models of rounds running now."
        ),
    )
    inference_alias_poll_seconds: float = Field(
        2.0,
        gt=0,
        le=8,
        description=(
            "How often a replica checks the `production` alias; a promotion reaches every "
            "replica within this plus one model load."
        ),
    )
    inference_max_latency_ms: int = Field(
        10_000,
        gt=0,
        description=(
            "BentoML's batching latency budget: requests expected to wait longer are shed with 503."
        ),
    )
    inference_max_request_bytes: int = Field(
        512 * 1024 * 1024,
        gt=0,
        description=(
            "Largest request body the inference service accepts, in bytes (two 8192² float32 "
            "images fit in the default); a larger one is refused with 413 before it is read."
        ),
    )
    inference_max_side: int = Field(
        8192, ge=32, description="Largest accepted side (pixels) of an uploaded or stored image."
    )
    inference_port: int = Field(
        3000, ge=1, le=65535, description="Port the inference service listens on."
    )

    def redacted(self) -> dict[str, Any]:
        """Every setting for display (`regrasp settings`): secrets masked, and the password
        inside the database URL too."""
        values = self.model_dump()
        values["database_url"] = redact_url(self.database_url)
        return values

    @field_validator("inference_model_id", "inference_model_name", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # docker compose passes `${REGRASP_INFERENCE_MODEL_ID:-}`: empty means "not pinned".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _one_pinned_model(self) -> Settings:
        if self.inference_model_id is not None and self.inference_model_name is not None:
            raise ConfigError(
                "set REGRASP_INFERENCE_MODEL_ID or REGRASP_INFERENCE_MODEL_NAME, not both"
            )
        return self

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'regrasp.db').resolve()}"
        if not self.object_store_url:
            self.object_store_url = f"file://{(self.data_dir / 'objects').resolve()}"
        return self

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Settings:
        if self.mode != "deployment":
            return self
        weak = [
            name
            for name, value in (
                ("REGRASP_SECRET_KEY", self.secret_key),
                ("REGRASP_SERVICE_API_KEY", self.service_api_key),
            )
            if _is_placeholder(value.get_secret_value()) or len(value.get_secret_value()) < 16
        ]
        if self.object_store_url.startswith("s3://"):
            for name, value, default in (
                ("REGRASP_S3_ACCESS_KEY", self.s3_access_key, DEV_S3_ACCESS_KEY),
                ("REGRASP_S3_SECRET_KEY", self.s3_secret_key, DEV_S3_SECRET_KEY),
            ):
                if value.get_secret_value() == default or _is_placeholder(value.get_secret_value()):
                    weak.append(name)
        if self.admin_password is not None and _is_placeholder(
            self.admin_password.get_secret_value()
        ):
            weak.append("REGRASP_ADMIN_PASSWORD")
        if _is_placeholder(self.database_url):
            weak.append("REGRASP_DATABASE_URL (its password is a placeholder)")
        if self.database_url.startswith("sqlite"):
            weak.append("REGRASP_DATABASE_URL (SQLite is for one machine, not deployment)")
        if weak:
            raise ConfigError(
                "deployment mode refuses default or weak settings: " + ", ".join(weak)
            )
        return self


#: `scheme://user:password@` (or a malformed `user:password@...`): the password part.
_URL_PASSWORD = re.compile(r"(^|//)([^/@:]*):[^/@]*@")


def redact_url(url: str) -> str:
    """`url` with the password of its `user:password@` part replaced by `***`, for
    messages and logs (works on malformed URLs too, which SQLAlchemy cannot parse)."""
    return _URL_PASSWORD.sub(r"\1\2:***@", url)


def _is_placeholder(value: str) -> bool:
    """Empty, or still carrying the `change-me` marker of `.env.example` and the dev defaults."""
    return not value or PLACEHOLDER_MARKER in value.lower()


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; raises ConfigError with one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ConfigError:
        raise
    except ValueError as exc:  # pydantic's ValidationError, or ConfigError wrapped by it
        cause = exc
        for err in getattr(exc, "errors", lambda: [])():
            ctx_error = err.get("ctx", {}).get("error")
            if isinstance(ctx_error, ConfigError):
                raise ctx_error from exc
        raise ConfigError(f"invalid settings: {cause}") from exc
