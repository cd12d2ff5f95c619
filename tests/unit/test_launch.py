"""The one place that knows each service's command line."""

from __future__ import annotations

import sys

import pytest

from regrasp.platform.launch import SERVICES, service_command


def test_every_service_has_a_command_bound_where_asked():
    for name in SERVICES:
        command = service_command(name, port=1234)
        assert command[:2] == [sys.executable, "-m"]
        if name == "worker":
            assert "--port" not in command and "--host" not in command
        else:
            assert command[-4:] == ["--host", "127.0.0.1", "--port", "1234"]
    assert service_command("inference", host=None)[2:] == [
        "bentoml",
        "serve",
        "services.inference.service:InferenceService",
    ]
    assert service_command("worker", extra=["--device", "cpu"])[-2:] == ["--device", "cpu"]


def test_an_unknown_service_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="known: orchestrator, trainer"):
        service_command("scheduler")
