"""The official JavaScript Socket.IO client works with the hub as it is (no special options)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.world import seed_world

CLIENT = Path(__file__).parent / "js" / "client.mjs"


async def test_socket_io_client_for_javascript(client: TestClient[Request, Application], engine: AsyncEngine) -> None:
    node = shutil.which("node")
    if node is None or not (CLIENT.parent / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("node and tests/hub/js/node_modules are needed: run `make check`, which installs them")
    world = await seed_world(client, engine)
    room = world.ids["room"]
    await world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
    process = await asyncio.create_subprocess_exec(
        node, str(CLIENT), str(client.make_url("")), world.api.tokens["viewer"], str(room),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, (stdout, stderr)
    report = json.loads(stdout)
    assert report["connected"]
    assert report["join"]["ok"]
    assert "snapshot" in report["join"]["data"]
    assert report["chat"]["ok"]
    assert report["echoed"], "the message came back in a chat batch"
    assert report["bad"]["error"]["code"] == "invalid_request"


async def test_a_refused_connection_tells_the_javascript_client_code_and_message(
    client: TestClient[Request, Application],
) -> None:
    node = shutil.which("node")
    if node is None or not (CLIENT.parent / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("node and tests/hub/js/node_modules are needed: run `make check`, which installs them")
    process = await asyncio.create_subprocess_exec(
        node, str(CLIENT.parent / "refused.mjs"), str(client.make_url("")), "not-a-token",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, (stdout, stderr)
    report = json.loads(stdout)
    message = "the bearer token is malformed; sign in again to get a new one"
    assert report == {"message": message, "data": {"code": "unauthorized", "message": message, "retryable": False}}
