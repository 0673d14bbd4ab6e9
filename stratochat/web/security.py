"""Origins, HTTPS detection and the headers every response carries."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def csp_with(storage_origins: Sequence[str]) -> str:
    """The CSP, also letting the browser client upload to (connect) and show images from (img, after
    the redirect of ``/api/files/{id}``) a file storage on another origin, such as an S3 bucket."""
    if not storage_origins:
        return CSP
    extra = " ".join(storage_origins)
    return CSP.replace("img-src 'self' data: blob:", f"img-src 'self' data: blob: {extra}").replace(
        "connect-src 'self'", f"connect-src 'self' {extra}"
    )


def is_https(scope: Scope) -> bool:
    """True when the request reached us, or the proxy in front of us, over TLS. uvicorn rewrites the
    scheme from X-Forwarded-Proto for trusted proxies; the header alone also counts here because it
    can only make the cookie stricter (Secure), never weaker."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    proto = Headers(scope=scope).get("x-forwarded-proto", "")
    return proto.split(",")[0].strip().lower() == "https"


def _netloc(scheme: str, netloc: str) -> str:
    netloc = netloc.lower()
    for default in (":443",) if scheme == "https" else (":80",) if scheme == "http" else (":80", ":443"):
        if netloc.endswith(default):
            return netloc[: -len(default)]
    return netloc


class OriginPolicy:
    """Same origin is always allowed (the Origin's host:port equals the Host the request was sent to),
    and so is every origin of ``STRATOCHAT_ALLOWED_ORIGINS`` and ``STRATOCHAT_PUBLIC_URL``."""

    def __init__(self, extra_origins: list[str]) -> None:
        self._extra = {o.lower().rstrip("/") for o in extra_origins}

    def allowed(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if origin in self._extra:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or not host:
            return False
        return _netloc(parts.scheme, parts.netloc) == _netloc("", host)


class SecurityHeaders:
    """Pure ASGI middleware: hardening headers on every HTTP response, a request id, and a cap on
    request body size (a larger body gets 413 before the app reads it)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int = 1_048_576,
        body_limits: Mapping[str, int] | None = None,
        storage_origins: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        # Exact paths allowed a larger body than ``max_body`` (the embedded file store's upload route,
        # which caps each upload again at the size its signed URL grants).
        self.body_limits = dict(body_limits or {})
        self._storage_origins = storage_origins
        self._csp: tuple[tuple[str, ...], bytes] = ((), CSP.encode())

    def _csp_header(self) -> bytes:
        origins = tuple(self._storage_origins()) if self._storage_origins else ()
        if origins != self._csp[0]:
            self._csp = (origins, csp_with(origins).encode())
        return self._csp[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_body = self.body_limits.get(scope.get("path", ""), self.max_body)
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            await _send_error(send, 413, "too_large", f"request body over {max_body} bytes")
            return
        csp = self._csp_header()
        capped_receive = capped(receive, max_body)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", csp),
                ):
                    if k not in names:
                        headers.append((k, v))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, capped_receive, send_with_headers)
        except BodyTooLarge:
            await _send_error(send, 413, "too_large", f"request body over {max_body} bytes")


class BodyTooLarge(Exception):
    """A request body went past its cap while being read."""


def capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises ``BodyTooLarge`` once more than ``limit`` body bytes have arrived (a
    chunked body has no Content-Length to check up front)."""
    received = 0

    async def capped_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge()
        return message

    return capped_receive


async def _send_error(send: Send, status: int, code: str, detail: str) -> None:
    import orjson

    body = orjson.dumps({"error": {"code": code, "detail": detail}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
