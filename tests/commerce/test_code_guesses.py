"""Invite-code guesses are limited per user across REST and the socket together (one budget in Redis)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce.buying import BUYING
from livecommerce.commerce.guesses import WRONG_CODES
from livecommerce.commerce.loading import load_sale
from livecommerce.commerce.pools import PoolId
from livecommerce.database import session_factory
from livecommerce.models import SaleCode
from tests.support.sockets import Viewer
from tests.support.world import seed_world

Client = TestClient[Request, Application]


async def test_wrong_codes_over_rest_and_socket_share_one_budget(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    room, product, sale = world.ids["room"], world.ids["sale_product"], world.ids["live_sale"]
    await world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
    async with session_factory(engine)() as session:
        assert await load_sale(client.app[BUYING].inventory, session, sale) is not None
        codes = list(await session.scalars(select(SaleCode.code).where(SaleCode.sale_id == sale)))
    path = f"/api/v1/rooms/{room}/buy"

    async def rest(who: str, code: str) -> tuple[int, dict[str, object]]:
        status, body = await world.api.call("POST", path, who=who, json={"product_id": product, "code": code})
        return status, body

    socket = Viewer()
    await socket.connect(str(client.make_url("")), world.api.tokens["other_host"])
    try:
        assert (await socket.call("join", {"room_id": room}))["ok"]
        for n in range(WRONG_CODES):  # half over REST, half over the socket: all count for one user
            if n % 2:
                status, body = await rest("other_host", f"WRONG-{n}")
                assert (status, body["code"]) == (403, "invite_code_invalid"), body
            else:
                ack = await socket.call("buy", {"room_id": room, "product_id": product, "code": f"WRONG-{n}"})
                assert ack["error"]["code"] == "invite_code_invalid", ack
        # Spent: the next buy with a code is refused before the pool, on either path, even with a good code.
        ack = await socket.call("buy", {"room_id": room, "product_id": product, "code": codes[-1]})
        assert ack["error"]["code"] == "rate_limited", ack
        assert ack["error"]["retry_after"] > 0
        assert ack["error"]["retryable"] is True
        status, body = await rest("other_host", codes[-1])
        assert (status, body["code"], body["retryable"]) == (429, "rate_limited", True), body
        assert isinstance(body["retry_after"], float | int)
        assert body["retry_after"] > 0, "the same fields on both transports"
        stock = (await client.app[BUYING].inventory.stock([PoolId.sale(sale)]))[PoolId.sale(sale)]
        assert stock.held == 0, "no guess reached the pool once the budget was spent"
        # Another user's guesses are their own; buying without a code is not limited.
        status, body = await rest("staff", "WRONG-X")
        assert (status, body["code"]) == (403, "invite_code_invalid"), body
        ack = await socket.call("buy", {"room_id": room, "product_id": world.ids["product"]})
        assert ack["ok"], ack
    finally:
        await socket.close()


async def test_a_burst_of_concurrent_guesses_cannot_outrun_the_count(client: Client, engine: AsyncEngine) -> None:
    """Each buy with a code spends its try before the pool: a burst all in flight at once gets no more tries."""
    world = await seed_world(client, engine)
    room, product, sale = world.ids["room"], world.ids["sale_product"], world.ids["live_sale"]
    await world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
    async with session_factory(engine)() as session:
        assert await load_sale(client.app[BUYING].inventory, session, sale) is not None
    path = f"/api/v1/rooms/{room}/buy"
    results = await asyncio.gather(
        *(
            world.api.call("POST", path, who="other_host", json={"product_id": product, "code": f"WRONG{n}"})
            for n in range(3 * WRONG_CODES)
        )
    )
    codes = sorted(str(body["code"]) for _, body in results)
    assert codes.count("invite_code_invalid") <= WRONG_CODES + 1, codes  # +1: a try regained during the burst
    assert codes.count("rate_limited") >= 2 * WRONG_CODES - 1, codes
