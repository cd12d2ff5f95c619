"""The settings module: embedded defaults, environment overrides, deployment safety."""

from __future__ import annotations

import pytest

from regrasp.platform.errors import ConfigError
from regrasp.platform.settings import Settings, load_settings, redact_url

STRONG = "x" * 32


def test_embedded_defaults_live_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("REGRASP_DATABASE_URL", raising=False)
    monkeypatch.delenv("REGRASP_OBJECT_STORE_URL", raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.mode == "development"
    assert s.database_url == f"sqlite:///{tmp_path / 'regrasp.db'}"
    assert s.object_store_url == f"file://{tmp_path / 'objects'}"
    assert s.bind_host == "127.0.0.1"


def test_environment_with_prefix_overrides(monkeypatch):
    monkeypatch.setenv("REGRASP_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("REGRASP_INFERENCE_URLS", '["http://a:3000", "http://b:3000"]')
    s = load_settings()
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.inference_urls == ["http://a:3000", "http://b:3000"]


def test_every_field_is_documented():
    missing = [name for name, f in Settings.model_fields.items() if not f.description]
    assert not missing


def test_deployment_refuses_default_secrets(monkeypatch):
    monkeypatch.setenv("REGRASP_MODE", "deployment")
    monkeypatch.setenv("REGRASP_DATABASE_URL", "postgresql+psycopg://u:p@db/regrasp")
    with pytest.raises(ConfigError, match="REGRASP_SECRET_KEY") as err:
        load_settings()
    assert "REGRASP_SERVICE_API_KEY" in str(err.value)


def test_deployment_refuses_default_s3_keys_and_sqlite(monkeypatch):
    monkeypatch.setenv("REGRASP_MODE", "deployment")
    monkeypatch.setenv("REGRASP_SECRET_KEY", STRONG)
    monkeypatch.setenv("REGRASP_SERVICE_API_KEY", STRONG)
    monkeypatch.setenv("REGRASP_OBJECT_STORE_URL", "s3://regrasp")
    monkeypatch.delenv("REGRASP_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "REGRASP_S3_ACCESS_KEY" in str(err.value) and "SQLite" in str(err.value)


def test_deployment_with_real_secrets_starts(monkeypatch):
    monkeypatch.setenv("REGRASP_MODE", "deployment")
    monkeypatch.setenv("REGRASP_SECRET_KEY", STRONG)
    monkeypatch.setenv("REGRASP_SERVICE_API_KEY", STRONG + "y")
    monkeypatch.setenv("REGRASP_DATABASE_URL", "postgresql+psycopg://u:p@db/regrasp")
    monkeypatch.setenv("REGRASP_OBJECT_STORE_URL", "s3://regrasp")
    monkeypatch.setenv("REGRASP_S3_ACCESS_KEY", "lab-access-key")
    monkeypatch.setenv("REGRASP_S3_SECRET_KEY", STRONG)
    s = load_settings()
    assert s.mode == "deployment"
    # Secrets never show in a repr or a dump.
    assert STRONG not in repr(s) and STRONG not in str(s.model_dump())


def test_malformed_value_is_one_readable_error(monkeypatch):
    monkeypatch.setenv("REGRASP_MODE", "production-ish")
    with pytest.raises(ConfigError, match="invalid settings"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REGRASP_ADMIN_PASSWORD", "change-me"),
        ("REGRASP_S3_SECRET_KEY", "change-me-to-a-long-random-secret"),
        ("REGRASP_DATABASE_URL", "postgresql+psycopg://regrasp:change-me@db/regrasp"),
        ("REGRASP_SECRET_KEY", "change-me-change-me-change-me"),
    ],
)
def test_deployment_refuses_env_example_placeholders(monkeypatch, name, value):
    monkeypatch.setenv("REGRASP_MODE", "deployment")
    monkeypatch.setenv("REGRASP_SECRET_KEY", STRONG)
    monkeypatch.setenv("REGRASP_SERVICE_API_KEY", STRONG + "y")
    monkeypatch.setenv("REGRASP_DATABASE_URL", "postgresql+psycopg://u:p@db/regrasp")
    monkeypatch.setenv("REGRASP_OBJECT_STORE_URL", "s3://regrasp")
    monkeypatch.setenv("REGRASP_S3_ACCESS_KEY", "lab-access-key")
    monkeypatch.setenv("REGRASP_S3_SECRET_KEY", STRONG)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://u:pw-1@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("postgres//u:pw-1@h/db", "postgres//u:***@h/db"),  # malformed, still hidden
        ("postgresql://:pw-1@h/db", "postgresql://:***@h/db"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),  # nothing to hide
        ("sqlite:////tmp/a@b:c.db", "sqlite:////tmp/a@b:c.db"),
    ],
)
def test_redact_url_hides_only_the_password(url, shown):
    assert redact_url(url) == shown


def test_redacted_settings_and_engine_errors_never_show_the_database_password():
    from regrasp.platform.store.db.engine import make_engine

    s = Settings(database_url="postgresql+psycopg://u:pw-secret-1@h/db", secret_key=STRONG)
    shown = str(s.redacted())
    assert "pw-secret-1" not in shown and STRONG not in shown and "u:***@h/db" in shown
    for bad in ("postgresql+psycopg://u:pw-secret-1@h:port/db", "postgres//u:pw-secret-1@h/db"):
        with pytest.raises(ConfigError, match="malformed database URL") as caught:
            make_engine(bad)
        assert "pw-secret-1" not in str(caught.value)


def test_access_log_is_off_in_deployment_unless_asked_for(tmp_path):
    """One line per request costs the orchestrator CPU on every claim and decision."""
    from services.orchestrator.app import access_log_on

    base = {
        "data_dir": tmp_path,
        "database_url": "postgresql+psycopg://regrasp:a-long-real-password@db/regrasp",
        "secret_key": "k" * 40,
        "service_api_key": "s" * 40,
    }
    assert access_log_on(Settings(mode="development", **base)) is True
    assert access_log_on(Settings(mode="deployment", **base)) is False
    assert access_log_on(Settings(mode="deployment", access_log=True, **base)) is True
    assert access_log_on(Settings(mode="development", access_log=False, **base)) is False
