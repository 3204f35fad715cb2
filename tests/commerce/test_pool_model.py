"""The pool functions (`lua/pools.lua`), driven through `Inventory` by a hypothesis state machine, against a
plain Python model of a sale.

The model predicts the exact answer of every call (status or refusal, hold ids, the hold's state after the
call) and, after every step, the whole pool: stock, holds, per-buyer units, idempotency records, codes and the
outbox. Time is Redis TIME, which the model cannot know exactly: each call that can depend on it is bracketed
by two readings of Redis TIME, `t0` before and `t1` after. A hold due at or before `t0` must be treated as due,
one due after `t1` as not due; in between, Redis may go either way and the model follows what it reports (and
checks the timestamps it reports lie between `t0` and `t1`). The main machine holds for an hour, so nothing
expires by itself; a second machine holds for a few milliseconds and lets time pass (waiting on Redis TIME, not
on a guess), so expiry, payment deadlines and the sweeper meet every other rule.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, TypeVar

import orjson
import pytest
import uvloop
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from livecommerce.commerce.pools import (
    ADJUST_ONCE_MS,
    Hold,
    HoldReply,
    HoldState,
    Inventory,
    PoolConfig,
    PoolId,
    Refusal,
    Refused,
    Reserved,
    ReserveRequest,
    Stock,
)
from livecommerce.commerce.terms import SaleTerms
from tests.support.audit import audit_pool

T = TypeVar("T")
Audience = Literal["open", "list", "codes"]

POOL = PoolId.sale(1)
BUYERS = (1, 2, 3, 4, 5)
INVITED = frozenset({1, 2, 3})  # the invite list (audience "list"); 4 and 5 are not on it
CODES = ("GOLD-1", "GOLD-2", "GOLD-3", "GOLD-4")  # single-use codes (audience "codes")
SENT_CODES = ("", "NOPE", *CODES)  # what a buyer may type: nothing, a wrong code, a real one (used or not)
# Sale terms tokens a tap may carry (none, or a snapshot): stored verbatim, never part of the request's identity.
TERMS = ("", "h7.c0.r0.f0.p200.bp", "h8.c3.r1500.f2.p600.bd")
NO_SUCH_HOLD = "s1.999"
HOUR_MS = 3_600_000
LIVE = frozenset({HoldState.HELD, HoldState.PAYING})


def due(at: int, t0: int, t1: int) -> bool | None:
    """Whether Redis, reading its clock at some instant in [t0, t1], finds `at` reached (now >= at): True, False,
    or None when either answer is right."""
    if at <= t0:
        return True
    if at > t1:
        return False
    return None


def draw_one(data: st.DataObject, items: Sequence[T], label: str) -> T:
    """One of `items`, by an index drawn from a fixed range. Which holds are live depends on Redis TIME, so the
    choices differ from run to run; hypothesis requires the draws themselves not to (sampled_from(items) would
    draw from a different range)."""
    return items[data.draw(st.integers(0, 63), label=label) % len(items)]


# --- the model ------------------------------------------------------------------------------------------------


@dataclass
class ModelHold:
    id: str
    buyer: int
    qty: int
    code: str  # as recorded: '' in a pool that takes no codes
    key: str
    terms: str  # the token the hold was made with ('' for none)
    state: HoldState = HoldState.HELD
    exp: int = 0  # from Redis (checked against the clock readings around the call)
    deadline: int | None = None
    ref: str | None = None

    @property
    def counts(self) -> bool:
        """Whether its units count against the buyer's cap and keep its code used."""
        return self.state in LIVE or self.state is HoldState.PAID


@dataclass
class Sale:
    """A sale as the rules describe it, with no Redis in sight."""

    audience: Audience
    total: int
    cap: int
    available: int
    held: int = 0
    paid: int = 0
    seq: int = 0
    closed: bool = False
    holds: dict[str, ModelHold] = field(default_factory=dict)
    idem: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)  # -> (hold id, "qty:code")
    codes: dict[str, str] = field(default_factory=dict)  # code -> '' while unused, else the hold using it
    outbox: list[tuple[str, str]] = field(default_factory=list)  # (type, hold id)
    adjusted: set[str] = field(default_factory=set)  # operation ids of stock adjustments applied

    def units(self, buyer: int) -> int:
        return sum(h.qty for h in self.holds.values() if h.buyer == buyer and h.counts)

    @property
    def stock(self) -> Stock:
        return Stock(self.available, self.held, self.paid, self.total)

    def reserve(self, request: ReserveRequest) -> Refused | tuple[str, bool]:
        """The refusal, or (hold id, replayed). A new hold is recorded with exp 0: the caller sets Redis's."""
        buyer, qty = request.buyer_id, request.quantity
        fingerprint = f"{qty}:{request.code}"
        seen = self.idem.get((buyer, request.key))
        if seen is not None:
            hold_id, earlier = seen
            return Refused(Refusal.KEY_REUSED, hold_id=hold_id) if earlier != fingerprint else (hold_id, True)
        if self.closed:
            return Refused(Refusal.CLOSED)
        if qty > self.cap:
            return Refused(Refusal.OVER_LIMIT, limit=self.cap)
        if self.audience == "list" and buyer not in INVITED:
            return Refused(Refusal.NOT_INVITED)
        if self.audience == "codes" and request.code == "":
            return Refused(Refusal.CODE_REQUIRED)
        code = request.code if self.audience == "codes" else ""
        if code:
            if code not in self.codes:
                return Refused(Refusal.CODE_INVALID)
            if self.codes[code]:
                return Refused(Refusal.CODE_USED)
        have = self.units(buyer)
        if have + qty > self.cap:
            return Refused(Refusal.LIMIT, limit=self.cap, have=have)
        if self.available == 0:
            return Refused(Refusal.SOLD_OUT)
        if self.available < qty:
            return Refused(Refusal.NOT_ENOUGH, available=self.available)
        self.seq += 1
        hold = ModelHold(f"{POOL.name}.{self.seq}", buyer, qty, code, request.key, request.terms)
        self.holds[hold.id] = hold
        self.available -= qty
        self.held += qty
        self.idem[buyer, request.key] = (hold.id, fingerprint)
        if code:
            self.codes[code] = hold.id
        self.outbox.append(("reserved", hold.id))
        return hold.id, False

    def release(self, hold: ModelHold, state: HoldState) -> None:
        assert hold.state in LIVE
        hold.state = state
        hold.deadline = None
        self.available += hold.qty
        self.held -= hold.qty
        if hold.code:
            self.codes[hold.code] = ""
        self.outbox.append((state.value, hold.id))

    def pay(self, hold: ModelHold, ref: str) -> None:
        assert hold.state is HoldState.PAYING
        hold.state = HoldState.PAID
        hold.ref = ref
        hold.deadline = None
        self.held -= hold.qty
        self.paid += hold.qty
        self.outbox.append(("paid", hold.id))


# --- the machine ----------------------------------------------------------------------------------------------


class SaleMachine(RuleBasedStateMachine):
    """One sale per example, on a flushed Redis. Each call runs to completion on the machine's own event loop.
    `machine_for` makes the subclass that says which Redis, which audience, and how long holds last."""

    redis_url: ClassVar[str]
    audience: ClassVar[Audience]
    short_holds: ClassVar[bool]

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        self.redis = Redis.from_url(self.redis_url, socket_timeout=10, socket_connect_timeout=5)  # no endless wait
        self.inventory = Inventory(self.redis)
        self.sale = Sale(self.audience, 0, 1, 0)
        self.hold_ms = HOUR_MS
        self.grace_ms = HOUR_MS
        self.tried: list[ReserveRequest] = []
        self.fresh_keys = 0

    def teardown(self) -> None:
        try:
            self.run(self.redis.aclose())
        finally:
            self.runner.close()

    def run(self, call: Awaitable[T]) -> T:
        async def wait() -> T:
            return await call

        return self.runner.run(wait())

    def now(self) -> int:
        seconds, micros = self.run(self.redis.time())
        return int(seconds) * 1000 + int(micros) // 1000

    def timed(self, call: Awaitable[T]) -> tuple[T, int, int]:
        """Run a call between two readings of Redis TIME."""
        t0 = self.now()
        result = self.run(call)
        return result, t0, self.now()

    # --- set-up ---------------------------------------------------------------------------------------------

    @initialize(stock=st.integers(5, 8), cap=st.integers(1, 3), data=st.data())
    def load_the_sale(self, stock: int, cap: int, data: st.DataObject) -> None:
        if self.short_holds:
            self.hold_ms = data.draw(st.sampled_from((1, 5, 30)), label="hold_ms")
            self.grace_ms = data.draw(st.sampled_from((1, 5, 30)), label="grace_ms")
        self.sale = Sale(self.audience, stock, cap, stock)
        self.run(self.redis.flushall())
        self.run(self.inventory.load_library())
        now = self.now()
        config = PoolConfig(
            version=1, product_id=7, brand_id=3, sale_id=1, price_minor=1999, currency="USD", quantity=stock,
            per_buyer_limit=cap, starts_at_ms=now - 1000, ends_at_ms=now + HOUR_MS, hold_ms=self.hold_ms,
            audience=self.audience,
        )  # fmt: skip
        invitees = sorted(INVITED) if self.audience == "list" else []
        codes = list(CODES) if self.audience == "codes" else []
        assert self.run(self.inventory.load(POOL, config, invitees=invitees, codes=codes)) == ("loaded", 1, True)
        self.sale.codes = dict.fromkeys(codes, "")

    # --- drawing --------------------------------------------------------------------------------------------

    def draw_request(self, data: st.DataObject) -> ReserveRequest:
        """A fresh tap, or one under a key used before: the same request (a retry), or a changed one."""
        reuse = bool(self.tried) and data.draw(st.booleans(), label="reuse a key")
        if reuse:
            earlier = data.draw(st.sampled_from(self.tried), label="earlier request")
            change = data.draw(st.sampled_from(("none", "room", "terms", "quantity", "code", "buyer")), label="change")
            if change == "room":  # not part of the request's identity: still a retry
                return replace(earlier, room_id=data.draw(st.none() | st.integers(1, 3), label="room"))
            if change == "terms":  # neither: the retry gets the hold with the terms it was made with
                return replace(earlier, terms=data.draw(st.sampled_from(TERMS), label="terms"))
            if change == "quantity":
                return replace(earlier, quantity=data.draw(st.integers(1, self.sale.cap + 1), label="quantity"))
            if change == "code":
                return replace(earlier, code=data.draw(st.sampled_from(SENT_CODES), label="code"))
            if change == "buyer":  # keys are per buyer: another buyer's same key is a new request
                return replace(earlier, buyer_id=data.draw(st.sampled_from(BUYERS), label="buyer"))
            return earlier
        self.fresh_keys += 1
        return ReserveRequest(
            buyer_id=data.draw(st.sampled_from(BUYERS), label="buyer"),
            key=f"tap-{self.fresh_keys}",
            quantity=data.draw(st.integers(1, self.sale.cap + 1), label="quantity"),
            code=data.draw(st.sampled_from(SENT_CODES), label="code"),
            room_id=data.draw(st.none() | st.integers(1, 3), label="room"),
            terms=data.draw(st.sampled_from(TERMS), label="terms"),
        )

    def draw_hold(self, data: st.DataObject, *likely: HoldState) -> tuple[str, ModelHold | None]:
        """Mostly a hold in one of the `likely` states (if any), else any hold, now and then one that never was."""
        holds = sorted(self.sale.holds)
        wanted = [i for i in holds if self.sale.holds[i].state in likely]
        pick = data.draw(st.integers(0, 9), label="which hold")
        choices = wanted if wanted and pick < 6 else holds if holds and pick < 9 else [NO_SUCH_HOLD]
        hold_id = draw_one(data, choices, "hold")
        return hold_id, self.sale.holds.get(hold_id)

    def draw_actor(self, data: st.DataObject, hold: ModelHold | None) -> int:
        """The hold's buyer, someone else, or 0 (the system, acting for anyone)."""
        who = data.draw(st.sampled_from(("own", "other", "system")), label="actor")
        other: int = data.draw(st.sampled_from(BUYERS[:-1]), label="other")  # drawn whatever `who` is: see draw_one
        if who == "system":
            return 0
        if hold is None:
            return other
        if who == "own":
            return hold.buyer
        return other if other != hold.buyer else BUYERS[-1]

    # --- checking -------------------------------------------------------------------------------------------

    def check_hold(self, got: Hold | None, hold: ModelHold) -> None:
        assert got is not None, f"expected hold {hold.id}"
        assert (
            got.id, got.buyer_id, got.quantity, got.code, got.key, got.state, got.expires_at_ms, got.deadline_ms,
            got.payment_ref, got.terms,
        ) == (
            hold.id, hold.buyer, hold.qty, hold.code, hold.key, hold.state, hold.exp, hold.deadline, hold.ref,
            SaleTerms.parse(hold.terms) if hold.terms else SaleTerms.default(),
        ), f"{got} != model {hold}"  # fmt: skip

    def check_reply(self, reply: HoldReply, status: str, hold: ModelHold | None) -> None:
        assert reply.status == status, f"expected {status!r}, got {reply}"
        if hold is None:
            assert reply.hold is None, reply
        else:
            self.check_hold(reply.hold, hold)

    def reserve(self, requests: list[ReserveRequest]) -> None:
        self.tried.extend(r for r in requests if r not in self.tried)
        (results, stock), t0, t1 = self.timed(self.inventory.reserve(POOL, requests))
        assert len(results) == len(requests)
        stamps: set[tuple[int, int]] = set()
        for request, got in zip(requests, results, strict=True):
            expected = self.sale.reserve(request)
            event(
                f"reserve: {got.refusal.value if isinstance(got, Refused) else 'replayed' if got.replayed else 'new'}"
            )
            if isinstance(expected, Refused):
                assert got == expected, f"{request}: expected {expected}, got {got}"
                continue
            hold_id, replayed = expected
            assert isinstance(got, Reserved), f"{request}: expected hold {hold_id}, got {got}"
            assert got.replayed == replayed, f"{request}: replayed should be {replayed}: {got}"
            hold = self.sale.holds[hold_id]
            if not replayed:
                assert t0 + self.hold_ms <= got.hold.expires_at_ms <= t1 + self.hold_ms, (t0, t1, got.hold)
                assert got.hold.expires_at_ms - got.hold.created_at_ms == self.hold_ms, got.hold
                assert got.hold.room_id == request.room_id, got.hold
                hold.exp = got.hold.expires_at_ms
                stamps.add((got.hold.created_at_ms, got.hold.expires_at_ms))
            self.check_hold(got.hold, hold)
        assert len(stamps) <= 1, f"one call, one clock: {stamps}"
        assert stock == self.sale.stock, f"{stock} != model {self.sale.stock}"

    # --- rules ----------------------------------------------------------------------------------------------

    @rule(data=st.data())
    def reserve_one(self, data: st.DataObject) -> None:
        self.reserve([self.draw_request(data)])

    @rule(data=st.data(), size=st.integers(2, 5))
    def reserve_a_batch(self, data: st.DataObject, size: int) -> None:
        requests = [self.draw_request(data) for _ in range(size)]
        if data.draw(st.booleans(), label="a key twice in the batch"):
            earlier = data.draw(st.sampled_from(requests), label="repeated")
            if data.draw(st.booleans(), label="changed"):
                earlier = replace(earlier, quantity=earlier.quantity % (self.sale.cap + 1) + 1)
            requests.insert(data.draw(st.integers(0, len(requests)), label="at"), earlier)
        self.reserve(requests)

    @rule(data=st.data())
    def begin_payment(self, data: st.DataObject) -> None:
        hold_id, hold = self.draw_hold(data, HoldState.HELD)
        self.do_begin_payment(hold_id, hold, self.draw_actor(data, hold))

    def do_begin_payment(self, hold_id: str, hold: ModelHold | None, actor: int) -> None:
        reply, t0, t1 = self.timed(self.inventory.begin_payment(POOL, hold_id, actor, self.grace_ms))
        event(f"begin_payment: {reply.status}")
        if hold is None or (actor != 0 and actor != hold.buyer):
            self.check_reply(reply, "not_found", None)
            return
        if hold.state is not HoldState.HELD:
            self.check_reply(reply, hold.state.value, hold)
            return
        expired = due(hold.exp, t0, t1)
        if expired is None:
            expired = reply.status == "expired"
        if expired:
            self.sale.release(hold, HoldState.EXPIRED)
            self.check_reply(reply, "expired", hold)
            return
        assert reply.status == "ok", reply
        assert reply.hold is not None
        assert reply.hold.deadline_ms is not None
        assert t0 + self.grace_ms <= reply.hold.deadline_ms <= t1 + self.grace_ms, (t0, t1, reply.hold)
        hold.state = HoldState.PAYING
        hold.deadline = reply.hold.deadline_ms
        self.check_reply(reply, "ok", hold)

    @rule(data=st.data(), ref=st.sampled_from(("pay-a", "pay-b")))
    def complete_payment(self, data: st.DataObject, ref: str) -> None:
        hold_id, hold = self.draw_hold(data, HoldState.PAYING)
        reply = self.run(self.inventory.complete_payment(POOL, hold_id, ref))
        event(f"complete_payment: {reply.status}")
        if hold is None:
            self.check_reply(reply, "not_found", None)
        elif hold.state is HoldState.PAYING:
            self.sale.pay(hold, ref)
            self.check_reply(reply, "ok", hold)
        else:  # paid already (with this reference: a retry; with another: the caller refunds) or ended
            self.check_reply(reply, hold.state.value, hold)

    @rule(data=st.data())
    def abort_payment(self, data: st.DataObject) -> None:
        self.do_abort_payment(*self.draw_hold(data, HoldState.PAYING))

    def do_abort_payment(self, hold_id: str, hold: ModelHold | None) -> None:
        reply, t0, t1 = self.timed(self.inventory.abort_payment(POOL, hold_id))
        event(f"abort_payment: {reply.status}")
        if hold is None:
            self.check_reply(reply, "not_found", None)
            return
        if hold.state is not HoldState.PAYING:
            self.check_reply(reply, hold.state.value, hold)
            return
        expired = due(hold.exp, t0, t1)
        if expired is None:
            expired = reply.status == "expired"
        if expired:
            self.sale.release(hold, HoldState.EXPIRED)
            self.check_reply(reply, "expired", hold)
        else:
            hold.state = HoldState.HELD
            hold.deadline = None
            self.check_reply(reply, "held", hold)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        hold_id, hold = self.draw_hold(data, HoldState.HELD)
        actor = self.draw_actor(data, hold)
        reply = self.run(self.inventory.cancel(POOL, hold_id, actor))
        event(f"cancel: {reply.status}")
        if hold is None or (actor != 0 and actor != hold.buyer):
            self.check_reply(reply, "not_found", None)
        elif hold.state is HoldState.HELD:  # expiry does not matter: a buyer may give back a late hold
            self.sale.release(hold, HoldState.CANCELLED)
            self.check_reply(reply, "ok", hold)
        else:
            self.check_reply(reply, hold.state.value, hold)

    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        self.do_expire(*self.draw_hold(data, *LIVE))

    def do_expire(self, hold_id: str, hold: ModelHold | None) -> None:
        reply, t0, t1 = self.timed(self.inventory.expire(POOL, hold_id))
        event(f"expire: {reply.status}")
        if hold is None:
            self.check_reply(reply, "not_found", None)
            return
        if hold.state not in LIVE:
            self.check_reply(reply, hold.state.value, hold)
            return
        at = hold.deadline if hold.state is HoldState.PAYING else hold.exp
        assert at is not None
        reached = due(at, t0, t1)
        if reached is None:
            reached = reply.status == "ok"
        if reached:
            self.sale.release(hold, HoldState.EXPIRED)
            self.check_reply(reply, "ok", hold)
        else:
            self.check_reply(reply, "not_due", None)

    @rule()
    def sweep(self) -> None:
        swept, t0, t1 = self.timed(self.inventory.sweep(POOL))
        held = {h.id: h for h in self.sale.holds.values() if h.state is HoldState.HELD}
        paying = {h.id: h for h in self.sale.holds.values() if h.state is HoldState.PAYING}
        event(f"sweep: {'expired' if swept.expired else 'none'}, {'stale' if swept.stale_paying else 'none'}")
        assert len(set(swept.expired)) == len(swept.expired), swept
        assert set(swept.expired) <= set(held), f"swept {swept.expired}, held {sorted(held)}"
        assert set(swept.stale_paying) <= set(paying), f"stale {swept.stale_paying}, paying {sorted(paying)}"
        for hold_id, hold in held.items():
            expected = True if self.sale.closed else due(hold.exp, t0, t1)
            if expected is not None:
                assert (hold_id in swept.expired) == expected, f"{hold} at {t0}..{t1}, closed {self.sale.closed}"
        for hold_id, hold in paying.items():
            assert hold.deadline is not None
            expected = due(hold.deadline, t0, t1)
            if expected is not None:
                assert (hold_id in swept.stale_paying) == expected, f"{hold} at {t0}..{t1}"
        for hold_id in swept.expired:  # in the order Redis released them (the outbox's order)
            self.sale.release(held[hold_id], HoldState.EXPIRED)
        assert swept.stock == self.sale.stock, f"{swept.stock} != model {self.sale.stock}"

    @rule(delta=st.integers(-4, 4), op=st.sampled_from(("op-a", "op-b", "op-c")))
    def adjust(self, delta: int, op: str) -> None:
        """A stock edit under an operation id: a repeat of one that applied (a retried call) changes nothing."""
        status, stock = self.run(self.inventory.adjust(POOL, delta, op))
        sale = self.sale
        if op in sale.adjusted:
            expected = "replayed"
        elif sale.available + delta < 0:
            expected = "short"
        else:
            expected = "ok"
            sale.adjusted.add(op)
            sale.available += delta
            sale.total += delta
        event(f"adjust: {expected}")
        assert (status, stock) == (expected, sale.stock), f"{status} {stock}, model {expected} {sale.stock}"

    # Not too early (a closed sale refuses everything). Preconditions must not depend on Redis TIME, so this
    # counts calls, not holds (some of which may have expired).
    @precondition(lambda self: not self.sale.closed and len(self.tried) >= 4)
    @rule()
    def close(self) -> None:
        stock, open_holds = self.run(self.inventory.close(POOL))
        self.sale.closed = True
        assert stock == self.sale.stock
        assert open_holds == sum(1 for h in self.sale.holds.values() if h.state in LIVE)

    @precondition(lambda self: self.short_holds)
    @rule(data=st.data())
    def time_passes(self, data: st.DataObject) -> None:
        """Wait until Redis TIME reaches a live hold's expiry or payment deadline (or a millisecond), and maybe act
        on that hold at once: the calls then land on the boundary, where an off-by-a-little rule shows."""
        live = sorted((h for h in self.sale.holds.values() if h.state in LIVE), key=lambda h: h.id)
        index: int = data.draw(st.integers(0, 63), label="until")  # drawn even when no hold is live
        hold = live[index % len(live)] if live else None
        then = data.draw(st.sampled_from(("nothing", "pay or abort", "expire", "sweep")), label="then")
        target = self.now() + 1 if hold is None else hold.exp if hold.deadline is None else hold.deadline
        give_up = time.monotonic() + 5
        while self.now() < target:
            assert time.monotonic() < give_up, f"Redis TIME did not reach {target}"
            time.sleep(0.0002)
        if hold is None:
            return
        if then == "pay or abort" and hold.state is HoldState.HELD:
            self.do_begin_payment(hold.id, hold, hold.buyer)
        elif then == "pay or abort":
            self.do_abort_payment(hold.id, hold)
        elif then == "expire":
            self.do_expire(hold.id, hold)
        elif then == "sweep":
            self.sweep()

    # --- invariants -----------------------------------------------------------------------------------------

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        self.run(self.check_everything())

    async def check_everything(self) -> None:
        sale = self.sale
        audit = await audit_pool(self.redis, POOL, limit=sale.cap)  # conservation, caps, expiry index
        assert audit.stock == sale.stock, f"{audit.stock} != model {sale.stock}"
        assert {h.id: (h.buyer_id, h.quantity, h.state, h.code, h.key, h.terms) for h in audit.holds} == {
            h.id: (h.buyer, h.qty, h.state, h.code, h.key, SaleTerms.parse(h.terms) if h.terms else SaleTerms.default())
            for h in sale.holds.values()
        }
        units = {b: sale.units(b) for b in BUYERS if sale.units(b)}
        assert audit.per_buyer == units, f"{audit.per_buyer} != model {units}"
        assert all(n <= sale.cap for n in audit.per_buyer.values()), audit.per_buyer
        if sale.audience == "list":
            assert set(audit.per_buyer) <= INVITED, f"uninvited buyers hold units: {audit.per_buyer}"
        using = Counter(h.code for h in audit.holds if h.code and (h.state in LIVE or h.state is HoldState.PAID))
        assert all(n == 1 for n in using.values()), f"a code used twice: {using}"
        keys = POOL.keys
        codes = _strings(await self.redis.hgetall(keys.codes))
        assert codes == sale.codes, f"{codes} != model {sale.codes}"
        assert {c: h for c, h in codes.items() if h} == {
            h.code: h.id for h in audit.holds if h.code and (h.state in LIVE or h.state is HoldState.PAID)
        }
        idem = _strings(await self.redis.hgetall(keys.idem))
        assert idem == {f"{b}:{k}": f"{i}|{f}" for (b, k), (i, f) in sale.idem.items()}
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrange(keys.outbox)  # type: ignore[assignment]
        outbox = [(f[b"type"].decode(), orjson.loads(f[b"data"])["id"]) for _, f in entries]
        assert outbox == sale.outbox, f"outbox {outbox} != model {sale.outbox}"
        for op in sale.adjusted:  # each applied adjustment's once key is kept, and expires
            assert 0 < await self.redis.pttl(keys.cfg.removesuffix("cfg") + f"adjust:{op}") <= ADJUST_ONCE_MS


def _strings(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}


# --- the tests ------------------------------------------------------------------------------------------------

AUDIENCES: tuple[Audience, ...] = ("open", "list", "codes")


def machine_for(redis_server: str, sale_audience: Audience, *, short: bool) -> type[SaleMachine]:
    class Machine(SaleMachine):
        redis_url = redis_server
        audience = sale_audience
        short_holds = short

    return Machine


def _run(redis_server: str, audience: Audience, *, short_holds: bool, examples: int) -> None:
    run_state_machine_as_test(
        machine_for(redis_server, audience, short=short_holds),
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.timeout(300)  # passing takes seconds; shrinking a failure to its shortest program can take minutes
@pytest.mark.parametrize("audience", AUDIENCES)
def test_the_pool_functions_follow_the_model(redis_server: str, audience: Audience) -> None:
    _run(redis_server, audience, short_holds=False, examples=75)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("audience", AUDIENCES)
def test_expiry_follows_the_model(redis_server: str, audience: Audience) -> None:
    _run(redis_server, audience, short_holds=True, examples=30)


def test_the_expiry_oracle() -> None:
    assert due(10, 10, 12) is True  # Redis read 10 or later: reached
    assert due(13, 10, 12) is False  # Redis read 12 at most: not reached
    assert due(11, 10, 12) is None
    assert due(12, 10, 12) is None
