"""Domain errors. ``stratochat.web.errors`` maps each ``code`` to an HTTP status and a socket error frame."""

from __future__ import annotations


class StratochatError(Exception):
    code = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(StratochatError):
    code = "bad_request"


class Unauthorized(StratochatError):
    code = "unauthorized"


class Forbidden(StratochatError):
    code = "forbidden"


class NotFound(StratochatError):
    code = "not_found"


class Conflict(StratochatError):
    code = "conflict"


class TooLarge(StratochatError):
    code = "too_large"


class QuotaExceeded(StratochatError):
    code = "quota_exceeded"


class RateLimited(StratochatError):
    code = "rate_limited"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        # Seconds until a retry can succeed; HTTP rounds it up for ``Retry-After``.
        self.retry_after = retry_after


class Unavailable(StratochatError):
    """A backend did not answer; the request may be retried."""

    code = "unavailable"
