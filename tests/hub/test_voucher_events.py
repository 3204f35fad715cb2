"""The voucher pin card and claims over the socket, end to end: two hub instances on one Redis and database,
real python-socketio clients (`tests/support/sockets.py`), the live voucher service behind them.

The seeded world (`tests/support/voucher_world.py`): `platform_voucher` is co-funded for `brand` (10% capped at
500, the platform's share 50%), `seller_voucher` is `brand`'s 200 off `sale_product`, `ended_voucher` has ended.
`room` features `brand`; `product` (brand's) costs 1999 USD with 10 in stock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.sockets import Viewer, viewer_in
from tests.support.world import World

Pair = tuple[World, str, str, list[Viewer]]


def _pin(room: int, **what: int) -> dict[str, Any]:
    return {"room_id": room, **what}


async def test_a_pinned_voucher_is_one_shape_live_elsewhere_in_a_snapshot_and_replayed(pair: Pair) -> None:
    world, a, b, viewers = pair
    room, voucher = world.ids["room"], world.ids["platform_voucher"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, snapshot = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    since = snapshot["snapshot"]["seq"]
    ack = await host.call("pin", _pin(room, voucher_id=voucher))
    assert ack["ok"], ack
    card = ack["data"]
    assert card["product"] is None
    ends = await world.api.ok("GET", f"/api/v1/vouchers/{voucher}", who="viewer")
    ends_ms = int(datetime.fromisoformat(ends["ends_at"]).timestamp() * 1000)
    assert card["voucher"] == {
        "id": voucher, "title": "10% off", "kind": "percent", "percent_bps": 1000, "cap_minor": 500,
        "min_spend_minor": 0, "currency": "USD", "ends_at_ms": ends_ms, "left": 100,
    }  # fmt: skip
    heard = await fan.wait_for("pinned", lambda d: d["seq"] == card["seq"], within=3)
    assert json.dumps(heard) == json.dumps(card), "heard through the bus exactly as the host's ack"
    _, late = await viewer_in(viewers, b, room)
    assert json.dumps(late["snapshot"]["pinned"]) == json.dumps({k: v for k, v in card.items() if k != "seq"})
    for reader in (a, b):
        back = Viewer()
        viewers.append(back)
        await back.connect(reader, world.api.tokens["viewer"])
        resumed = await back.call("join", {"room_id": room, "since": since})
        [item] = resumed["data"]["replay"]
        assert (item["event"], item["seq"]) == ("pinned", card["seq"])
        assert json.dumps(item["payload"]) == json.dumps(card), "replayed exactly as it arrived live"
    # A product pin then carries no voucher: the card shows one or the other.
    ack = await host.call("pin", _pin(room, product_id=world.ids["product"]))
    assert ack["data"]["voucher"] is None
    assert ack["data"]["product"]["id"] == world.ids["product"]


async def test_pin_takes_exactly_one_of_a_product_and_a_voucher_and_checks_the_voucher(pair: Pair) -> None:
    world, a, _, viewers = pair
    room = world.ids["room"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, _ = await viewer_in(viewers, a, room, world.api.tokens["viewer"])
    for payload in (
        {"room_id": room},
        _pin(room, product_id=world.ids["product"], voucher_id=world.ids["seller_voucher"]),
    ):
        ack = await host.call("pin", payload)
        assert (ack["ok"], ack["error"]["code"]) == (False, "invalid_request"), payload
        assert "either `product_id` or `voucher_id`" in ack["error"]["message"]
    ack = await fan.call("pin", _pin(room, voucher_id=world.ids["seller_voucher"]))
    assert ack["error"]["code"] == "forbidden", "only the host or an admin pins"
    ack = await host.call("pin", _pin(room, voucher_id=world.ids["ended_voucher"]))
    assert ack["error"]["code"] == "not_found", "an ended voucher is not shown to anyone but its managers"
    ack = await host.call("pin", _pin(room, voucher_id=999_999))
    assert ack["error"]["code"] == "not_found"
    # A voucher of a brand the room does not feature (and the host does not collaborate on) is refused.
    now = datetime.now(UTC)
    other = await world.api.ok(
        "POST", f"/api/v1/brands/{world.ids['other_brand']}/vouchers", who="other_staff", status=201,
        json={"title": "Other 1 off", "kind": "amount", "amount_minor": 100, "currency": "USD", "quota": 5,
              "starts_at": (now - timedelta(minutes=1)).isoformat(), "ends_at": (now + timedelta(days=1)).isoformat()},
    )  # fmt: skip
    ack = await host.call("pin", _pin(room, voucher_id=other["id"]))
    assert ack["error"]["code"] == "forbidden", ack
    assert "does not sell" in ack["error"]["message"]
    # The host's list of pinnable vouchers: the brand's running ones, not the other brand's nor the ended one.
    ack = await host.call("room_vouchers", {"room_id": room})
    assert ack["ok"], ack
    listed = {v["id"]: v for v in ack["data"]["vouchers"]}
    assert set(listed) == {world.ids["seller_voucher"], world.ids["platform_voucher"]}
    assert listed[world.ids["seller_voucher"]]["funding"] == "seller"
    assert listed[world.ids["seller_voucher"]]["amount_minor"] == 200
    assert (await fan.call("room_vouchers", {"room_id": room}))["error"]["code"] == "forbidden"


async def test_viewers_claim_a_pinned_voucher_once_per_key_and_get_the_price_after_it(pair: Pair) -> None:
    world, a, b, viewers = pair
    room, voucher, product = world.ids["room"], world.ids["platform_voucher"], world.ids["product"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, _ = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    anonymous, _ = await viewer_in(viewers, b, room)
    claim = {"room_id": room, "voucher_id": voucher, "idempotency_key": "tap-1"}
    ack = await fan.call("claim_voucher", claim)
    assert ack["error"]["code"] == "voucher_not_in_room", "not pinned in this show yet"
    assert (await host.call("pin", _pin(room, product_id=product)))["ok"]
    assert (await host.call("pin", _pin(room, voucher_id=voucher)))["ok"]
    ack = await fan.call("claim_voucher", claim)
    assert ack["ok"], ack
    first = ack["data"]
    assert first["replayed"] is False
    assert (first["claim"]["voucher_id"], first["claim"]["state"]) == (voucher, "claimed")
    # 10% of 1999 is 199 (floor): the platform bears 99 (its 50%, floor), the brand the other 100.
    price = {"subtotal_minor": 1999, "seller_discount_minor": 100, "platform_discount_minor": 99, "pay_minor": 1800,
             "vouchers": [{"voucher_id": voucher, "claim_id": first["claim"]["id"], "title": "10% off",
                           "discount_minor": 199}]}  # fmt: skip
    assert first["quote"] == price, "quoted for the product pinned last in the room"
    again = await fan.call("claim_voucher", claim)
    assert again["data"]["replayed"] is True
    assert again["data"]["claim"]["id"] == first["claim"]["id"], "a retry with the same key is the same claim"
    ack = await fan.call("claim_voucher", {**claim, "idempotency_key": "tap-2"})
    assert ack["error"]["code"] == "voucher_limit_reached", "one per buyer"
    ack = await fan.call("quote", {"room_id": room, "product_id": product, "quantity": 1})
    assert ack["ok"], ack
    assert ack["data"]["price"] == price
    ack = await fan.call("quote", {"room_id": room, "product_id": product, "quantity": 3})
    assert ack["data"]["price"]["pay_minor"] == 3 * 1999 - 500, "the percent is capped at 500"
    ack = await fan.call("quote", {"room_id": room, "product_id": world.ids["other_product"]})
    assert ack["error"]["code"] == "forbidden", "a product the room does not sell has no price here"
    ack = await anonymous.call("claim_voucher", {**claim, "idempotency_key": "tap-3"})
    assert ack["error"]["code"] == "unauthorized"
    assert (await anonymous.call("quote", {"room_id": room, "product_id": product}))["error"]["code"] == "unauthorized"
    ack = await fan.call("claim_voucher", {"room_id": room, "voucher_id": voucher})
    assert ack["error"]["code"] == "invalid_request", "a claim names its tap's key"
    # Pinned again, the card counts the claim.
    ack = await host.call("pin", _pin(room, voucher_id=voucher))
    assert ack["data"]["voucher"]["left"] == 99


async def test_a_voucher_pin_leaves_the_pinned_products_stock_counting(pair: Pair) -> None:
    world, a, _, viewers = pair
    room, product = world.ids["room"], world.ids["product"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, _ = await viewer_in(viewers, a, room, world.api.tokens["viewer"])
    pinned = await host.call("pin", _pin(room, product_id=product))
    pool = pinned["data"]["offer"]["pool"]
    await fan.wait_for("stock", lambda d: d["pool"] == pool and d["available"] == 10, within=3)
    assert (await host.call("pin", _pin(room, voucher_id=world.ids["platform_voucher"])))["ok"]
    bought = await fan.call("buy", {"room_id": room, "product_id": product, "idempotency_key": "buy-1"})
    assert bought["ok"], bought
    await fan.wait_for("stock", lambda d: d["pool"] == pool and d["available"] == 9, within=3)


async def test_a_claim_quotes_nothing_before_a_product_is_pinned(pair: Pair) -> None:
    world, a, _, viewers = pair
    room, voucher = world.ids["room"], world.ids["seller_voucher"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, _ = await viewer_in(viewers, a, room, world.api.tokens["viewer"])
    assert (await host.call("pin", _pin(room, voucher_id=voucher)))["ok"]
    ack = await fan.call("claim_voucher", {"room_id": room, "voucher_id": voucher, "idempotency_key": "k1"})
    assert ack["ok"], ack
    assert ack["data"]["quote"] is None
    assert ack["data"]["claim"]["voucher"] is None or ack["data"]["claim"]["voucher"]["id"] == voucher
    # Unpinned, it can still be claimed this show (another buyer), and the card is gone for everyone.
    assert (await host.call("unpin", {"room_id": room}))["ok"]
    _, snapshot = await viewer_in(viewers, a, room)
    assert snapshot["snapshot"]["pinned"] is None
    again = await host.call("claim_voucher", {"room_id": room, "voucher_id": voucher, "idempotency_key": "k2"})
    assert again["ok"], again
