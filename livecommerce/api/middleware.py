"""Request middleware: identify the caller, and answer every failure as RFC 9457 problem JSON.

Nothing reaches a client as an HTML error page or a traceback: `ClientError`s become their problem, aiohttp's
own HTTP errors (unknown route, wrong method, oversized body) are translated, a dependency that is down (the
database, Redis) is a 503 with `Retry-After` (`livecommerce.outage`), and anything else unexpected is logged
with a reference the caller can quote and answered as a generic 500.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from livecommerce.accounts import ACCOUNTS
from livecommerce.auth import ANONYMOUS
from livecommerce.errors import (
    ClientError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from livecommerce.outage import Warnings, dependency_down, unavailable
from livecommerce.state import PRINCIPAL, SETTINGS, SIGNER

__all__ = ["authenticate", "problem_response", "problems", "read_deadline"]

log = logging.getLogger(__name__)
_outages = Warnings(log)

PROBLEM_TYPE = "application/problem+json"


def problem_response(error: ClientError, request: web.Request) -> web.Response:
    headers = dict(error.headers)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="livecommerce"'
    if isinstance(error, MethodNotAllowed) and error.errors:
        headers["Allow"] = ", ".join(str(e["message"]) for e in error.errors)
    return web.Response(
        body=orjson.dumps(error.to_problem(request.path)),
        status=error.status,
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def _translate(exc: web.HTTPException, request: web.Request) -> ClientError | None:
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"there is nothing at {request.path}; see /openapi.json for the routes")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return MethodNotAllowed(f"{request.method} is not allowed here; use {', '.join(allowed)}")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(f"the request body is too large: {exc.text}")
    if isinstance(exc, web.HTTPBadRequest):
        return MalformedRequest(f"the request could not be read: {exc.reason}")
    return None


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ClientError as error:
        return problem_response(error, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        translated = _translate(exc, request)
        if translated is None:
            raise
        response = problem_response(translated, request)
        if isinstance(exc, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except Exception as exc:
        down = unavailable(exc)
        if down is not None:  # a dependency is down, not a bug: say when to retry
            _outages.failed(dependency_down(exc) or "a service", f"{request.method} {request.path}", exc)
            return problem_response(down, request)
        reference = secrets.token_hex(6)
        log.exception("unhandled error in %s %s (reference %s)", request.method, request.path, reference)
        body = {
            "type": "https://livecommerce.dev/problems/internal",
            "title": "Internal server error",
            "status": 500,
            "detail": f"an unexpected error occurred; nothing was changed. Report reference {reference}",
            "code": "internal",
            "retryable": False,
            "instance": request.path,
        }
        return web.Response(body=orjson.dumps(body), status=500, content_type=PROBLEM_TYPE)


class RequestTimeout(ClientError):
    status = 408
    code = "request_timeout"
    title = "Request body too slow"


_ENGINEIO_PATH = "/socket.io/"


@web.middleware
async def read_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body must arrive within `http_body_timeout` seconds; else 408 and the connection is closed.

    (Headers are bounded by aiohttp's idle timeout, see `app.create_app`.) The body is read here, before the
    handler, so no handler waits on a slow client; Engine.IO's long-polling POSTs read their own body, so the
    whole request gets the deadline instead (its long-polling GETs legitimately wait and are not bounded here).
    """
    settings = request.app[SETTINGS]
    length = request.content_length
    if not request.body_exists or (length is not None and length > settings.max_body_bytes):
        return await handler(request)  # no body, or one refused by its announced size without reading it
    seconds = settings.http_body_timeout
    try:
        if request.path == _ENGINEIO_PATH:
            async with asyncio.timeout(seconds):
                return await handler(request)
        async with asyncio.timeout(seconds):
            await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than the limit of {settings.max_body_bytes} bytes") from None
    except ConnectionError:  # the client went away mid-body: its fault, not an outage of ours
        raise MalformedRequest("the connection closed before the request body arrived; send it again") from None
    except TimeoutError:
        response = problem_response(
            RequestTimeout(f"the request body did not arrive within {seconds} s; send it again, faster"), request
        )
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()  # at once: no lingering to read the rest of a body that is not coming
        return response
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the bearer token, if any, to a principal: the account as it is now (its current role and brand;
    suspended and deleted accounts refused), not the role the token was issued with. A bad token is refused
    even on public routes."""
    header = request.headers.get("Authorization")
    if header is None:
        request[PRINCIPAL] = ANONYMOUS
        return await handler(request)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use the header 'Authorization: Bearer <token>'")
    request[PRINCIPAL] = await request.app[ACCOUNTS].principal(request.app[SIGNER].verify(token.strip()))
    return await handler(request)
