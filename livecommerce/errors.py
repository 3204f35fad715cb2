"""The one exception hierarchy of livecommerce.

`LivecommerceError` is the root. `ConfigError` is for operators (bad settings, unreachable services) and ends
the process with one line. `ClientError` is for callers: it carries an HTTP status, a stable machine-readable
`code`, and a `detail` a person can act on; the REST layer renders it as RFC 9457 problem details and the
socket hub as an error acknowledgement, so both speak the same codes. Whether retrying helps (`retryable`)
and how long to wait first (`retry_after`, seconds) are fields of every client error and reach the caller the
same way on both transports: both renderings start from `ClientError.wire()` (REST adds the `Retry-After`
header). `Internal` is the one server fault a caller is told about: a generic 500 that is never retryable.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

__all__ = [
    "ClientError",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "Internal",
    "InvalidRequest",
    "LivecommerceError",
    "MalformedRequest",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
]


class LivecommerceError(Exception):
    """Root of every error livecommerce raises on purpose."""


class ConfigError(LivecommerceError):
    """The server cannot start as configured; the message says which setting to fix."""


class ClientError(LivecommerceError):
    """A request the caller can fix. Rendered to the caller; never a server fault."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    retryable: bool = False  # the same request may succeed later, unchanged (each class's default)

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after  # seconds to wait before retrying, when waiting helps
        if retryable is not None:
            self.retryable = retryable

    def wire(self) -> dict[str, Any]:
        """The fields every rendering shares, socket ack and problem document alike: `code`, `retryable`, and
        `retry_after` (seconds, unrounded) and `errors` when there are any."""
        body: dict[str, Any] = {"code": self.code, "retryable": self.retryable}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        if self.errors:
            body["errors"] = self.errors
        return body

    @property
    def headers(self) -> dict[str, str]:
        """Response headers that go with this error: `Retry-After` (whole seconds, at least 1) when known."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """RFC 9457 problem details, with `code`, `retryable`, `retry_after` and `errors` as extension members."""
        body: dict[str, Any] = {
            "type": f"https://livecommerce.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.wire(),
        }
        if instance is not None:
            body["instance"] = instance
        return body


class InvalidRequest(ClientError):
    status = 422
    code = "invalid_request"
    title = "The request is not valid"


class MalformedRequest(ClientError):
    status = 400
    code = "malformed_request"
    title = "The request could not be read"


class Unauthorized(ClientError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(ClientError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(ClientError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(ClientError):
    status = 409
    code = "conflict"
    title = "Conflict with the current state"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class TooManyRequests(ClientError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"
    retryable = True

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail, retry_after=retry_after)


class Internal(ClientError):
    """Something went wrong on the server; nothing was changed. The detail may carry a reference to quote."""

    status = 500
    code = "internal"
    title = "Internal server error"


class ServiceUnavailable(ClientError):
    """A dependency (the database, Redis) is down or overloaded: the same request may work after `retry_after`."""

    status = 503
    code = "unavailable"
    title = "Service unavailable"
    retryable = True

    def __init__(
        self, detail: str, *, errors: list[dict[str, Any]] | None = None, retry_after: float | None = 5
    ) -> None:
        super().__init__(detail, errors=errors, retry_after=retry_after)
