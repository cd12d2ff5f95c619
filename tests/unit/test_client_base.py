"""Error mapping and retries of the shared service client, over a real in-process transport."""

from __future__ import annotations

import httpx
import pytest
import uvicorn

from regrasp.clients.base import (
    KEEPALIVE_EXPIRY_S,
    ServiceClient,
    ServiceError,
    ServiceUnavailable,
)
from regrasp.platform.errors import Conflict, InvalidInput, NotFound, Unauthenticated


def _client(handler, **kw) -> ServiceClient:
    return ServiceClient("http://svc", credential="k", transport=httpx.MockTransport(handler), **kw)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, Unauthenticated),
        (404, NotFound),
        (409, Conflict),
        (422, InvalidInput),
        (418, InvalidInput),
    ],
)
def test_4xx_maps_to_domain_error_with_server_message(status, error):
    client = _client(lambda r: httpx.Response(status, json={"detail": "item 7 is stale"}))
    with pytest.raises(error, match="item 7 is stale"):
        client.request("POST", "/x")


def test_bearer_credential_is_sent():
    seen = {}

    def handler(request):
        seen["auth"] = request.headers.get("authorization")
        return httpx.Response(200, json={})

    _client(handler).request("GET", "/x")
    assert seen["auth"] == "Bearer k"


def test_credential_can_be_read_and_replaced():
    seen = []

    def handler(request):
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={})

    client = _client(handler)
    assert client.credential == "k"
    client.use_credential("robot-key")
    client.request("GET", "/x")
    client.use_credential(None)
    client.request("GET", "/x")
    assert client.credential is None
    assert seen == ["Bearer robot-key", None]


def test_transient_failures_are_retried_for_idempotent_calls():
    calls = []

    def handler(request):
        calls.append(request.method)
        return httpx.Response(503 if len(calls) < 3 else 200, json={"ok": True})

    assert _client(handler, backoff=0).request("GET", "/x").json() == {"ok": True}
    assert len(calls) == 3


def test_non_idempotent_calls_are_not_retried_and_5xx_raises():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(500, text="boom")

    with pytest.raises(ServiceError, match="boom"):
        _client(handler, backoff=0).request("POST", "/x")
    assert len(calls) == 1


def test_unreachable_service_raises_after_retries():
    def handler(request):
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ServiceUnavailable, match="unreachable"):
        _client(handler, backoff=0, retries=2).request("GET", "/x")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_service_still_unavailable_is_a_transient_error_with_its_message(method):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(503, json={"detail": "S3 store s3://b at 10.0.0.9:9000 failed"})

    with pytest.raises(ServiceUnavailable, match=r"HTTP 503: S3 store s3://b at 10\.0\.0\.9"):
        _client(handler, backoff=0, retries=2).request(method, "/x")
    assert len(calls) == (3 if method == "GET" else 1)  # POST is not retried


def test_on_response_sees_every_response_retried_ones_included():
    statuses: list[int] = []
    answers = iter([503, 502, 200])
    client = _client(
        lambda r: httpx.Response(next(answers), json={}),
        backoff=0,
        on_response=lambda response: statuses.append(response.status_code),
    )
    client.request("GET", "/x")
    assert statuses == [503, 502, 200]


def test_clients_let_idle_connections_go_before_the_servers_close_them():
    # uvicorn (our FastAPI services, and BentoML's server) closes idle connections after
    # its keep-alive timeout; a client reusing one at that instant gets a reset.
    server_timeout = uvicorn.Config(app=None).timeout_keep_alive
    assert KEEPALIVE_EXPIRY_S < server_timeout / 2
    client = ServiceClient("http://svc")
    try:
        pool = client._http._transport._pool  # httpx has no public accessor for it
        assert pool._keepalive_expiry == KEEPALIVE_EXPIRY_S
        assert (pool._max_connections, pool._max_keepalive_connections) == (100, 20)
    finally:
        client.close()
