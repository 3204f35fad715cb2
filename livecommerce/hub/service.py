"""The hub: the Socket.IO gateway. Events in (each declared once, with its schema, by `@_on`), validated,
the room's rules applied (`livecommerce.rooms`), published through `LiveRooms`, acknowledged; events out to
every local viewer of a room through the `Fanout`. Likes and viewer counts are `counters.Counters`, the
pinned product's stock `stock.StockCounters`; the bus and its catch-up belong to `LiveRooms`.

Flow of an event (a pin, a chat message): the handler validates the payload (`protocol`), checks the rule
(who may, which room state allows it), publishes it through `LiveRooms` — one Lua script that appends to the
room's event log and publishes on the room's bus channel — which hands it to this process's `Fanout` at
once (`_on_room_event`), so local viewers are served first. Other processes hear it on their one bus
connection (they watch only rooms they have viewers in) and hand it to their own `Fanout`. Counters (likes,
viewers) never travel as events: each process folds its likes and its viewer count into Redis a few times a
second and broadcasts the totals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import socketio
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce import rooms as room_rules
from livecommerce.accounts import Account, Accounts
from livecommerce.auth import ANONYMOUS, Principal, TokenSigner
from livecommerce.commerce.buying import Buying, RoomInfo, hold_wire
from livecommerce.commerce.pools import Hold, HoldState
from livecommerce.commerce.voucher_live import VoucherLive
from livecommerce.errors import (
    ClientError,
    Conflict,
    Forbidden,
    Internal,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
)
from livecommerce.hub import protocol as p
from livecommerce.hub.counters import Counters
from livecommerce.hub.fanout import Fanout
from livecommerce.hub.stock import StockCounters
from livecommerce.live import events as ev
from livecommerce.live.events import Event
from livecommerce.live.rooms import LiveRooms
from livecommerce.models import Room
from livecommerce.outage import Warnings, dependency_down, unavailable
from livecommerce.shows import Shows
from livecommerce.wire import validation_problem

__all__ = ["EVENTS", "Hub"]

log = logging.getLogger(__name__)
_outages = Warnings(log)

_EVENTS_PER_SECOND = 20.0  # per connection, with a burst of twice that
_CHAT_PER_MINUTE = 20  # per user per room, enforced in Redis
_ACCOUNT_RECHECK_INTERVAL = 10.0  # every open socket's account, read again (announcements do it at once)
_JOIN_DB_WAIT = 2.0  # seconds a join waits for the database before it uses the kept room


@dataclass
class _Connection:
    """What the hub keeps per socket: who it is, where it is, and its event budget.

    `who` is the account's current principal, replaced when an admin changes the account (`_accounts_changed`).
    """

    who: Principal
    name: str
    rooms: set[int] = field(default_factory=set)
    tokens: float = 2 * _EVENTS_PER_SECOND
    refilled: float = field(default_factory=time.monotonic)

    def spend(self) -> bool:
        now = time.monotonic()
        self.tokens = min(2 * _EVENTS_PER_SECOND, self.tokens + (now - self.refilled) * _EVENTS_PER_SECOND)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


_Handler = Callable[..., Awaitable[dict[str, Any]]]  # (hub, sid, connection, validated payload) -> ack data
_H = TypeVar("_H", bound=_Handler)
_Validator = type[BaseModel] | TypeAdapter[Any]

# Client event name -> (the validator of its payload, its handler): declared once per event, by `_on`.
EVENTS: dict[str, tuple[_Validator, _Handler]] = {}


def _on(event: str, validator: _Validator) -> Callable[[_H], _H]:
    """Declare a client event: its name, its payload's schema (`protocol`) and, decorated, its handler."""

    def declare(handler: _H) -> _H:
        if event in EVENTS:
            raise RuntimeError(f"the {event!r} event is declared twice")
        EVENTS[event] = (validator, handler)
        return handler

    return declare


class Hub:
    """One per web process. `install` registers the socket handlers; `run` owns the background loops."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        *,
        fanout: Fanout,
        live: LiveRooms,
        sessions: async_sessionmaker[AsyncSession],
        signer: TokenSigner,
        buying: Buying,
        accounts: Accounts,
        vouchers: VoucherLive | None = None,
    ) -> None:
        self.sio = sio
        self.fanout = fanout
        self.live = live
        self.sessions = sessions
        self.signer = signer
        self.buying = buying
        self.accounts = accounts
        self.shows = Shows(sessions=sessions, buying=buying, live=live, vouchers=vouchers)
        accounts.subscribe(self._accounts_changed)
        live.listen(self._on_room_event)
        self._connections: dict[str, _Connection] = {}
        self._rechecks: set[asyncio.Task[None]] = set()
        self.counters = Counters(fanout, live.store)
        self.stock = StockCounters(fanout, buying.inventory, buying.batcher)
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("*", self._on_event)

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """The fan-out ticks, the counter and stock loops and the accounts re-check, until cancelled (the bus
        is `LiveRooms`', run by its own context)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.fanout.run(), name="hub-fanout")
            group.create_task(self.counters.run(), name="hub-counters")
            group.create_task(self.stock.run(), name="hub-stock")
            group.create_task(self._accounts_loop(), name="hub-accounts")

    # --- connections ------------------------------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """Refused connections get `connect_error` with `message` (the text) and `data` = `{code, message}`."""
        token = auth.get("token") if isinstance(auth, dict) else None
        who, name = ANONYMOUS, "guest"
        if token is not None:
            try:
                if not isinstance(token, str):
                    raise Unauthorized("auth.token must be a string")
                claimed = self.signer.verify(token)
                assert claimed.user_id is not None
                account = await self.accounts.active(claimed.user_id)  # the account now, not the token's role
                who, name = account.principal, account.display_name
            except ClientError as error:
                refusal = p.error_ack(error)["error"]
                raise socketio.exceptions.ConnectionRefusedError(refusal["message"], refusal) from None
        self._connections[sid] = _Connection(who=who, name=name)

    def _accounts_changed(self, user_ids: frozenset[int] | None) -> None:
        """An account changed (None: any may have): re-check the sockets signed in as it, off the caller."""
        task = asyncio.create_task(self._recheck(user_ids), name="hub-account-recheck")
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    async def _accounts_loop(self) -> None:
        """A safety net under the Redis announcements (at most once: one lost while a listener reconnects, or a
        connect whose account was read just before a change, would otherwise keep its rights): every open
        socket's account is checked again every `_ACCOUNT_RECHECK_INTERVAL` seconds."""
        while True:
            await asyncio.sleep(_ACCOUNT_RECHECK_INTERVAL)
            await self._recheck(None)

    async def _recheck(self, user_ids: frozenset[int] | None) -> None:
        """Apply the accounts as they are now to open sockets: a suspended, deleted or vanished account's
        sockets get `access_revoked` and are disconnected; a changed role or brand replaces the socket's
        principal, and a socket is disconnected the same way if it is in a room the account may no longer see."""
        held = {c.who.user_id for c in self._connections.values() if c.who.user_id is not None}
        wanted = held if user_ids is None else held & user_ids
        if not wanted:
            return
        try:
            accounts = await self.accounts.many(wanted)
        except ClientError as failed:  # the database is down: keep the sockets as they are, check again later
            log.warning("re-checking %d account(s) of open sockets failed: %s", len(wanted), failed.detail)
            return
        for sid, connection in list(self._connections.items()):
            user_id = connection.who.user_id
            if user_id not in wanted:
                continue
            try:
                error = await self._reauthorise(connection, accounts.get(user_id))
            except Exception:  # one socket's failure must not leave the others unchecked
                log.exception("re-authorising socket %s of user %s failed; disconnecting it", sid, user_id)
                error = Internal("your access could not be re-checked; reconnect")
            if error is not None:
                await self.sio.emit(ev.ACCESS_REVOKED, ev.access_revoked(error), to=sid)
                await self.sio.disconnect(sid)

    async def _reauthorise(self, connection: _Connection, account: Account | None) -> ClientError | None:
        """The refusal that ends this socket, or None once its principal is the account's current one."""
        if account is None:
            return Unauthorized("this account no longer exists; sign in again")
        refusal = account.refusal()
        if refusal is not None:
            return refusal
        if account.principal == connection.who:
            return None
        connection.who = account.principal
        connection.name = account.display_name
        for room_id in sorted(connection.rooms):
            try:
                await self._room(connection.who, room_id)
            except NotFound:
                return Forbidden(f"your role changed and room {room_id} is no longer open to you; reconnect")
        return None

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._connections.pop(sid, None)
        for room in self.fanout.leave_all(sid):
            await self._maybe_unsubscribe(room)

    async def _on_event(self, event: str, sid: str, data: Any = None, *extra: Any) -> dict[str, Any]:
        """Every client event: budget, size, validation, then its handler; the answer is the ack."""
        connection = self._connections.get(sid)
        try:
            if connection is None:
                raise Unauthorized("this connection is not registered; reconnect")
            if not connection.spend():
                raise TooManyRequests(
                    f"too many events: at most {_EVENTS_PER_SECOND:g} per second; slow down", retry_after=1
                )
            declared = EVENTS.get(event)
            if declared is None:
                raise NotFound(f"unknown event {event!r}; the events are {', '.join(sorted(EVENTS))}")
            validator, handler = declared
            if extra:
                raise InvalidRequest(f"{event} takes one payload object, got {1 + len(extra)} arguments")
            if len(orjson.dumps(data, default=str)) > p.MAX_EVENT_BYTES:
                raise PayloadTooLarge(f"the {event} payload is larger than {p.MAX_EVENT_BYTES} bytes")
            payload = _validate(validator, data, event)
            return p.ok_ack(await handler(self, sid, connection, payload))
        except ClientError as error:
            return p.error_ack(error)
        except Exception as exc:  # a fault must not end the connection or go unanswered
            down = unavailable(exc)
            if down is not None:  # the database or Redis is down: say when to retry, as REST does
                _outages.failed(dependency_down(exc) or "a service", f"hub event {event}", exc)
                return p.error_ack(down)
            log.exception("hub event %s failed", event)
            return p.error_ack(Internal("something went wrong on the server; nothing was changed"))

    # --- rooms ------------------------------------------------------------------------------------------------

    async def _room(self, who: Principal, room_id: int) -> Room:
        async with self.sessions() as session:
            return await room_rules.get_room(session, who, room_id)

    async def _joinable(self, who: Principal, room_id: int) -> tuple[RoomInfo, bool]:
        """The room to join, read from the database now (True); while the database is down (or slower than
        `_JOIN_DB_WAIT`), the last good value the buying cache keeps (False), so viewers re-join a live room
        through the outage. The read goes on behind a timed-out wait and refreshes the cache."""
        try:
            return await asyncio.wait_for(self.buying.room(room_id, who, fresh=True), _JOIN_DB_WAIT), True
        except Exception as exc:
            if dependency_down(exc) is None:
                raise
            return await self.buying.room(room_id, who), False

    @_on("join", p.Join)
    async def _join(self, sid: str, connection: _Connection, event: p.Join) -> dict[str, Any]:
        room, current = await self._joinable(connection.who, event.room_id)
        if room.id not in connection.rooms and len(connection.rooms) >= p.MAX_ROOMS_PER_CONNECTION:
            raise Conflict(f"a connection may be in {p.MAX_ROOMS_PER_CONNECTION} rooms at once; leave one first")
        # Only the database's own answer may correct Redis; a kept value may be older than Redis's status.
        if current:  # Redis may have missed a status change (e.g. it was restarted): every viewer hears it
            await self.live.sync_status(room.id, room.status.value)
        connection.rooms.add(room.id)
        self.fanout.join(room.id, sid)
        await self.live.watch(room.id, "hub")
        if event.since is not None:
            missed = await self.live.events_since(room.id, event.since)
            if missed is not None:
                return {"room_id": room.id, "replay": [e.as_wire(room.id) for e in missed]}
        snapshot = await self.live.snapshot(room.id)
        self.stock.track_pin(room.id, snapshot.pinned)
        stock = await self.stock.current(room.id)
        status = room.status.value if current else (snapshot.status or room.status.value)
        wire = {"room": _room_wire(room, status), **snapshot.as_wire(), "stock": stock}
        return {"room_id": room.id, "snapshot": wire}

    @_on("leave", p.Leave)
    async def _leave(self, sid: str, connection: _Connection, event: p.Leave) -> dict[str, Any]:
        if event.room_id in connection.rooms:
            connection.rooms.discard(event.room_id)
            self.fanout.leave(event.room_id, sid)
            await self._maybe_unsubscribe(event.room_id)
        return {"room_id": event.room_id}

    async def _maybe_unsubscribe(self, room: int) -> None:
        if room not in self.fanout.rooms():
            await self.live.unwatch(room, "hub")

    def _require_member(self, connection: _Connection, room_id: int) -> None:
        if room_id not in connection.rooms:
            raise Conflict(f"join room {room_id} first")

    # --- chat and likes ---------------------------------------------------------------------------------------

    @_on("chat", p.Chat)
    async def _chat(self, sid: str, connection: _Connection, event: p.Chat) -> dict[str, Any]:
        room_rules.require_chatter(connection.who)
        self._require_member(connection, event.room_id)
        assert connection.who.user_id is not None
        posted = await self.live.post_chat(
            event.room_id, connection.who.user_id, connection.name, event.text, rate_per_minute=_CHAT_PER_MINUTE,
            burst=5,
        )  # fmt: skip
        return {"message": posted.payload}

    @_on("like", p.Like)
    async def _like(self, sid: str, connection: _Connection, event: p.Like) -> dict[str, Any]:
        self._require_member(connection, event.room_id)
        self.counters.like(event.room_id, event.count)
        return {}

    # --- host actions -----------------------------------------------------------------------------------------

    @_on("pin", p.Pin)
    async def _pin(self, sid: str, connection: _Connection, event: p.Pin) -> dict[str, Any]:
        if event.voucher_id is not None:
            shown = await self.shows.pin_voucher(connection.who, event.room_id, event.voucher_id)
        else:
            assert event.product_id is not None  # the protocol asks for exactly one
            shown = await self.shows.pin(connection.who, event.room_id, event.product_id)
        return shown.live_payload(event.room_id)

    @_on("room_vouchers", p.RoomVouchers)
    async def _room_vouchers(self, sid: str, connection: _Connection, event: p.RoomVouchers) -> dict[str, Any]:
        return {"room_id": event.room_id, "vouchers": await self.shows.room_vouchers(connection.who, event.room_id)}

    @_on("unpin", p.Unpin)
    async def _unpin(self, sid: str, connection: _Connection, event: p.Unpin) -> dict[str, Any]:
        return (await self.shows.unpin(connection.who, event.room_id)).live_payload(event.room_id)

    @_on("moderate", p.MODERATE)
    async def _moderate(self, sid: str, connection: _Connection, event: Any) -> dict[str, Any]:
        arguments = event.model_dump(exclude={"room_id", "action"})
        await self.shows.moderate(connection.who, event.room_id, event.action, **arguments)
        return {"room_id": event.room_id, "action": event.action}

    # --- buying -----------------------------------------------------------------------------------------------

    @_on("buy", p.Buy)
    async def _buy(self, sid: str, connection: _Connection, event: p.Buy) -> dict[str, Any]:
        self._require_member(connection, event.room_id)
        hold, replayed = await self.buying.buy(
            connection.who, event.room_id, event.product_id, quantity=event.quantity, key=event.key, code=event.code,
            sale_id=event.sale_id,
        )  # fmt: skip
        quote = await self._quoted(hold)
        return {"hold": hold_wire(hold, quote), "replayed": replayed, "quote": quote}

    async def _quoted(self, hold: Hold) -> dict[str, Any] | None:
        """A held hold not yet priced: its price after the buyer's best vouchers (what checkout will charge), as
        REST's buy answers it; None without vouchers."""
        vouchers = self.buying.vouchers
        if vouchers is None or hold.state is not HoldState.HELD or hold.disc is not None:
            return None
        return (await vouchers.quote_hold(hold)).as_wire()

    @_on("claim_voucher", p.ClaimVoucher)
    async def _claim_voucher(self, sid: str, connection: _Connection, event: p.ClaimVoucher) -> dict[str, Any]:
        room_rules.require_buyer(connection.who)
        self._require_member(connection, event.room_id)
        return await self.shows.claim_voucher(connection.who, event.room_id, event.voucher_id, event.idempotency_key)

    @_on("quote", p.Quote)
    async def _quote(self, sid: str, connection: _Connection, event: p.Quote) -> dict[str, Any]:
        room_rules.require_buyer(connection.who)
        self._require_member(connection, event.room_id)
        return {"price": await self.shows.quote(connection.who, event.room_id, event.product_id, event.quantity)}

    @_on("checkout", p.Checkout)
    async def _checkout(self, sid: str, connection: _Connection, event: p.Checkout) -> dict[str, Any]:
        hold = await self.buying.checkout(connection.who, event.hold_id, event.card_number, claim_ids=event.claim_ids)
        return {"hold": hold_wire(hold)}

    @_on("cancel_hold", p.CancelHold)
    async def _cancel_hold(self, sid: str, connection: _Connection, event: p.CancelHold) -> dict[str, Any]:
        hold = await self.buying.cancel(connection.who, event.hold_id)
        return {"hold": hold_wire(hold)}

    # --- what this process hears ------------------------------------------------------------------------------

    def _on_room_event(self, room: int, event: Event) -> None:
        """Every event of a room watched here (published here or heard from another process), to local viewers."""
        if event.event == ev.RESYNC:
            self.fanout.add_event(room, ev.RESYNC, event.payload)
        elif event.event == ev.CHAT:  # the batch around it is built by the fan-out with `events.chat_batch_json`
            self.fanout.add_chat(room, event.payload)
        elif event.event == ev.PINNED:
            self.stock.track_pin(room, event.payload)
            self.fanout.set_state(room, ev.PINNED, ev.PINNED, event.live_payload(room))
        else:
            if event.event == ev.ROOM_STATUS:
                self.buying.forget_room(room)
            self.fanout.add_event(room, event.event, event.live_payload(room))


def _validate(validator: _Validator, data: Any, event: str) -> Any:
    if not isinstance(data, dict):
        raise InvalidRequest(f"the {event} payload must be a JSON object")
    try:
        if isinstance(validator, TypeAdapter):
            return validator.validate_python(data)
        return validator.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc, event) from None


def _room_wire(room: RoomInfo, status: str) -> dict[str, Any]:
    return {
        "id": room.id,
        "title": room.title,
        "status": status,
        "host": {"id": room.host_id, "display_name": room.host_name},
        "brands": [{"id": brand_id, "name": name} for brand_id, name in room.brands],
        "started_at": room.started_at.isoformat() if room.started_at else None,
    }
