"""Every event the server sends to a room's viewers, each built by one function here (`docs/protocol.md`,
"Server events").

A logged event (`ServerEvent`, published with `LiveRooms.publish`) rests in the room's log without its seq;
`live_payload` adds it back, and is the one way a logged event becomes what a viewer receives — whether it
arrives live (this process's delivery or another process's, through the bus) or in a join's `replay` list.
That is what keeps a replayed event byte for byte the live one (chat once differed: it was shaped in three
places). Chat is the exception in form only: the log and the bus keep its fields (`chat_post.lua`),
`chat_message` shapes them, and a live or replayed chat event is a batch of them (`chat_batch_json`).

Events that are never logged: `stock` and `counters` (latest state, coalesced by the fan-out), `resync`,
and `access_revoked` (to one socket).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from livecommerce.clock import now_ms
from livecommerce.errors import ClientError
from livecommerce.models import Product, RoomStatus, Voucher, VoucherKind

__all__ = [
    "ACCESS_REVOKED",
    "CHAT",
    "CHAT_DELETED",
    "CHAT_SETTINGS",
    "COUNTDOWN",
    "COUNTERS",
    "LOGGED",
    "PINNED",
    "RESYNC",
    "ROOM_STATUS",
    "SERVER_EVENTS",
    "STOCK",
    "VIDEO",
    "Event",
    "Payload",
    "ServerEvent",
    "access_revoked",
    "chat_batch_json",
    "chat_deleted",
    "chat_message",
    "chat_settings",
    "countdown",
    "counters",
    "live_payload",
    "pinned",
    "pinned_voucher",
    "resync",
    "room_status",
    "stock",
    "unpinned",
    "video",
    "voucher_card",
]

Payload = dict[str, Any]

ROOM_STATUS: Final = "room_status"
PINNED: Final = "pinned"
COUNTDOWN: Final = "countdown"
CHAT: Final = "chat"
CHAT_DELETED: Final = "chat_deleted"
CHAT_SETTINGS: Final = "chat_settings"
VIDEO: Final = "video"
STOCK: Final = "stock"
COUNTERS: Final = "counters"
RESYNC: Final = "resync"
ACCESS_REVOKED: Final = "access_revoked"
# Kept in the room's log, so a resuming viewer gets them again (replay equals live: tests/hub/test_events.py);
# the others are latest values or notices to one socket, never replayed.
LOGGED: Final = frozenset({ROOM_STATUS, PINNED, COUNTDOWN, CHAT, CHAT_DELETED, CHAT_SETTINGS, VIDEO})
SERVER_EVENTS: Final = LOGGED | {STOCK, COUNTERS, RESYNC, ACCESS_REVOKED}

_STATUSES = frozenset(status.value for status in RoomStatus)


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """An event to log and publish: its name, its payload (without seq) and the room-state field it sets
    (`state`, to `payload`, or removed when `clears`), so a join's snapshot shows it."""

    name: str
    payload: Payload
    state: str | None = None
    clears: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """One room event as logged. `seq` is its stream id ("<ms>-<n>"): compare events by it."""

    seq: str
    event: str
    payload: Payload

    def live_payload(self, room: int) -> Payload:
        return live_payload(room, self)

    def as_wire(self, room: int) -> Payload:
        """The event in a join's `replay` list: `payload` exactly as the live event's."""
        return {"event": self.event, "seq": self.seq, "payload": live_payload(room, self)}


def live_payload(room: int, event: Event) -> Payload:
    """What a viewer receives for a logged event: a chat message as a batch of one, any other with its seq."""
    if event.event == CHAT:
        batch: Payload = orjson.loads(chat_batch_json(room, orjson.dumps(event.payload), 0))
        return batch
    return {**event.payload, "seq": event.seq}


# --- logged events ----------------------------------------------------------------------------------------------


def room_status(room: int, status: str) -> ServerEvent:
    """`room_status`: {"room_id", "status", "ts"}; sets the room's plain `status` field."""
    if status not in _STATUSES:
        raise ValueError(f"unknown room status {status!r}; one of {', '.join(sorted(_STATUSES))}")
    return ServerEvent(ROOM_STATUS, {"room_id": room, "status": str(status), "ts": now_ms()}, state="status")


def pinned(room: int, product: Product, *, price_minor: int, stock: int, offer: Mapping[str, Any]) -> ServerEvent:
    """`pinned`: the product shown, at the price a buyer pays now, and the offer it sells under (`voucher` null:
    the pin card shows a product or a voucher, never both)."""
    shown = {
        "id": product.id, "brand_id": product.brand_id, "title": product.title, "image_url": product.image_url,
        "price_minor": price_minor, "currency": product.currency, "stock": stock,
    }  # fmt: skip
    payload = {"room_id": room, "product": shown, "offer": dict(offer), "voucher": None, "ts": now_ms()}
    return ServerEvent(PINNED, payload, state=PINNED)


def voucher_card(voucher: Voucher, *, left: int) -> Payload:
    """A voucher as a viewer reads it: its terms and the claims `left` (quota less claimed). An amount voucher
    carries `amount_minor`, a percent one `percent_bps`; both carry `cap_minor` (the most it takes off)."""
    terms: Payload = {"id": voucher.id, "title": voucher.title, "kind": str(voucher.kind)}
    if voucher.kind is VoucherKind.AMOUNT:
        terms["amount_minor"] = voucher.amount_minor
    else:
        terms["percent_bps"] = voucher.percent_bps
    terms |= {
        "cap_minor": voucher.cap_minor, "min_spend_minor": voucher.min_spend_minor, "currency": voucher.currency,
        "ends_at_ms": int(voucher.ends_at.timestamp() * 1000), "left": max(0, left),
    }  # fmt: skip
    return terms


def pinned_voucher(room: int, voucher: Voucher, *, left: int) -> ServerEvent:
    """`pinned` with a voucher card (`voucher_card`, `product` null): the one shape, live, in a snapshot and in a
    replay."""
    payload = {"room_id": room, "product": None, "voucher": voucher_card(voucher, left=left), "ts": now_ms()}
    return ServerEvent(PINNED, payload, state=PINNED)


def unpinned(room: int) -> ServerEvent:
    """`pinned` with neither a product nor a voucher: the room shows nothing (a snapshot then shows null)."""
    payload = {"room_id": room, "product": None, "voucher": None, "ts": now_ms()}
    return ServerEvent(PINNED, payload, state=PINNED, clears=True)


def countdown(room: int, sale_id: int, starts_at_ms: int) -> ServerEvent:
    """`countdown`: a flash sale shown in the room starts at `starts_at` (ms since the epoch)."""
    return ServerEvent(COUNTDOWN, {"room_id": room, "sale_id": sale_id, "starts_at": starts_at_ms, "ts": now_ms()})


def chat_settings(room: int, slow_mode: int) -> ServerEvent:
    """`chat_settings`: the room's slow mode (seconds, 0 = off)."""
    return ServerEvent(CHAT_SETTINGS, {"room_id": room, "slow_mode": slow_mode})


def chat_deleted(room: int, ids: list[str]) -> Payload:
    """`chat_deleted`'s payload (without seq): `chat_delete.lua` logs it with the message's removal."""
    return {"room_id": room, "ids": list(ids)}


def video(room: int, state: str) -> ServerEvent:
    """`video`: the room's video state (`live`, `reconnecting`, `ended`); sets the `video` state field."""
    return ServerEvent(VIDEO, {"room_id": room, "state": state, "ts": now_ms()}, state=VIDEO)


def chat_message(seq: str, fields: Mapping[str, Any]) -> Payload:
    """A chat message in its one wire shape and key order, from its logged fields (`user_id`, `display_name`,
    `text`, `ts`; text or numbers) — as the log keeps them (`RoomStore`), as chat_post.lua's bus message
    carries them, and as a post returns them."""
    return {
        "id": seq,
        "user": {"id": int(fields["user_id"]), "name": str(fields["display_name"])},
        "text": str(fields["text"]),
        "ts": int(fields["ts"]),
    }


def chat_batch_json(room: int, messages: bytes, skipped: int) -> bytes:
    """The `chat` event's payload from messages already encoded as JSON and joined with commas: the fan-out's
    batches and a replay's chat are both built here."""
    return b'{"room_id":%d,"messages":[%b],"skipped":%d}' % (room, messages, skipped)


# --- state and notices, never logged ----------------------------------------------------------------------------


def stock(room: int, pool: str, counts: Mapping[str, int | bool]) -> Payload:
    """`stock`: the pinned product's live stock (`Stock.as_wire()`: available, held, sold, total, sold_out)."""
    return {"room_id": room, "pool": pool, **counts, "ts": now_ms()}


def counters(room: int, viewers: int, likes: int) -> Payload:
    """`counters`: the room's totals across every process."""
    return {"room_id": room, "viewers": viewers, "likes": likes}


def access_revoked(error: ClientError) -> Payload:
    """`access_revoked` (to one socket, not a room): the last event before the server closes it because its
    account changed."""
    return {"code": error.code, "message": error.detail}


def resync(room: int) -> Payload:
    """`resync`: this process lost part of the room's history; the viewer joins again."""
    return {"room_id": room}
