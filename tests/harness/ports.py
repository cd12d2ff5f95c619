"""Free ports on 127.0.0.1: the one helper every test, fixture and bench takes them from."""

from __future__ import annotations

from regrasp.demo import free_ports

__all__ = ["closed_port", "free_port", "free_ports"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` right now (bound, then released, so a server can take it)."""
    return free_ports(1, host)[0]


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on: the URL of a service that is down."""
    return free_port()
