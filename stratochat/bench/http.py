"""The load generator's HTTP client for the requests it makes by the thousand (a reconnect storm's recovery,
the messages sent while the clients are away): a fixed set of kept-alive HTTP/1.1 connections, each one
httpcore connection used by one request at a time.

Why not ``httpx.AsyncClient``: its pool checks every one of its connections on every request (a ``poll`` and
a ``getpeername`` each) and its models and hooks add the rest. Measured against a local Stratochat, a GET of
``/healthz`` took 1.4-1.7 ms of the generator's CPU that way and 0.24-0.27 ms this way, and in a storm of
5,000 recovering clients httpx was two thirds of each load worker's CPU. httpcore does the HTTP (h11) and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpcore
import orjson

# Worth a second try on a fresh connection: a kept-alive one the server closed just then (uvicorn drops idle
# ones after 5 s) fails the first read or write, not the request.
RETRYABLE: tuple[type[Exception], ...] = (
    httpcore.ConnectionNotAvailable,
    httpcore.NetworkError,
    httpcore.RemoteProtocolError,
)


class HttpError(Exception):
    """A request that failed. ``code`` says how, for an error count: the HTTP status ("404"), or the
    transport failure's name ("ReadError") when no response came."""

    def __init__(self, what: str, code: str, status: int | None = None) -> None:
        super().__init__(f"{what}: {code}")
        self.code = code
        self.status = status


class Reply:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)


class Connections:
    """``size`` connections to ``base_url``'s origin; a request waits for a free one (so ``size`` is also
    the number of requests in flight). Connections open on first use and reopen after a failure."""

    def __init__(self, base_url: str, size: int, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._origin = httpcore.Origin(parts.scheme.encode(), parts.hostname.encode("idna"), port)
        self._prefix = base_url.rstrip("/")
        # The Host header is the URL's authority as written (an IPv6 literal keeps its brackets).
        authority = parts.netloc.rpartition("@")[2]
        self._host = authority.encode("ascii") if authority.isascii() else authority.encode("idna")
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._timeout = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        self._free: asyncio.Queue[httpcore.AsyncHTTPConnection] = asyncio.Queue()
        self._all: list[httpcore.AsyncHTTPConnection] = []
        for _ in range(max(1, size)):
            self._free.put_nowait(self._new())

    def _new(self) -> httpcore.AsyncHTTPConnection:
        conn = httpcore.AsyncHTTPConnection(self._origin, ssl_context=self._ssl)
        self._all.append(conn)
        return conn

    async def _replace(self, conn: httpcore.AsyncHTTPConnection) -> httpcore.AsyncHTTPConnection:
        self._all.remove(conn)
        with contextlib.suppress(Exception):  # a broken connection may fail to close: it is dropped anyway
            await conn.aclose()
        return self._new()

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        json: Any = None,
        attempts: int = 3,
    ) -> Reply:
        """One request; a status of 400 or more raises HttpError(status), as does a transport failure
        that lasts ``attempts`` tries."""
        head = [(b"Host", self._host), (b"Accept", b"application/json")]
        head += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        body = b""
        if json is not None:
            body = orjson.dumps(json)
            head += [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
        conn = await self._free.get()
        try:
            for attempt in range(attempts):
                if conn.is_closed() or conn.has_expired():
                    conn = await self._replace(conn)
                try:
                    r = await conn.request(
                        method,
                        self._prefix + path,
                        headers=head,
                        content=body,
                        extensions={"timeout": self._timeout},
                    )
                    break
                except RETRYABLE as exc:
                    conn = await self._replace(conn)
                    if attempt == attempts - 1:
                        raise HttpError(f"{method} {path}", type(exc).__name__) from exc
                except httpcore.TimeoutException as exc:
                    conn = await self._replace(conn)
                    raise HttpError(f"{method} {path}", type(exc).__name__) from exc
            else:  # pragma: no cover - attempts < 1
                raise HttpError(f"{method} {path}", "not sent")
        finally:
            self._free.put_nowait(conn)
        if r.status >= 400:
            raise HttpError(f"{method} {path}", str(r.status), r.status)
        return Reply(r.status, r.content)

    async def aclose(self) -> None:
        for conn in self._all:
            with contextlib.suppress(Exception):  # shutting down: one that fails to close is gone anyway
                await conn.aclose()
        self._all.clear()

    async def __aenter__(self) -> Connections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
