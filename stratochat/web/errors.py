"""Every error leaves as ``{"error": {"code", "detail"}}``: core errors, validation errors, unknown
routes and unexpected failures (logged, never shown) alike."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from ..core.errors import RateLimited, StratochatError

log = logging.getLogger("stratochat.web")

STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "quota_exceeded": 429,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}
CODE_FOR_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "bad_request",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    code: str, detail: str, status: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(
        {"error": {"code": code, "detail": detail}}, status_code=status or STATUS.get(code, 500), headers=headers
    )


def response_for(exc: StratochatError) -> Response:
    headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if isinstance(exc, RateLimited) else None
    return error_response(exc.code, exc.detail, headers=headers)


def _describe(errors: list[Any]) -> tuple[int, str]:
    if not errors:
        return 422, "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return 400, "body is not valid JSON"
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    if loc == "body" and first.get("type") in ("model_attributes_type", "dict_type"):
        return 422, "body must be a JSON object (Content-Type: application/json)"
    msg = first.get("msg", "is invalid")
    if first.get("type") == "missing":
        return 422, f"{loc} is required"
    return 422, f"{loc}: {msg}"


def install(app: FastAPI) -> None:
    @app.exception_handler(StratochatError)
    async def _domain(request: Request, exc: StratochatError) -> Response:
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        status, detail = _describe(list(exc.errors()))
        return error_response("bad_request", detail, status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = CODE_FOR_STATUS.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such resource"
        return error_response(code, detail, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response("internal", "internal error; it has been logged", 500)
