"""The hub's wire protocol: Socket.IO event names, payload schemas and the acknowledgement shape.

Documented for client authors in `docs/protocol.md`; this module is the executable form of that page. Each
client event is declared once, with its schema from here, by `@_on` in `hub/service.py` (its `EVENTS`).
Every client event is validated against its model here (strict, unknown fields refused) before any rule
runs, and every acknowledgement is either `{"ok": true, "data": {...}}` or
`{"ok": false, "error": {"code", "message", "retryable", "retry_after"?}}` with the same codes the REST API uses.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from livecommerce.commerce.pools import HOLD_ID_PATTERN
from livecommerce.errors import ClientError
from livecommerce.live.codec import SEQ_PATTERN
from livecommerce.wire import MAX_ID

__all__ = [
    "CHAT_MAX_CHARS",
    "MAX_EVENT_BYTES",
    "MODERATE",
    "Buy",
    "CancelHold",
    "Chat",
    "Checkout",
    "ClaimVoucher",
    "Join",
    "Leave",
    "Like",
    "Moderate",
    "Pin",
    "Quote",
    "RoomVouchers",
    "Unpin",
    "error_ack",
    "ok_ack",
]

CHAT_MAX_CHARS = 300
MAX_EVENT_BYTES = 16 * 1024  # the largest client event the server reads (Engine.IO max payload)
MAX_ROOMS_PER_CONNECTION = 5

_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
RoomId = Annotated[int, Field(ge=1, le=MAX_ID)]
UserId = Annotated[int, Field(ge=1, le=MAX_ID)]
# A stream id as the server sends it: "<ms>-<n>".
Seq = Annotated[str, StringConstraints(pattern=rf"^{SEQ_PATTERN}$")]


class Join(BaseModel):
    """Enter a room. With `since` (the last `seq` seen), the server replays what was missed instead."""

    model_config = _STRICT

    room_id: RoomId
    since: Seq | None = None


class Leave(BaseModel):
    model_config = _STRICT

    room_id: RoomId


class Chat(BaseModel):
    model_config = _STRICT

    room_id: RoomId
    text: Annotated[str, StringConstraints(min_length=1, max_length=CHAT_MAX_CHARS)]


class Like(BaseModel):
    model_config = _STRICT

    room_id: RoomId
    count: Annotated[int, Field(ge=1, le=50)] = 1


class Pin(BaseModel):
    """Show a product or a voucher on the room's pin card: exactly one of `product_id` and `voucher_id`."""

    model_config = _STRICT

    room_id: RoomId
    product_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None
    voucher_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None

    @model_validator(mode="after")
    def _one_card(self) -> Pin:
        if (self.product_id is None) == (self.voucher_id is None):
            raise ValueError("pin one thing: send either `product_id` or `voucher_id`")
        return self


class Unpin(BaseModel):
    model_config = _STRICT

    room_id: RoomId


HoldId = Annotated[str, StringConstraints(pattern=f"^{HOLD_ID_PATTERN}$")]


IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class RoomVouchers(BaseModel):
    """The vouchers the room's host may pin now (host or admin)."""

    model_config = _STRICT

    room_id: RoomId


class ClaimVoucher(BaseModel):
    """Claim a voucher pinned in the room this show. `idempotency_key` identifies the tap: a retry with it
    returns the same claim (`replayed`)."""

    model_config = _STRICT

    room_id: RoomId
    voucher_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    idempotency_key: IdempotencyKey


class Quote(BaseModel):
    """The price after the caller's best usable claims, for a product of the room."""

    model_config = _STRICT

    room_id: RoomId
    product_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    quantity: Annotated[int, Field(ge=1, le=100)] = 1


class Buy(BaseModel):
    """Reserve the product shown in a room. `idempotency_key` identifies the tap (as in REST): a retry with it
    returns the same hold. `key` is its deprecated older name, still accepted; after validation both hold the
    same value, and sending both with different values is refused."""

    model_config = _STRICT

    room_id: RoomId
    product_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    quantity: Annotated[int, Field(ge=1, le=100)] = 1
    idempotency_key: IdempotencyKey | None = None
    key: IdempotencyKey | None = None  # deprecated: the older name of `idempotency_key`
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,32}$")] | None = None
    sale_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None  # refused unless the product sells from it

    @model_validator(mode="after")
    def _one_key(self) -> Buy:
        if self.key is not None and self.idempotency_key is not None and self.key != self.idempotency_key:
            raise ValueError("send the tap's key once, as `idempotency_key` (`key` is its deprecated name)")
        self.key = self.idempotency_key = self.idempotency_key or self.key
        return self


class Checkout(BaseModel):
    """Pay for a hold with a card (test mode: see docs/protocol.md for the test card numbers)."""

    model_config = _STRICT

    hold_id: HoldId
    card_number: Annotated[str, StringConstraints(pattern=r"^[0-9 ]{12,23}$")]
    # Voucher claims to use (at most one seller, one platform voucher); None: the best of the buyer's; []: none.
    claim_ids: list[Annotated[str, StringConstraints(pattern=r"^v[0-9]{1,15}\.[0-9]{1,12}$")]] | None = Field(
        default=None, max_length=2
    )


class CancelHold(BaseModel):
    model_config = _STRICT

    hold_id: HoldId


class _Mute(BaseModel):
    model_config = _STRICT
    action: Literal["mute"]
    room_id: RoomId
    user_id: UserId
    seconds: Annotated[int, Field(ge=10, le=7 * 24 * 3600)]


class _Unmute(BaseModel):
    model_config = _STRICT
    action: Literal["unmute"]
    room_id: RoomId
    user_id: UserId


class _Ban(BaseModel):
    model_config = _STRICT
    action: Literal["ban", "unban"]
    room_id: RoomId
    user_id: UserId


class _Delete(BaseModel):
    model_config = _STRICT
    action: Literal["delete"]
    room_id: RoomId
    message_id: Seq


class _SlowMode(BaseModel):
    model_config = _STRICT
    action: Literal["slow_mode"]
    room_id: RoomId
    seconds: Annotated[int, Field(ge=0, le=3600)] = Field(description="0 turns slow mode off")


class _BlockWords(BaseModel):
    model_config = _STRICT
    action: Literal["block_words"]
    room_id: RoomId
    words: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=40)]], Field(max_length=200)]


class _Moderator(BaseModel):
    model_config = _STRICT
    action: Literal["add_moderator", "remove_moderator"]
    room_id: RoomId
    user_id: UserId


Moderate = Annotated[
    _Mute | _Unmute | _Ban | _Delete | _SlowMode | _BlockWords | _Moderator, Field(discriminator="action")
]
MODERATE: TypeAdapter[Any] = TypeAdapter(Moderate)


def ok_ack(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ok": True, "data": data or {}}


def error_ack(error: ClientError) -> dict[str, Any]:
    """The refusal as the REST problem document words it: `code`, `message` (its `detail`), `retryable`, and
    `retry_after` (seconds) when waiting helps."""
    wire = error.wire()
    return {"ok": False, "error": {"code": wire.pop("code"), "message": error.detail, **wire}}
