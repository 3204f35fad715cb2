"""Declare a REST endpoint once; get its aiohttp route, its validation and its OpenAPI entry from it.

A handler is `async def handler(call: Call, **params) -> BaseModel | Stream | None`: path ids arrive as ints,
`query` and `body` as validated pydantic models. The wrapper opens one database transaction per request
(committed when the handler returns, rolled back when it raises), so a refused request changes nothing.

A `Stream` answers with a body that is not JSON (a CSV export): the handler checks access and returns it, the
transaction ends, and only then are its chunks written, so a refusal is still a problem document and a long
download holds no transaction (the chunks read in short sessions of their own). The first chunk is read before
the status line is sent: a source that fails at once is a 503 problem, not a 200 with an empty body.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.auth import Principal
from livecommerce.commerce.pools import HOLD_ID_PATTERN
from livecommerce.errors import (
    InvalidRequest,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from livecommerce.settings import Settings
from livecommerce.state import PRINCIPAL, SESSIONS, SETTINGS, SIGNER
from livecommerce.wire import MAX_ID, validation_problem

__all__ = ["STRING_PARAMS", "Call", "Endpoint", "Replay", "Router", "Stream"]

log = logging.getLogger(__name__)

_PATH_PARAM = re.compile(r"\{(\w+)\}")
# Path parameters are integer ids, except these named ones, which are strings of the given pattern.
STRING_PARAMS: dict[str, str] = {"hold_id": HOLD_ID_PATTERN}


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the caller, one database session in a transaction, and the request."""

    who: Principal
    session: AsyncSession
    request: web.Request
    after_commit: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    after_rollback: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    def on_rollback(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run `hook` if the transaction rolls back (undo a change made outside it, e.g. in Redis)."""
        self.after_rollback.append(hook)

    def on_commit(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run `hook` once the transaction has committed (e.g. tell live viewers); not if it rolls back."""
        self.after_commit.append(hook)

    @property
    def settings(self) -> Settings:
        return self.request.app[SETTINGS]

    def token_for(self, user_id: int, role: Any, brand_id: int | None) -> str:
        return self.request.app[SIGNER].issue(user_id, role, brand_id)


@dataclass(frozen=True, slots=True)
class Stream:
    """A response body written chunk by chunk after the request's transaction has ended."""

    chunks: AsyncIterable[bytes]
    filename: str | None = None  # offered as a download (Content-Disposition: attachment)


@dataclass(frozen=True, slots=True)
class Replay:
    """A create's answer to a retry of its idempotency key: the resource it made before, sent with the
    endpoint's `replay_status` (200) rather than its `status` (201)."""

    body: BaseModel


Handler = Callable[..., Awaitable[BaseModel | Stream | Replay | None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    access: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"  # of the success body; anything else is answered by a `Stream`
    notes: str = ""  # more of the description in the OpenAPI document: rules a client must know
    replay_status: int | None = None  # the status of a `Replay` answer (documented as a second success)

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@dataclass
class Router:
    """Collects endpoints; `install` adds them to an aiohttp app."""

    prefix: str = ""
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        access: str,
        tag: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        content_type: str = "application/json",
        notes: str = "",
        replay_status: int | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method,
                    self.prefix + path,
                    handler,
                    summary,
                    access,
                    tag,
                    body,
                    query,
                    response,
                    status,
                    errors,
                    content_type,
                    notes,
                    replay_status,
                )
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            aiohttp_path = _PATH_PARAM.sub(
                lambda m: f"{{{m[1]}:{STRING_PARAMS.get(m[1], '[0-9]{1,10}')}}}", endpoint.path
            )
            app.router.add_route(endpoint.method, aiohttp_path, _make_handler(endpoint))


def _make_handler(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        params: dict[str, Any] = {}
        for name in endpoint.path_params:
            if name in STRING_PARAMS:
                params[name] = request.match_info[name]
                continue
            value = int(request.match_info[name])
            if not 1 <= value <= MAX_ID:
                raise NotFound(f"no {name.removesuffix('_id')} with id {value}")
            params[name] = value
        if endpoint.query is not None:
            params["query"] = _parse_query(endpoint.query, request)
        elif request.query:
            names = sorted(set(request.query))
            raise InvalidRequest(
                f"this endpoint takes no query parameters; remove {', '.join(names)}",
                errors=[{"field": f"query.{name}", "message": "unknown parameter; remove it"} for name in names],
            )
        if endpoint.body is not None:
            params["body"] = await _parse_body(endpoint.body, request)
        call: Call | None = None
        try:
            async with request.app[SESSIONS].begin() as session:
                call = Call(request[PRINCIPAL], session, request)
                result = await endpoint.handler(call, **params)
        except BaseException:
            for undo in call.after_rollback if call is not None else ():
                try:
                    await undo()
                except Exception:
                    log.exception("rollback hook of %s %s failed", endpoint.method, endpoint.path)
            raise
        for hook in call.after_commit:
            try:
                await hook()
            except Exception:  # the change is committed; a failed notification must not turn it into an error
                log.exception("after-commit hook of %s %s failed", endpoint.method, endpoint.path)
        if result is None:
            return web.Response(status=endpoint.status)
        if isinstance(result, Stream):
            return await _send_stream(request, endpoint, result)
        status = endpoint.status
        if isinstance(result, Replay):
            status, result = endpoint.replay_status or status, result.body
        return web.Response(body=result.model_dump_json().encode(), status=status, content_type="application/json")

    handle.__name__ = endpoint.operation_id
    return handle


async def _send_stream(request: web.Request, endpoint: Endpoint, stream: Stream) -> web.StreamResponse:
    response = web.StreamResponse(status=endpoint.status)
    response.content_type = endpoint.content_type
    response.charset = "utf-8"
    if stream.filename is not None:
        response.headers["Content-Disposition"] = f'attachment; filename="{stream.filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.enable_chunked_encoding()
    chunks = aiter(stream.chunks)
    # Read before the status line: a failure here is still a problem document, never a 200 with an empty export.
    # (A database outage becomes 503 with Retry-After in the `problems` middleware, anything else a 500.)
    first = await anext(chunks, b"")
    await response.prepare(request)
    try:
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    except Exception:
        # The status line is sent: the body can only be cut short. Closing the connection without the last
        # chunk tells the client the download is incomplete (a 500 cannot be sent any more).
        log.exception("%s %s failed while streaming its body", endpoint.method, endpoint.path)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def _parse_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    values: dict[str, str] = {}
    for key in request.query:
        items = request.query.getall(key)
        if len(items) > 1:
            raise InvalidRequest(
                f"query parameter {key!r} is given {len(items)} times; give it once",
                errors=[{"field": f"query.{key}", "message": f"given {len(items)} times; give it once"}],
            )
        values[key] = items[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_problem(exc, "query") from None


async def _parse_body(model: type[BaseModel], request: web.Request) -> BaseModel:
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: application/json (got {request.content_type or 'none'})"
        )
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes; the limit is {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes") from None
    if not raw:
        raise MalformedRequest("the request body is empty; send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_problem(exc, "body") from None
