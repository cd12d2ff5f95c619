"""The request-body size limit of the HTTP services, as plain ASGI middleware.

A service that parses whatever a client sends can be made to hold any amount of it in
memory, so every service refuses a body over its limit (`REGRASP_MAX_REQUEST_BYTES` for the
orchestrator and the trainer, `REGRASP_INFERENCE_MAX_REQUEST_BYTES` for inference) with
413 and a message naming the limit, in the one error body (`regrasp.platform.web.error_body`):

- before reading anything when `Content-Length` already says the body is too big;
- as soon as the limit is crossed when the body streams without a length (chunked): the
  application is told the client went away and its own answer is dropped, so it never
  holds more than the limit.

Pure ASGI (no framework import), so the same code sits in front of FastAPI and BentoML.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from regrasp.platform.web import error_body

__all__ = ["BodySizeLimit", "declared_length", "too_large_message"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def too_large_message(max_bytes: int, setting: str) -> str:
    """The one wording of a 413, e.g. "request body over 64 MiB (REGRASP_MAX_REQUEST_BYTES)"."""
    return f"request body over {_size(max_bytes)} ({setting})"


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length as an int; None when absent, -1 when not a number."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413 `{"error": message, "detail": message}`."""

    def __init__(
        self, app: Any, *, max_bytes: int, setting: str = "REGRASP_MAX_REQUEST_BYTES"
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes
        self.message = too_large_message(max_bytes, setting)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and not 0 <= length <= self.max_bytes:
            await self._refuse(send)
            return
        state = {"received": 0, "app_started": False, "refused": False}

        async def limited_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["refused"] = True
                    if not state["app_started"]:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"] and not state["app_started"]:
                return  # we answered 413; whatever the app makes of the cut body is dropped
            if message["type"] == "http.response.start":
                state["app_started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(error_body(self.message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"
