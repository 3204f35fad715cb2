"""Run a web process: bind, serve until SIGTERM or SIGINT, then drain and close everything in order."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import sys
import webbrowser
from collections.abc import Iterator

from aiohttp import web

from livecommerce.app import create_app
from livecommerce.demo import seed_demo
from livecommerce.errors import ConfigError
from livecommerce.settings import Settings
from livecommerce.state import SESSIONS, SIGNER

__all__ = ["serve", "wait_for_signal"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _stop_signals() -> Iterator[asyncio.Future[int]]:
    """A future that receives the first SIGTERM or SIGINT while the block runs.

    Handlers are in place from entry, so a signal that arrives while the process is already serving but still
    starting up (seeding the demo data) is kept and answered with a clean shutdown, instead of the default
    action killing the process mid-way.
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()

    def deliver(signum: int) -> None:
        if not received.done():
            received.set_result(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, deliver, signum)
    try:
        yield received
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def wait_for_signal() -> int:
    """Wait for SIGTERM or SIGINT and return its number."""
    with _stop_signals() as received:
        return await received


def _tune_garbage_collector() -> None:
    """A hub holds thousands of connections, each a few hundred long-lived objects; CPython's default cyclic
    collector (a young collection every 700 allocations, promoting into full scans of that whole heap) spent
    a third of a hub's CPU in the burst benchmark. Start-up objects are frozen out of every scan, and young
    collections run every 50,000 allocations instead: our own objects rarely form cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def serve(settings: Settings, redis_url: str, *, open_browser: bool = False) -> None:
    app = create_app(settings, redis_url=redis_url)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        with _stop_signals() as stopping:  # from the first request on, a SIGTERM means a clean shutdown
            try:
                await site.start()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"port {settings.port} on {settings.host} is in use; choose another with --port"
                    ) from None
                raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
            base = f"http://{settings.host}:{settings.port}"
            _tune_garbage_collector()
            log.info("livecommerce listening on %s", base)
            if settings.demo:
                await _announce_demo(app, base)
            if open_browser:
                _open_browser(base + "/")
            signum = await stopping
        log.info("received %s: draining connections and shutting down", signal.Signals(signum).name)
    finally:
        await runner.cleanup()


async def _announce_demo(app: web.Application, base: str) -> None:
    users, room_id = await seed_demo(app[SESSIONS], app[SIGNER])
    lines = [
        "",
        f"livecommerce demo is running: {base}/",
        f"  API document (OpenAPI 3.1): {base}/openapi.json",
        f"  Demo room snapshot:         {base}/api/v1/rooms/{room_id}",
        "  Demo users (send 'Authorization: Bearer <token>'; or POST /api/v1/auth/demo-login {\"email\": ...}):",
    ]
    lines += [f"    {user.role.value:<12} {user.email:<32} {user.token}" for user in users]
    lines.append("  Stop with Ctrl-C.")
    print("\n".join(lines), file=sys.stdout, flush=True)  # noqa: T201 - the demo's output is for the user


def _open_browser(url: str) -> None:
    """Open the page where a graphical browser can show it; on a headless machine, just say where it is.

    (On Linux without a display, `webbrowser` would take over the terminal with a text browser.)
    """
    graphical = sys.platform in {"darwin", "win32"} or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not graphical or not webbrowser.open(url):
        log.info("open %s in your browser", url)
