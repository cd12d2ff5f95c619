"""The HTTP plumbing every service client shares: auth header, retries, error mapping.

A 4xx from a service becomes the matching domain error carrying the server's message
(so a CLI prints it as its one line); connection failures and 502/503/504 are retried
with exponential backoff for idempotent calls, then raised as `ServiceUnavailable` (a
`StorageError`: transient, worth retrying later), as is a 502/503/504 of a call that is
not retried; any other 5xx is a `ServiceError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from regrasp.platform.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RegraspError,
    StorageError,
    TooManyRequests,
    Unauthenticated,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

_STATUS_ERRORS: dict[int, type[RegraspError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: InvalidInput,
    415: InvalidInput,
    422: InvalidInput,
    429: TooManyRequests,
}
_RETRY_STATUS = {502, 503, 504}
_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}

#: Seconds a client keeps an idle connection for reuse. Our servers (uvicorn, also under
#: BentoML) close idle connections after 5 s; a client that reuses one at that instant
#: writes into a closing socket and gets a connection reset, which a POST cannot safely
#: retry. Letting ours go well before the server's keeps that race from happening.
KEEPALIVE_EXPIRY_S = 2.0
#: httpx's own pool bounds, kept as they were; only the idle expiry is ours.
_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY_S
)


class ServiceUnavailable(StorageError):
    """A service could not be reached or kept failing after the retries."""


class ServiceError(RegraspError):
    """A service answered with an unexpected error (5xx); `status` says which."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = 502


class ServiceClient:
    """Base of the typed clients: one `httpx.Client`, a bearer credential, retries.

    `credential` is a user's bearer token or a robot/service API key; both travel as
    `Authorization: Bearer ...`. `on_response` is called with every response received,
    retried ones included (load tests count status codes with it).
    """

    def __init__(
        self,
        base_url: str,
        *,
        credential: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        transport: httpx.BaseTransport | None = None,
        on_response: Callable[[httpx.Response], None] | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        hooks = {"response": [on_response]} if on_response is not None else None
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            limits=_LIMITS,
            transport=transport,
            event_hooks=hooks,
        )

    @property
    def credential(self) -> str | None:
        """The bearer this client sends (a user's token or an API key), or None."""
        header = self._http.headers.get("Authorization")
        return header.removeprefix("Bearer ") if header else None

    def use_credential(self, credential: str | None) -> None:
        """Send `credential` (a token or an API key) as the bearer from now on."""
        if credential:
            self._http.headers["Authorization"] = f"Bearer {credential}"
        else:
            self._http.headers.pop("Authorization", None)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, retry: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request; map errors to domain errors; retry transient failures."""
        retry = method.upper() in _IDEMPOTENT if retry is None else retry
        attempts = 1 + (self.retries if retry else 0)
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last = exc
                continue
            if response.status_code in _RETRY_STATUS:
                if attempt + 1 < attempts:
                    last = ServiceError(_detail(response), response.status_code)
                    continue
                # Still unavailable after the retries (or not retried): a transient
                # failure the caller may retry later, not a bug of the service.
                raise ServiceUnavailable(
                    f"{self.base_url}{path}: unavailable "
                    f"(HTTP {response.status_code}: {_detail(response)})"
                )
            raise_for_status(response)
            return response
        raise ServiceUnavailable(f"{self.base_url}{path}: unreachable ({last})")

    def get_model(self, path: str, model: type[ModelT], **kwargs: Any) -> ModelT:
        return model.model_validate(self.request("GET", path, **kwargs).json())

    def post_model(self, path: str, model: type[ModelT], **kwargs: Any) -> ModelT:
        return model.model_validate(self.request("POST", path, **kwargs).json())


def raise_for_status(response: httpx.Response) -> None:
    """Turn an error response into the domain error its status means."""
    if response.is_success:
        return
    detail = _detail(response)
    error = _STATUS_ERRORS.get(response.status_code)
    if error is not None:
        raise error(detail)
    if 400 <= response.status_code < 500:
        raise InvalidInput(detail)
    raise ServiceError(detail, response.status_code)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)[:500]
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])[:500]
    return str(body)[:500]
