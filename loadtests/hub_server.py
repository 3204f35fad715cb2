"""Our hub under the fan-out benchmark: the real app, plus the harness's `/bench/*` control routes.

The benchmark hook lives here, not in the product: this script builds the same application as
`livecommerce serve` (embedded Redis with its append-only file, SQLite, the demo data), makes the demo room
live, and mounts `bench_protocol.BenchRuns`. Each timed event goes through the hub's real pin path — the
Redis script that logs and publishes it, then the encode-once fan-out — as a `pinned` event whose payload
carries the harness's `{"run", "seq", "t0"}` as `bench`. Viewers join the demo room anonymously.

    .venv/bin/python loadtests/hub_server.py --port 8765 --max-seconds 600
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_protocol import BenchRuns

from livecommerce.app import create_app
from livecommerce.demo import seed_demo
from livecommerce.embedded_redis import EmbeddedRedis
from livecommerce.models import Room, RoomStatus, utcnow
from livecommerce.settings import Settings
from livecommerce.state import HUB, SESSIONS, SIGNER

ROOM_KEY: web.AppKey[int] = web.AppKey("bench_room")
RUNS: web.AppKey[BenchRuns] = web.AppKey("bench_runs")


async def _make_live(app: web.Application) -> None:
    """Seed the demo data and put its room live, as a host's go-live would."""
    _, room_id = await seed_demo(app[SESSIONS], app[SIGNER])
    async with app[SESSIONS].begin() as session:
        room = await session.get(Room, room_id)
        assert room is not None
        room.status, room.started_at = RoomStatus.LIVE, utcnow()
    async with app[SESSIONS]() as session:
        room = await session.get(Room, room_id)
        assert room is not None
        await app[HUB].room_status_changed(room)
    app[ROOM_KEY] = room_id


def build_app(settings: Settings, redis_url: str) -> web.Application:
    app = create_app(settings, redis_url=redis_url)
    app[RUNS] = BenchRuns()
    app.on_startup.append(_make_live)

    async def health(_request: web.Request) -> web.Response:
        viewers = len(app[HUB].sio.eio.sockets)
        return web.json_response({"ok": True, "viewers": viewers, "pid": os.getpid(), "room": app[ROOM_KEY]})

    async def start(request: web.Request) -> web.Response:
        query = request.query
        hub, room = app[HUB], app[ROOM_KEY]

        async def emit(bench: dict[str, Any]) -> None:
            # The pin path of Hub._pin after its SQL checks: log + publish in Redis, then the local fan-out.
            payload = {"room_id": room, "product": None, "ts": time.time_ns() // 1_000_000, "bench": bench}
            await hub._publish_state(room, "pinned", payload)

        try:
            status = app[RUNS].start(
                emit,
                rate=float(query.get("rate", "10")),
                seconds=float(query.get("seconds", "10")),
                pad=int(query.get("pad", "0")),
                burst=int(query.get("burst", "1")),
            )
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"run": status.run, "planned": status.planned})

    async def status(request: web.Request) -> web.Response:
        found = app[RUNS].status(int(request.query.get("run", "0")))
        if found is None:
            return web.json_response({"error": "no such run"}, status=404)
        return web.json_response(found.as_json())

    async def close_runs(app: web.Application) -> None:
        await app[RUNS].close()

    app.router.add_get("/bench/health", health)
    app.router.add_post("/bench/start", start)
    app.router.add_get("/bench/status", status)
    app.on_shutdown.append(close_runs)
    return app


async def _serve(settings: Settings, redis_url: str, max_seconds: float) -> None:
    runner = web.AppRunner(build_app(settings, redis_url), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=4096)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"hub_server pid={os.getpid()} listening on http://{settings.host}:{settings.port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except TimeoutError:
        print(f"hub_server: --max-seconds {max_seconds} reached, stopping", flush=True)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="exit by itself after this long")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lc-bench-") as data_dir:
        settings = Settings(
            host="127.0.0.1", port=args.port, data_dir=Path(data_dir), secret_key="bench-" + "k" * 40,
            log_level="WARNING", demo=True, rate_limit_reads=0, rate_limit_writes=0,
        )  # fmt: skip
        with EmbeddedRedis(settings.data_dir) as redis:  # a child: it shares the server's CPU
            uvloop.run(_serve(settings, redis.url, args.max_seconds))


if __name__ == "__main__":
    main()
