"""WHIP (RFC 9725) ingest and WHEP playback over HTTP: SDP offers in, SDP answers and session URLs out.

    POST    /api/v1/rooms/{room_id}/whip                 publisher's offer -> 201, answer, Location
    OPTIONS /api/v1/rooms/{room_id}/whip                 CORS preflight; Accept-Post: application/sdp
    PATCH   /api/v1/rooms/{room_id}/whip/{session_id}    trickle ICE (204); an ICE restart is refused (422)
    DELETE  /api/v1/rooms/{room_id}/whip/{session_id}    end publishing (the room's video ends)
    ... and the same four under /whep for viewers.

Publishing takes the room host's (or an admin's) bearer token: the token is the stream key OBS asks for.
Watching needs the room to be live (its host and admins may watch before, to check the picture); a public
room needs no token, a private room the token of someone allowed to see it (to anyone else it does not
exist). Refusals are RFC 9457 problems from `livecommerce.errors`, raised before
any peer connection exists or after it has been closed again, so a refused request leaves nothing behind.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, Literal

from aiohttp import web
from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from livecommerce import rooms
from livecommerce.auth import Principal
from livecommerce.errors import (
    InvalidRequest,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from livecommerce.live.rooms import LIVE
from livecommerce.media.sessions import MediaConfig, MediaService, parse_offer
from livecommerce.models import Room
from livecommerce.state import PRINCIPAL, REDIS, SESSIONS, SETTINGS
from livecommerce.wire import MAX_ID, problem_responses

__all__ = ["MEDIA", "MEDIA_CONFIG", "install", "openapi_paths"]

MEDIA: Final = web.AppKey("media", MediaService)
MEDIA_CONFIG: Final = web.AppKey("media_config", MediaConfig)

_SDP: Final = "application/sdp"
_SDPFRAG: Final = "application/trickle-ice-sdpfrag"
_MAX_SDP_BYTES: Final = 64 * 1024
_SESSION: Final = r"{session_id:[A-Za-z0-9_-]{1,64}}"
_ROOM: Final = r"{room_id:[0-9]{1,10}}"
_CORS: Final = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Post, Accept-Patch",
}
Role = Literal["publisher", "viewer"]


def _room_id(request: web.Request) -> int:
    room_id = int(request.match_info["room_id"])
    if not 1 <= room_id <= MAX_ID:
        raise NotFound(f"no room with id {room_id}")
    return room_id


async def _body(request: web.Request, content_type: str) -> str:
    if request.content_type != content_type:
        raise UnsupportedMediaType(f"send the body as {content_type}, not {request.content_type or 'nothing'}")
    if request.content_length is not None and request.content_length > _MAX_SDP_BYTES:
        raise PayloadTooLarge(f"the body is larger than {_MAX_SDP_BYTES} bytes")
    raw = await request.read()
    if len(raw) > _MAX_SDP_BYTES:
        raise PayloadTooLarge(f"the body is larger than {_MAX_SDP_BYTES} bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not UTF-8 text") from None


async def _room(request: web.Request, who: Principal, role: Role) -> Room:
    """The room, if the caller may publish to it or watch it now (`rooms.video_room`: the rule lives there)."""
    room_id = _room_id(request)
    if role == "publisher":
        rooms.require_signed_in_runner(who, "publish video; use the room host's token as the bearer token (stream key)")
    async with request.app[SESSIONS]() as session:
        return await rooms.video_room(session, who, room_id, publish=role == "publisher")


def _created(request: web.Request, role: Role, room_id: int, session_id: str, answer: str) -> web.Response:
    path = "whip" if role == "publisher" else "whep"
    location = f"/api/v1/rooms/{room_id}/{path}/{session_id}"
    headers = {**_CORS, "Location": location, "Accept-Patch": _SDPFRAG, "ETag": f'"{session_id}"'}
    return web.Response(status=201, text=answer, content_type=_SDP, headers=headers)


def _offer_handler(role: Role) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        who = request[PRINCIPAL]
        room = await _room(request, who, role)
        offer = parse_offer(await _body(request, _SDP), role=role)
        service = request.app[MEDIA]
        if role == "publisher":
            session_id, answer = await service.publish(room.id, offer, who.user_id)
        else:
            session_id, answer = await service.view(room.id, offer)
        return _created(request, role, room.id, session_id, answer)

    return handler


def _delete_handler(role: Role) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        room_id, session_id = _room_id(request), request.match_info["session_id"]
        service = request.app[MEDIA]
        if role == "publisher":
            await _room_for_delete(request, room_id)
            await service.unpublish(room_id, session_id)
        else:
            await service.leave(room_id, session_id)  # the session URL is the viewer's capability
        return web.Response(status=200, headers=_CORS)

    return handler


async def _room_for_delete(request: web.Request, room_id: int) -> None:
    who = request[PRINCIPAL]
    rooms.require_signed_in_runner(who, "end publishing")
    async with request.app[SESSIONS]() as session:
        room = await rooms.get_room(session, who, room_id)
    rooms.require_runner(who, room, "end publishing in this room")


_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)\s*$", re.MULTILINE)


def _patch_handler(role: Role) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        room_id, session_id = _room_id(request), request.match_info["session_id"]
        if role == "publisher":
            await _room_for_delete(request, room_id)
        fragment = await _body(request, _SDPFRAG)
        pc, mids, ufrag = request.app[MEDIA].session_peer(room_id, session_id, role)
        offered = _UFRAG.findall(fragment)
        if any(value != ufrag for value in offered):
            raise InvalidRequest(
                "ICE restarts are not supported; start a new session (DELETE this one, then POST a new offer)",
                errors=[{"field": "body.ice-ufrag", "message": "differs from the session's: an ICE restart"}],
            )
        for candidate in _candidates(fragment, mids):
            await pc.addIceCandidate(candidate)
        return web.Response(status=204, headers=_CORS)

    return handler


def _candidates(fragment: str, mids: list[str]) -> list[RTCIceCandidate]:
    """The `a=candidate` lines of a trickle-ice-sdpfrag (RFC 8840), each with the mid of its section."""
    found, mid = [], mids[0] if mids else None
    for line in fragment.splitlines():
        line = line.strip()
        if line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=candidate:"):
            try:
                candidate = candidate_from_sdp(line[len("a=") :].split(":", 1)[1])
            except (ValueError, IndexError) as exc:
                raise MalformedRequest(f"a candidate line could not be read: {exc}") from None
            candidate.sdpMid = mid
            found.append(candidate)
    return found


async def _options(request: web.Request) -> web.Response:
    _room_id(request)
    return web.Response(
        status=204,
        headers={
            **_CORS,
            "Accept-Post": _SDP,
            "Allow": "OPTIONS, POST",
            "Access-Control-Allow-Methods": "OPTIONS, POST, PATCH, DELETE",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
            "Access-Control-Max-Age": "86400",
        },
    )


# --- installation -----------------------------------------------------------------------------------------------


def install(app: web.Application) -> None:
    """Add the WHIP and WHEP routes and the media service's lifetime (after Redis, the database and the hub)."""
    settings = app[SETTINGS]
    app[MEDIA_CONFIG] = MediaConfig(ice_address=settings.media_ice_address, ice_announce=settings.media_ice_announce)
    for path, role in (("whip", "publisher"), ("whep", "viewer")):
        base = f"/api/v1/rooms/{_ROOM}/{path}"
        app.router.add_post(base, _offer_handler(role))  # type: ignore[arg-type]
        app.router.add_route("OPTIONS", base, _options)
        app.router.add_patch(f"{base}/{_SESSION}", _patch_handler(role))  # type: ignore[arg-type]
        app.router.add_delete(f"{base}/{_SESSION}", _delete_handler(role))  # type: ignore[arg-type]

    async def context(app: web.Application) -> AsyncIterator[None]:
        service = MediaService(app[LIVE], app[REDIS], app[MEDIA_CONFIG])
        app[MEDIA] = service
        await service.start()
        yield
        await service.close()

    app.cleanup_ctx.append(context)


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI path items of these routes (bodies are SDP, so they are described here, not by pydantic)."""
    room = {"name": "room_id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}  # fmt: skip
    session = {"name": "session_id", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}  # fmt: skip
    sdp_body = {"required": True, "content": {_SDP: {"schema": {"type": "string"}}}}
    frag_body = {"required": True, "content": {_SDPFRAG: {"schema": {"type": "string"}}}}
    every = (401, 422, 429, 503)
    paths: dict[str, Any] = {}
    for path, role in (("whip", "publisher"), ("whep", "viewer")):
        who = "the room's host, admins" if role == "publisher" else "anyone who may see the room"
        verb = "publishing" if role == "publisher" else "watching"
        security: list[dict[str, list[str]]] = [{"bearer": []}] if role == "publisher" else [{}, {"bearer": []}]
        created = {
            "description": "Created: the SDP answer; `Location` is the session's URL",
            "headers": {"Location": {"description": "The session URL (PATCH, DELETE).", "schema": {"type": "string"}}},
            "content": {_SDP: {"schema": {"type": "string"}}},
        }
        post_errors = (400, 404, 409, 413, 415, *every) + ((403,) if role == "publisher" else ())
        when = (" Until the room ends (409 after)." if role == "publisher" else
                " While the room is live (409 before and after; its host and admins may watch before, to check "
                "the picture).")  # fmt: skip
        session_errors = (404, *every) + ((403,) if role == "publisher" else ())
        paths[f"/api/v1/rooms/{{room_id}}/{path}"] = {
            "post": {
                "operationId": f"{path}_offer", "summary": f"Start {verb} the room's video ({path.upper()})",
                "description": f"Who may call: {who}.{when}", "tags": ["video"],
                "x-access": who, "security": security, "parameters": [room], "requestBody": sdp_body,
                "responses": {"201": created, **problem_responses(post_errors)},
            },
            "options": {
                "operationId": f"{path}_options", "summary": f"CORS preflight for {path.upper()}",
                "description": "Who may call: anyone.", "tags": ["video"], "x-access": "anyone",
                "security": [{}, {"bearer": []}], "parameters": [room],
                "responses": {"204": {"description": "Allowed methods; `Accept-Post: application/sdp`"},
                              **problem_responses((404, *every))},
            },
        }  # fmt: skip
        paths[f"/api/v1/rooms/{{room_id}}/{path}/{{session_id}}"] = {
            "patch": {
                "operationId": f"{path}_trickle", "summary": "Add trickled ICE candidates (an ICE restart is refused)",
                "description": f"Who may call: {who if role == 'publisher' else 'the session holder'}.",
                "tags": ["video"], "x-access": who, "security": security, "parameters": [room, session],
                "requestBody": frag_body,
                "responses": {"204": {"description": "Candidates added"},
                              **problem_responses((400, 413, 415, *session_errors))},
            },
            "delete": {
                "operationId": f"{path}_end", "summary": f"End the {role} session",
                "description": f"Who may call: {who if role == 'publisher' else 'the session holder'}.",
                "tags": ["video"], "x-access": who, "security": security, "parameters": [room, session],
                "responses": {"200": {"description": "Ended"}, **problem_responses(session_errors)},
            },
        }  # fmt: skip
    return paths
