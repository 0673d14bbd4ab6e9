"""Access log and request ids (pure ASGI middleware, cheap enough for every request)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import request_id

log = logging.getLogger("stratochat.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_of(scope: Scope) -> str:
    """The caller's ``X-Request-Id`` if it is a safe token, else a fresh one."""
    given = Headers(scope=scope).get("x-request-id", "")
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex[:16]


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            if scope["type"] == "http" and path not in ("/healthz", "/readyz"):
                log.info(
                    "%s %s %s",
                    scope.get("method"),
                    path,
                    status,
                    extra={"status": status, "ms": round((time.perf_counter() - start) * 1000, 1)},
                )
            request_id.reset(token)
