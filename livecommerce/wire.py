"""Wire helpers every transport shares: id limits, field hints, validation problems and problem responses.

The REST API (`api/`), the socket hub (`hub/`) and media (`media/`) all validate with pydantic and refuse in
the same words, and all describe their refusals as problem documents. What they share lives here, in a module
that imports no transport, so `hub/` and `media/` never import from `api/` (nor `api/` from them).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import ValidationError

from livecommerce.errors import InvalidRequest, MalformedRequest

__all__ = [
    "MAX_ID",
    "PATTERN_HINTS",
    "PROBLEM_TYPE",
    "RETRY_AFTER_HEADER",
    "STATUS_TEXT",
    "problem_responses",
    "validation_problem",
]

MAX_ID: Final = 2**31 - 1  # the largest id any route or event takes (a PostgreSQL integer)

PROBLEM_TYPE: Final = "application/problem+json"

# What a person should send when a field does not match its pattern (instead of quoting the regex).
PATTERN_HINTS: Final = {
    "email": "must be an email address such as name@example.com",
    "sku": "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    "currency": "must be a three-letter ISO 4217 code in capitals, such as USD or EUR",
    "image_url": "must be an http:// or https:// URL without spaces or control characters",
    "name": "must not contain control characters or line breaks",
    "title": "must not contain control characters or line breaks",
    "display_name": "must not contain control characters or line breaks",
    "description": "must not contain control characters other than line breaks and tabs",
    "idempotency_key": "must be 1-64 letters, digits, '_', '.', ':' or '-' (a fresh one per tap)",
    "code": "must be 1-32 letters, digits or '-', as printed on the invite",
    "card_number": "must be 12-19 digits, spaces allowed, such as 4242 4242 4242 4242",
}

_MESSAGES: Final = {
    "extra_forbidden": "unknown field; remove it (check the spelling against the API document)",
    "missing": "this field is required",
    "json_invalid": "the body is not valid JSON",
}


def validation_problem(exc: ValidationError, where: str) -> InvalidRequest | MalformedRequest:
    """Turn pydantic's errors into one problem whose detail names each field and what to fix."""
    errors = []
    # Unknown fields first: a misspelled name is usually why the real field is "missing".
    ordered = sorted(exc.errors(include_url=False), key=lambda error: error["type"] != "extra_forbidden")
    for error in ordered:
        location = ".".join([where, *(str(part) for part in error["loc"])])
        message = _MESSAGES.get(error["type"], error["msg"])
        if error["type"] == "string_pattern_mismatch" and error["loc"]:
            message = PATTERN_HINTS.get(str(error["loc"][-1]), message)
        if error["type"] == "json_invalid":
            ctx = error.get("ctx") or {}
            return MalformedRequest(f"the body is not valid JSON: {ctx.get('error', 'parse error')}")
        if error["type"] == "model_type" and not error["loc"]:
            return MalformedRequest(f"the {where} must be a JSON object")
        errors.append({"field": location, "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more (see errors)"
    return InvalidRequest(detail, errors=errors)


# --- problem responses in OpenAPI documents -------------------------------------------------------------------

STATUS_TEXT: Final = {
    200: "OK",
    201: "Created",
    204: "Deleted; no content",
    400: "The request could not be read (malformed JSON, empty body)",
    401: "Sign-in required, or the bearer token is invalid or expired, or its account is suspended or deleted",
    403: "Signed in, but this role may not do this",
    404: "No such resource (or not visible to the caller)",
    409: "Conflicts with the current state (a duplicate, a finished room, a product that has sold)",
    413: "The body is larger than the configured limit",
    415: "The body is not JSON",
    422: "A field or parameter is not valid, or a query parameter is unknown; `errors` lists each",
    429: "Too many requests from this caller; retry after `Retry-After` seconds",
    503: "A dependency (the database, Redis) is unavailable; retry after `Retry-After` seconds",
}
RETRY_AFTER_HEADER: Final = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}
}
_PROBLEM_REF: Final = "#/components/schemas/Problem"  # the `Problem` schema every document publishes


def problem_responses(statuses: tuple[int, ...]) -> dict[str, Any]:
    """The `responses` entries of these error statuses, as problem JSON (for routes described by hand)."""
    responses: dict[str, Any] = {}
    for status in sorted(set(statuses)):
        response: dict[str, Any] = {
            "description": STATUS_TEXT.get(status, "Error"),
            "content": {PROBLEM_TYPE: {"schema": {"$ref": _PROBLEM_REF}}},
        }
        if status in (429, 503):
            response["headers"] = RETRY_AFTER_HEADER
        responses[str(status)] = response
    return responses
