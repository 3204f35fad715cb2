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
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_protocol import BenchRuns, mount_routes, serve_until_stopped

from livecommerce.app import create_app
from livecommerce.demo import seed_demo
from livecommerce.embedded_redis import EmbeddedRedis
from livecommerce.hub.runtime import HUB
from livecommerce.live import events as ev
from livecommerce.live.events import ServerEvent
from livecommerce.live.rooms import LIVE
from livecommerce.models import Room, RoomStatus, utcnow
from livecommerce.settings import Settings
from livecommerce.state import SESSIONS, SIGNER

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
        await app[LIVE].room_status_changed(room)
    app[ROOM_KEY] = room_id


def build_app(settings: Settings, redis_url: str) -> web.Application:
    app = create_app(settings, redis_url=redis_url)
    app[RUNS] = BenchRuns()
    app.on_startup.append(_make_live)

    def emitter(_room: str) -> Any:
        live, room = app[LIVE], app[ROOM_KEY]

        async def emit(bench: dict[str, Any]) -> None:
            # The pin path of Hub._pin after its SQL checks: log + publish in Redis, then the local fan-out.
            unpinned = ev.unpinned(room)
            await live.publish(room, ServerEvent(ev.PINNED, {**unpinned.payload, "bench": bench}, state=ev.PINNED))

        return emit

    mount_routes(
        app, app[RUNS], emitter, viewers=lambda: len(app[HUB].sio.eio.sockets),
        extra_health=lambda: {"room": app.get(ROOM_KEY)},
    )  # fmt: skip
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="exit by itself after this long")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lc-bench-") as data_dir:
        settings = Settings(
            host="127.0.0.1", port=args.port, data_dir=Path(data_dir), secret_key="bench-" + "k" * 40,
            log_level="WARNING", demo=True, rate_limit_reads=0, rate_limit_writes=0,
            max_connections_per_address=0,  # every viewer of the harness comes from 127.0.0.1
        )  # fmt: skip
        with EmbeddedRedis(settings.data_dir) as redis:  # a child: it shares the server's CPU
            app = build_app(settings, redis.url)
            uvloop.run(serve_until_stopped(app, settings.host, settings.port, args.max_seconds, "hub_server"))


if __name__ == "__main__":
    main()
