"""Killing a hub process: its viewers reconnect to another process and resume; the viewer count heals.

Two real `livecommerce serve` processes share one Redis and one SQLite file; one is killed with SIGKILL, so
it cleans up nothing — the survivors must not count its viewers for long (no ghost viewers).
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import DEMO_HOST, Launcher, cli_env, demo_tokens, http
from tests.support.sockets import Viewer
from tests.support.world import SECRET

pytestmark = pytest.mark.slow

DEMO_VIEWER = "viewer@demo.livecommerce.dev"


async def test_viewers_of_a_killed_process_resume_elsewhere_and_the_count_heals(
    launcher: Launcher,
    tmp_path: Path,
    redis_url: str,
) -> None:
    env = cli_env(
        LIVECOMMERCE_SECRET_KEY=SECRET,
        LIVECOMMERCE_REDIS_URL=redis_url,
        LIVECOMMERCE_DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}",
        LIVECOMMERCE_LOG_LEVEL="WARNING",
    )
    a = launcher.serve("--demo", cwd=tmp_path / "a", env=env, name="a")
    a.wait_ready()
    output = a.wait_output("Stop with Ctrl-C.")
    b = launcher.serve(cwd=tmp_path / "b", env=env, name="b")
    b.wait_ready()
    tokens = demo_tokens(output)
    match = re.search(r"/api/v1/rooms/(\d+)", output)
    assert match is not None
    room = int(match.group(1))
    status, _, body = http("POST", f"{a.base}/api/v1/rooms/{room}/live", token=tokens[DEMO_HOST])
    assert status == 200, body

    viewers: list[Viewer] = []

    async def join(url: str, token: str | None, since: str | None = None) -> tuple[Viewer, dict[str, Any]]:
        viewer = Viewer()
        viewers.append(viewer)
        await viewer.connect(url, token)
        payload: dict[str, Any] = {"room_id": room}
        if since is not None:
            payload["since"] = since
        ack = await viewer.call("join", payload)
        assert ack["ok"], ack
        return viewer, ack["data"]

    try:
        on_a, joined = await join(a.base, tokens[DEMO_VIEWER])
        last_seq = joined["snapshot"]["seq"]
        watcher, _ = await join(b.base, None)
        host, _ = await join(b.base, tokens[DEMO_HOST])
        await watcher.wait_for("counters", lambda d: d["viewers"] == 3, within=5)
        # Across real processes: what the host does through B reaches the viewer on A within a second.
        products = http("GET", f"{a.base}/api/v1/products")[2]["items"]
        ack = await host.call("pin", {"room_id": room, "product_id": products[0]["id"]})
        assert ack["ok"], ack
        await on_a.wait_for("pinned", lambda d: d["seq"] == ack["data"]["seq"])
        ack = await host.call("chat", {"room_id": room, "text": "hello, process A"})
        assert ack["ok"], ack
        await on_a.wait_for("chat", lambda d: any(m["text"] == "hello, process A" for m in d["messages"]))
        last_seq = ack["data"]["message"]["id"]

        a.stop(signal.SIGKILL)
        await asyncio.wait_for(on_a.disconnected.wait(), 5)
        ack = await host.call("chat", {"room_id": room, "text": "did everyone survive?"})
        assert ack["ok"], ack
        # The viewer of the dead process comes back through B and gets exactly what it missed.
        back, resumed = await join(b.base, tokens[DEMO_VIEWER], since=last_seq)
        assert [event["event"] for event in resumed["replay"]] == ["chat"]
        assert [m["text"] for m in resumed["replay"][0]["payload"]["messages"]] == ["did everyone survive?"]
        # A's viewer is counted once: its ghost on A expires, its new connection on B counts.
        await watcher.wait_for("counters", lambda d: d["viewers"] == 3 and watcher.named("counters")[-1] is d,
                               within=10)  # fmt: skip
        ack = await host.call("chat", {"room_id": room, "text": "welcome back"})
        await back.wait_for("chat", lambda d: any(m["text"] == "welcome back" for m in d["messages"]))
    finally:
        for viewer in viewers:
            if viewer.sio.connected:
                await viewer.close()
    assert b.stop() == 0
