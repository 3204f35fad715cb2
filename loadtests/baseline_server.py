"""The baseline: stock python-socketio room emit on aiohttp + uvloop.

Viewers connect to ``/socket.io/``, send ``join`` with ``{"room_id": R}`` and are put in room ``R`` with
``enter_room``; the ack answers ``{"ok": true}``. ``POST /bench/start`` (see ``bench_protocol.py``) starts a timer
inside this process that calls ``await sio.emit("pin", payload, room=R)`` ``rate`` times per second — the way a
host's pin update would be fanned out with python-socketio, without a host client.

Fairness: per-message deflate is off. The viewers never offer it (aiohttp's ``ws_connect(compress=0)``), and
this server's websocket responses are also built with ``compress=False`` (python-engineio's aiohttp driver
would otherwise accept it), and HTTP long-polling compression is off. Everything else is python-socketio's
default: one queue and one writer task per connection, pings every 25 s.

Run alone::

    taskset -c 0 .venv/bin/python loadtests/baseline_server.py --port 8765 --max-seconds 600
"""

from __future__ import annotations

import argparse
import resource
from typing import Any

import socketio
import uvloop
from aiohttp import web
from bench_protocol import EVENT, JOIN_EVENT, BenchRuns, mount_routes, serve_until_stopped
from engineio.async_drivers import aiohttp as engineio_aiohttp

RUNS = web.AppKey("runs", BenchRuns)
SIO = web.AppKey("sio", socketio.AsyncServer)


class _UncompressedWebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp websocket wrapper, with per-message deflate refused."""

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _room(value: Any) -> str:
    """Room names are strings in python-socketio; ``1`` and ``"1"`` name the same room."""
    return str(value)


def build_app() -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False, http_compression=False)
    sio.eio._async = {**sio.eio._async, "websocket": _UncompressedWebSocket}
    app = web.Application()
    sio.attach(app)
    runs = BenchRuns()
    app[RUNS] = runs
    app[SIO] = sio

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        return True

    @sio.on(JOIN_EVENT)  # type: ignore[untyped-decorator]
    async def join(sid: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or "room_id" not in data:
            return {"ok": False, "error": "room_id required"}
        await sio.enter_room(sid, _room(data["room_id"]))
        return {"ok": True}

    def emitter(room: str) -> Any:
        def emit(payload: dict[str, Any]) -> Any:
            return sio.emit(EVENT, payload, room=_room(room))

        return emit

    mount_routes(app, runs, emitter, viewers=lambda: len(sio.eio.sockets))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--backlog", type=int, default=4096, help="listen backlog (capped by net.core.somaxconn)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="exit by itself after this long")
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        parser.error("benchmarks listen on 127.0.0.1 only")
    _raise_fd_limit()
    app = build_app()
    uvloop.run(serve_until_stopped(app, args.host, args.port, args.max_seconds, "baseline_server", args.backlog))


if __name__ == "__main__":
    main()
