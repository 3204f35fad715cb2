"""The Socket.IO side of the whole app: a real python-socketio client (`Viewer`), and `pair`: two more app
instances on one Redis and database, standing for two web processes (a viewer on B sees what happens on A)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.app import create_app
from livecommerce.settings import Settings
from tests.support.world import World, seed_world

__all__ = ["Viewer", "pair", "viewer_in"]

Client = TestClient[Request, Application]


class Viewer:
    """A real Socket.IO client that records every server event, with deadline-bound waits."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("disconnect", self._on_disconnect)

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnected.set()

    async def _record(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self._changed.set()

    async def connect(self, url: str, token: str | None = None) -> None:
        await self.sio.connect(url, auth={"token": token} if token else None, transports=["websocket"])

    async def call(self, event: str, payload: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.sio.call(event, payload, timeout=5)
        return result

    async def wait_for(self, event: str, match: Callable[[Any], bool] = lambda _: True, within: float = 1.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            for name, data in self.events:
                if name == event and match(data):
                    return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event} matching within {within} s; got {[n for n, _ in self.events]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def named(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def pair(
    settings: Settings, engine: AsyncEngine, redis_url: str, client: Client
) -> AsyncIterator[tuple[World, str, str, list[Viewer]]]:
    """A seeded world (through `client`), and two more hub instances A and B; yields their URLs."""
    world = await seed_world(client, engine)
    await world.api.ok("POST", f"/api/v1/rooms/{world.ids['room']}/live", who="host")
    viewers: list[Viewer] = []
    async with (
        TestServer(create_app(settings, redis_url=redis_url), host="127.0.0.1") as a,
        TestServer(create_app(settings, redis_url=redis_url), host="127.0.0.1") as b,
    ):
        yield world, str(a.make_url("")), str(b.make_url("")), viewers
        for viewer in viewers:
            await viewer.close()


async def viewer_in(
    viewers: list[Viewer], url: str, room: int, token: str | None = None
) -> tuple[Viewer, dict[str, Any]]:
    viewer = Viewer()
    viewers.append(viewer)
    await viewer.connect(url, token)
    ack = await viewer.call("join", {"room_id": room})
    assert ack["ok"], ack
    return viewer, ack["data"]
