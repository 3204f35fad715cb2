"""The voucher functions (`lua/vouchers.lua`) through `VoucherStore`, on a real Redis.

A hypothesis state machine drives every function against a plain Python model of one voucher and, after every
step, compares the whole voucher (configuration, budget, claims, idempotency records, per-buyer counts, the
expiry index and the outbox) and checks the invariants: claimed <= quota, each buyer's claims <= limit,
reserved + spent + free = funded with every part >= 0. Time never needs to pass: a (re)load puts the window an
hour before, around or after Redis TIME, and an applied claim's `until` is an hour before or after it, so every
answer is exact. Then a burst of thousands of concurrent claims (with retries under the same keys) through the
batcher, its budget read while it runs; bad calls that must change nothing; and the one hash tag per voucher.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
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
from redis.crc import key_slot
from redis.exceptions import ResponseError

from livecommerce.commerce.voucher_store import (
    Budget,
    Claim,
    Claimed,
    ClaimOutcome,
    ClaimRefusal,
    ClaimRefused,
    ClaimReply,
    ClaimRequest,
    ClaimResult,
    ClaimState,
    VoucherClaimBatcher,
    VoucherConfig,
    VoucherStore,
    voucher_keys,
)

T = TypeVar("T")
Window = Literal["before", "open", "after"]

VOUCHER = 4
BUYERS = (1, 2, 3, 4, 5, 6)
HOLDS = ("s1.1", "s1.2", "p9.3")
HOUR_MS = 3_600_000


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def window(kind: Window, now: int) -> tuple[int, int]:
    """(start_ms, end_ms) an hour or more away from `now`, so no call can land on a boundary."""
    return {
        "before": (now + HOUR_MS, now + 2 * HOUR_MS),
        "open": (now - HOUR_MS, now + HOUR_MS),
        "after": (now - 2 * HOUR_MS, now - HOUR_MS),
    }[kind]


# --- the model ------------------------------------------------------------------------------------------------


@dataclass
class ModelClaim:
    id: str
    buyer: int
    key: str
    reserved: int
    state: ClaimState = ClaimState.CLAIMED
    hold: str = ""
    discount: int = 0
    cost: int = 0
    until: int = 0


@dataclass
class Voucher:
    """One voucher as the rules describe it, with no Redis in sight."""

    version: int
    quota: int
    limit: int
    worst: int
    funded: int
    start_ms: int
    window: Window
    reserved: int = 0
    spent: int = 0
    closed: bool = False
    claims: dict[str, ModelClaim] = field(default_factory=dict)
    idem: dict[tuple[int, str], str] = field(default_factory=dict)
    counts: Counter[int] = field(default_factory=Counter)
    outbox: list[tuple[str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free = self.funded

    @property
    def budget(self) -> Budget:
        return Budget(self.funded, self.reserved, self.spent, self.free, len(self.claims))

    @property
    def over(self) -> bool:
        return self.closed or self.window == "after"

    def claim(self, request: ClaimRequest) -> ClaimResult | tuple[str, bool]:
        """The refusal, or (claim id, replayed)."""
        seen = self.idem.get((request.buyer_id, request.key))
        if seen is not None:
            return seen, True
        if self.closed:
            return ClaimRefused(ClaimRefusal.CLOSED)
        if self.window == "before":
            return ClaimRefused(ClaimRefusal.NOT_STARTED, starts_at_ms=self.start_ms)
        if self.window == "after":
            return ClaimRefused(ClaimRefusal.ENDED)
        if len(self.claims) >= self.quota:
            return ClaimRefused(ClaimRefusal.CLAIMED_OUT, quota=self.quota)
        have = self.counts[request.buyer_id]
        if have >= self.limit:
            return ClaimRefused(ClaimRefusal.LIMIT, limit=self.limit, have=have)
        if self.free < self.worst:
            return ClaimRefused(ClaimRefusal.BUDGET_OUT)
        claim = ModelClaim(f"v{VOUCHER}.{len(self.claims) + 1}", request.buyer_id, request.key, self.worst)
        self.claims[claim.id] = claim
        self.idem[request.buyer_id, request.key] = claim.id
        self.counts[request.buyer_id] += 1
        self.free -= self.worst
        self.reserved += self.worst
        self.outbox.append(("claimed", claim.id))
        return claim.id, False

    def expire(self, claim: ModelClaim) -> None:
        assert claim.state is ClaimState.CLAIMED
        claim.state = ClaimState.EXPIRED
        self.reserved -= claim.reserved
        self.free += claim.reserved
        self.outbox.append(("expired", claim.id))


# --- the machine ----------------------------------------------------------------------------------------------


class VoucherMachine(RuleBasedStateMachine):
    """One voucher per example, on a flushed Redis; each call runs to completion on the machine's own loop."""

    redis_url: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        self.redis = Redis.from_url(self.redis_url, socket_timeout=10, socket_connect_timeout=5)
        self.store = VoucherStore(self.redis)
        self.v = Voucher(1, 1, 1, 0, 0, 0, "open")
        self.tried: list[ClaimRequest] = []
        self.fresh = 0

    def teardown(self) -> None:
        try:
            self.run(self.redis.aclose())
        finally:
            self.runner.close()

    def run(self, call: Awaitable[T]) -> T:
        async def wait() -> T:
            return await call

        return self.runner.run(wait())

    def config(self, window_kind: Window) -> VoucherConfig:
        start, end = window(window_kind, self.run(redis_ms(self.redis)))
        v = self.v
        return VoucherConfig(v.version, v.quota, v.limit, start, end, v.worst, v.funded)

    @initialize(quota=st.integers(1, 12), limit=st.integers(1, 4), worst=st.integers(0, 40), funded=st.integers(0, 300))
    def load_the_voucher(self, quota: int, limit: int, worst: int, funded: int) -> None:
        self.run(self.redis.flushall())
        self.run(self.store.load_library())
        self.v = Voucher(1, quota, limit, worst, funded, 0, "open")
        config = self.config("open")
        self.v.start_ms = config.starts_at_ms
        result = self.run(self.store.load(VOUCHER, config))
        assert (result.status, result.version, result.created, result.budget) == ("loaded", 1, True, self.v.budget)
        self.v.outbox.append(("loaded", None))

    # --- drawing --------------------------------------------------------------------------------------------

    def draw_request(self, data: st.DataObject) -> ClaimRequest:
        """A fresh claim, a retry of an earlier one, or another buyer's claim under the same key."""
        how = data.draw(st.sampled_from(("fresh", "retry", "other buyer")), label="how")
        if how != "fresh" and self.tried:
            earlier = data.draw(st.sampled_from(self.tried), label="earlier")
            if how == "retry":
                return earlier
            return ClaimRequest(data.draw(st.sampled_from(BUYERS), label="buyer"), earlier.key)
        self.fresh += 1
        return ClaimRequest(data.draw(st.sampled_from(BUYERS), label="buyer"), f"k{self.fresh}")

    def draw_claim(self, data: st.DataObject, likely: ClaimState) -> tuple[str, ModelClaim | None]:
        ids = sorted(self.v.claims)
        wanted = [i for i in ids if self.v.claims[i].state is likely]
        pick = data.draw(st.integers(0, 19), label="which claim")
        choices = wanted if wanted and pick < 14 else ids if ids and pick < 19 else [f"v{VOUCHER}.99"]
        claim_id = data.draw(st.sampled_from(choices), label="claim")
        return claim_id, self.v.claims.get(claim_id)

    def draw_hold(self, data: st.DataObject, claim: ModelClaim | None) -> str:
        if claim is not None and claim.hold and data.draw(st.booleans(), label="its hold"):
            return claim.hold
        return data.draw(st.sampled_from(HOLDS), label="hold")

    # --- checking -------------------------------------------------------------------------------------------

    def check_claim(self, got: Claim | None, claim: ModelClaim) -> None:
        assert got is not None, f"expected claim {claim.id}"
        assert (
            got.id, got.voucher_id, got.buyer_id, got.key, got.state, got.reserved_minor, got.hold_id or "",
            got.discount_minor, got.cost_minor, got.until_ms or 0,
        ) == (
            claim.id, VOUCHER, claim.buyer, claim.key, claim.state, claim.reserved, claim.hold, claim.discount,
            claim.cost, claim.until,
        ), f"{got} != model {claim}"  # fmt: skip
        assert (got.used_at_ms is not None) == (claim.state is ClaimState.USED), got

    def check_reply(self, reply: ClaimReply, status: ClaimOutcome, claim: ModelClaim | None) -> None:
        assert reply.status is status, f"expected {status}, got {reply}"
        if claim is None:
            assert reply.claim is None, reply
        else:
            self.check_claim(reply.claim, claim)

    # --- rules ----------------------------------------------------------------------------------------------

    @rule(data=st.data(), size=st.integers(1, 5))
    def claim(self, data: st.DataObject, size: int) -> None:
        requests = [self.draw_request(data) for _ in range(size)]
        self.tried.extend(r for r in requests if r not in self.tried)
        results, budget = self.run(self.store.claim(VOUCHER, requests))
        assert len(results) == len(requests)
        for request, got in zip(requests, results, strict=True):
            expected = self.v.claim(request)
            if isinstance(expected, ClaimRefused):
                event(f"claim: {expected.refusal}")
                assert got == expected, f"{request}: expected {expected}, got {got}"
                continue
            assert isinstance(expected, tuple)
            claim_id, replayed = expected
            event(f"claim: {'replayed' if replayed else 'new'}")
            assert isinstance(got, Claimed), f"{request}: expected claim {claim_id}, got {got}"
            assert got.replayed == replayed, got
            self.check_claim(got.claim, self.v.claims[claim_id])
        assert budget == self.v.budget, f"{budget} != model {self.v.budget}"

    @precondition(lambda self: bool(self.v.claims))
    @rule(data=st.data(), discount=st.integers(0, 60), until=st.sampled_from(("past", "future")))
    def apply(self, data: st.DataObject, discount: int, until: str) -> None:
        claim_id, claim = self.draw_claim(data, ClaimState.CLAIMED)
        who = data.draw(st.sampled_from(("own", "own", "own", "other", "system")), label="actor")
        hold = self.draw_hold(data, claim)
        cost = data.draw(st.integers(0, discount), label="cost")
        buyer = 0 if who == "system" else claim.buyer if claim is not None and who == "own" else 0
        if who == "other":
            buyer = BUYERS[0] if claim is None or claim.buyer != BUYERS[0] else BUYERS[1]
        now = self.run(redis_ms(self.redis))
        until_ms = now - HOUR_MS if until == "past" else now + HOUR_MS
        reply = self.run(
            self.store.apply(
                VOUCHER, claim_id, buyer_id=buyer, hold_id=hold, discount=discount, cost=cost, until_ms=until_ms
            )
        )
        event(f"apply: {reply.status}")
        if claim is None or (buyer != 0 and buyer != claim.buyer):
            self.check_reply(reply, ClaimOutcome.NOT_FOUND, None)
            return
        if claim.state is ClaimState.APPLIED:
            self.check_reply(reply, ClaimOutcome.OK if claim.hold == hold else ClaimOutcome.IN_USE, claim)
            return
        if claim.state is not ClaimState.CLAIMED:
            self.check_reply(reply, ClaimOutcome(claim.state.value), claim)
            return
        if self.v.over:
            self.v.expire(claim)
            self.check_reply(reply, ClaimOutcome.EXPIRED, claim)
            return
        if cost > claim.reserved:
            self.check_reply(reply, ClaimOutcome.TOO_MUCH, claim)
            return
        claim.state, claim.hold, claim.discount, claim.cost, claim.until = (
            ClaimState.APPLIED, hold, discount, cost, until_ms,
        )  # fmt: skip
        self.v.outbox.append(("applied", claim.id))
        self.check_reply(reply, ClaimOutcome.OK, claim)
        then = data.draw(st.sampled_from(("nothing", "redeem", "release")), label="then")
        if then == "redeem":  # the hold was paid at once (or went unpaid): settle while the claim is applied
            self.do_redeem(claim.id, claim, hold)
        elif then == "release":
            self.do_release(claim.id, claim, hold)

    def attached_elsewhere(self, claim: ModelClaim, hold: str) -> bool:
        return claim.state in (ClaimState.APPLIED, ClaimState.USED) and claim.hold != hold

    @precondition(lambda self: bool(self.v.claims))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        claim_id, claim = self.draw_claim(data, ClaimState.APPLIED)
        self.do_release(claim_id, claim, self.draw_hold(data, claim))

    def do_release(self, claim_id: str, claim: ModelClaim | None, hold: str) -> None:
        reply = self.run(self.store.release(VOUCHER, claim_id, hold))
        event(f"release: {reply.status}")
        if claim is None:
            self.check_reply(reply, ClaimOutcome.NOT_FOUND, None)
            return
        if self.attached_elsewhere(claim, hold):
            self.check_reply(reply, ClaimOutcome.IN_USE, claim)
            return
        if claim.state is not ClaimState.APPLIED:
            self.check_reply(reply, ClaimOutcome(claim.state.value), claim)
            return
        claim.state, claim.hold, claim.discount, claim.cost, claim.until = ClaimState.CLAIMED, "", 0, 0, 0
        self.v.outbox.append(("released", claim.id))
        self.check_reply(reply, ClaimOutcome.OK, claim)

    @precondition(lambda self: bool(self.v.claims))
    @rule(data=st.data())
    def redeem(self, data: st.DataObject) -> None:
        claim_id, claim = self.draw_claim(data, ClaimState.APPLIED)
        self.do_redeem(claim_id, claim, self.draw_hold(data, claim))

    def do_redeem(self, claim_id: str, claim: ModelClaim | None, hold: str) -> None:
        reply = self.run(self.store.redeem(VOUCHER, claim_id, hold))
        event(f"redeem: {reply.status}")
        if claim is None:
            self.check_reply(reply, ClaimOutcome.NOT_FOUND, None)
            return
        if self.attached_elsewhere(claim, hold):
            self.check_reply(reply, ClaimOutcome.IN_USE, claim)
            return
        if claim.state is not ClaimState.APPLIED:  # USED: a retry of a redemption that applied
            self.check_reply(reply, ClaimOutcome(claim.state.value), claim)
            return
        claim.state = ClaimState.USED
        self.v.reserved -= claim.reserved
        self.v.spent += claim.cost
        self.v.free += claim.reserved - claim.cost
        self.v.outbox.append(("used", claim.id))
        self.check_reply(reply, ClaimOutcome.OK, claim)

    @rule()
    def sweep(self) -> None:
        swept = self.run(self.store.sweep(VOUCHER))
        now = self.run(redis_ms(self.redis))
        # Claimed claims all score 0 in the expiry index, which orders them by id as text ("v4.10" < "v4.2").
        claimed = sorted((c for c in self.v.claims.values() if c.state is ClaimState.CLAIMED), key=lambda c: c.id)
        due = claimed if self.v.over else []
        event(f"sweep: {len(due)} expired")
        assert swept.expired == [c.id for c in due], f"{swept.expired} != model {[c.id for c in due]}"
        for claim in due:
            self.v.expire(claim)
        stale = [c for c in self.v.claims.values() if c.state is ClaimState.APPLIED and c.until < now]
        assert sorted(c.id for c in swept.stale_applied) == sorted(c.id for c in stale)
        for got in swept.stale_applied:
            self.check_claim(got, self.v.claims[got.id])
        assert swept.budget == self.v.budget

    @rule(
        data=st.data(),
        step=st.sampled_from((-1, 0, 1)),
        quota=st.integers(1, 12),
        limit=st.integers(1, 4),
        worst=st.integers(0, 40),
        funded=st.integers(0, 300),
        kind=st.sampled_from(("open", "open", "open", "before", "after")),
    )
    def reload(
        self, data: st.DataObject, step: int, quota: int, limit: int, worst: int, funded: int, kind: Window
    ) -> None:
        v = self.v
        version = max(1, v.version + step)
        start, end = window(kind, self.run(redis_ms(self.redis)))
        result = self.run(self.store.load(VOUCHER, VoucherConfig(version, quota, limit, start, end, worst, funded)))
        top = max(v.counts.values(), default=0)
        event(f"reload: {result.status}")
        if v.closed:
            assert result.status == "closed", result
        elif version < v.version:
            assert (result.status, result.version) == ("stale", v.version), result
        elif quota < len(v.claims):
            assert (result.status, result.count) == ("quota_short", len(v.claims)), result
        elif limit < top:
            assert (result.status, result.count) == ("limit_short", top), result
        elif v.free + funded - v.funded < 0:
            assert (result.status, result.budget) == ("short", v.budget), result
        else:
            v.free += funded - v.funded
            v.version, v.quota, v.limit, v.worst, v.funded, v.start_ms, v.window = (
                version, quota, limit, worst, funded, start, kind,
            )  # fmt: skip
            v.outbox.append(("loaded", None))
            assert (result.status, result.version, result.created, result.budget) == (
                "loaded", version, False, v.budget,
            ), result  # fmt: skip

    @precondition(lambda self: not self.v.closed and len(self.tried) >= 12)
    @rule()
    def close(self) -> None:
        budget, still_open = self.run(self.store.close(VOUCHER))
        self.v.closed = True
        self.v.outbox.append(("closed", None))
        assert budget == self.v.budget
        live = (ClaimState.CLAIMED, ClaimState.APPLIED)
        assert still_open == sum(1 for c in self.v.claims.values() if c.state in live)

    # --- invariants -----------------------------------------------------------------------------------------

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        self.run(self.check_everything())

    async def check_everything(self) -> None:
        v, keys = self.v, voucher_keys(VOUCHER)
        budget = await self.store.budget(VOUCHER)
        assert budget == v.budget, f"{budget} != model {v.budget}"
        assert budget.reserved + budget.spent + budget.free == budget.funded, budget
        assert min(budget.reserved, budget.spent, budget.free) >= 0, budget
        assert budget.claimed <= v.quota, budget
        claims = {c.id: c for c in (Claim.from_json(raw) for raw in (await self.redis.hgetall(keys.claims)).values())}
        assert sorted(claims) == sorted(v.claims)
        for claim_id, claim in v.claims.items():
            self.check_claim(claims[claim_id], claim)
        live = (ClaimState.CLAIMED, ClaimState.APPLIED)
        assert budget.reserved == sum(c.reserved_minor for c in claims.values() if c.state in live)
        assert budget.spent == sum(c.cost_minor for c in claims.values() if c.state is ClaimState.USED)
        per_buyer = Counter(c.buyer_id for c in claims.values())
        assert all(n <= v.limit for n in per_buyer.values()), per_buyer
        assert _strings(await self.redis.hgetall(keys.buyers)) == {str(b): str(n) for b, n in per_buyer.items()}
        assert _strings(await self.redis.hgetall(keys.idem)) == {f"{b}:{k}": i for (b, k), i in v.idem.items()}
        scored: list[tuple[bytes, float]] = await self.redis.zrange(keys.expiry, 0, -1, withscores=True)  # type: ignore[assignment]
        expiry = {m.decode(): int(s) for m, s in scored}
        assert expiry == {
            c.id: (0 if c.state is ClaimState.CLAIMED else c.until) for c in v.claims.values() if c.state in live
        }
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrange(keys.outbox)  # type: ignore[assignment]
        outbox = [(f[b"type"].decode(), orjson.loads(f[b"data"]).get("id")) for _, f in entries]
        assert outbox == v.outbox, f"outbox {outbox} != model {v.outbox}"


def _strings(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}


@pytest.mark.timeout(300)  # passing takes seconds; shrinking a failure can take minutes
def test_the_voucher_functions_follow_the_model(redis_server: str) -> None:
    class Machine(VoucherMachine):
        redis_url = redis_server

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=100, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )


# --- a burst --------------------------------------------------------------------------------------------------


def check_budget(budget: Budget, quota: int) -> None:
    assert budget.reserved + budget.spent + budget.free == budget.funded, budget
    assert min(budget.reserved, budget.spent, budget.free) >= 0, budget
    assert budget.claimed <= quota, budget


async def test_a_burst_of_claims_never_overruns_quota_limit_or_budget(redis: Redis) -> None:
    """3000 claims from 300 buyers at once (each key sent twice, a retry), some claims applied and redeemed or
    released while the burst runs, the budget read concurrently: the invariants hold at every reading."""
    store = VoucherStore(redis)
    await store.load_library()
    now = await redis_ms(redis)
    quota, limit, worst = 400, 3, 25
    funded = worst * 300  # the budget runs out before the quota, unless redemptions return enough
    assert (
        await store.load(VOUCHER, VoucherConfig(1, quota, limit, now - HOUR_MS, now + HOUR_MS, worst, funded))
    ).status == "loaded"
    batcher = VoucherClaimBatcher(store)
    rng = random.Random(14)
    requests = [ClaimRequest(buyer, f"k{k}") for buyer in range(1, 301) for k in range(5) for _ in range(2)]
    rng.shuffle(requests)
    readings: list[Budget] = []
    done = asyncio.Event()

    async def read_budget() -> None:
        while not done.is_set():
            budget = await store.budget(VOUCHER)
            check_budget(budget, quota)
            readings.append(budget)
            await asyncio.sleep(0)

    async def one(request: ClaimRequest, n: int) -> ClaimResult:
        result = await batcher.claim(VOUCHER, request)
        check_budget(batcher.last_budget[VOUCHER], quota)  # as the call that answered this claim left it
        readings.append(batcher.last_budget[VOUCHER])
        if isinstance(result, Claimed) and not result.replayed and n % 3:
            hold = f"s1.{n}"
            cost = rng.randint(0, worst)
            reply = await store.apply(
                VOUCHER, result.claim.id, buyer_id=request.buyer_id, hold_id=hold, discount=cost + 10, cost=cost,
                until_ms=now + HOUR_MS,
            )  # fmt: skip
            assert reply.status is ClaimOutcome.OK, reply
            settle = store.redeem if n % 3 == 1 else store.release
            assert (await settle(VOUCHER, result.claim.id, hold)).status is ClaimOutcome.OK
        return result

    reader = asyncio.create_task(read_budget())
    results = await asyncio.gather(*(one(r, n) for n, r in enumerate(requests)))
    done.set()
    await reader
    await batcher.close()
    assert len(readings) > len(requests), "read by every claim and by the reader"
    assert batcher.calls < len(requests) / 2, "claims were coalesced"

    by_key: dict[tuple[int, str], set[str]] = {}
    for request, result in zip(requests, results, strict=True):
        if isinstance(result, Claimed):
            assert (result.claim.buyer_id, result.claim.key) == (request.buyer_id, request.key)
            by_key.setdefault((request.buyer_id, request.key), set()).add(result.claim.id)
        else:
            assert result.refusal in (ClaimRefusal.LIMIT, ClaimRefusal.BUDGET_OUT, ClaimRefusal.CLAIMED_OUT), result
    assert all(len(ids) == 1 for ids in by_key.values()), "one claim per buyer and key"
    claims = [Claim.from_json(raw) for raw in (await redis.hgetall(voucher_keys(VOUCHER).claims)).values()]
    budget = await store.budget(VOUCHER)
    check_budget(budget, quota)
    assert budget.claimed == len(claims) == len(by_key)
    assert max(Counter(c.buyer_id for c in claims).values()) <= limit
    live = (ClaimState.CLAIMED, ClaimState.APPLIED)
    assert budget.reserved == sum(c.reserved_minor for c in claims if c.state in live)
    assert budget.spent == sum(c.cost_minor for c in claims if c.state is ClaimState.USED)


async def test_a_failed_call_reaches_every_claim_it_carried_and_the_batcher_goes_on(redis: Redis) -> None:
    store = VoucherStore(redis)
    await store.load_library()
    now = await redis_ms(redis)
    await store.load(VOUCHER, VoucherConfig(1, 100, 5, now - HOUR_MS, now + HOUR_MS, 1, 100))
    await redis.set(voucher_keys(VOUCHER).buyers, "not a hash")
    batcher = VoucherClaimBatcher(store)
    failed = await asyncio.gather(
        *(batcher.claim(VOUCHER, ClaimRequest(b, "a")) for b in range(1, 21)), return_exceptions=True
    )
    assert all(isinstance(f, ResponseError) and "WRONGTYPE" in str(f) for f in failed), failed
    await redis.delete(voucher_keys(VOUCHER).buyers)
    retried = await asyncio.gather(*(batcher.claim(VOUCHER, ClaimRequest(b, "a")) for b in range(1, 21)))
    assert [r.claim.buyer_id for r in retried if isinstance(r, Claimed) and not r.replayed] == list(range(1, 21))
    assert (await store.budget(VOUCHER)).claimed == 20
    with pytest.raises(ValueError, match="claim key"):
        ClaimRequest(1, "no spaces")
    with pytest.raises(ValueError, match="buyer id"):
        ClaimRequest(0, "a")


# --- bad calls ------------------------------------------------------------------------------------------------


async def snapshot(redis: Redis) -> dict[bytes, tuple[Any, Any]]:
    return {key: (await redis.type(key), await redis.dump(key)) async for key in redis.scan_iter()}


async def test_bad_calls_change_nothing(redis: Redis) -> None:
    store = VoucherStore(redis)
    await store.load_library()
    now = await redis_ms(redis)
    await store.load(VOUCHER, VoucherConfig(1, 10, 2, now - HOUR_MS, now + HOUR_MS, 10, 100))
    (first, *_), _ = await store.claim(VOUCHER, [ClaimRequest(1, "a"), ClaimRequest(2, "a")])
    assert isinstance(first, Claimed)
    claim_id = first.claim.id
    keys = list(voucher_keys(VOUCHER))
    other = list(voucher_keys(VOUCHER + 1))
    good_load = [2, VOUCHER, 10, 2, now - HOUR_MS, now + HOUR_MS, 10, 100]
    bad: list[tuple[str, list[Any], list[Any]]] = [
        ("voucher_claim", keys[:6], [1, 3, "b"]),  # six keys
        ("voucher_claim", [*keys[:6], other[6]], [1, 3, "b"]),  # a key of another voucher
        ("voucher_claim", [keys[1], keys[0], *keys[2:]], [1, 3, "b"]),  # out of order
        ("voucher_claim", [k.replace("voucher:", "v:") for k in keys], [1, 3, "b"]),
        ("voucher_claim", keys, [0]),
        ("voucher_claim", keys, [501, *([3, "b"] * 501)]),
        ("voucher_claim", keys, [2, 3, "b"]),  # n says two, one pair given
        ("voucher_claim", keys, [2, 3, "b", 0, "c"]),  # the second buyer invalid: the first is not claimed either
        ("voucher_claim", keys, [1, 3, "has space"]),
        ("voucher_claim", keys, [1, 3, ""]),
        ("voucher_claim", keys, [1, "x", "b"]),
        ("voucher_claim", keys, ["1.5", 3, "b"]),
        ("voucher_load", keys, good_load[:7]),
        ("voucher_load", keys, [2, VOUCHER + 1, *good_load[2:]]),  # not the keys' voucher
        ("voucher_load", keys, [*good_load[:4], now, now - 1, 10, 100]),  # ends before it starts
        ("voucher_load", keys, [*good_load[:6], -1, 100]),
        ("voucher_load", keys, [*good_load[:7], "lots"]),
        ("voucher_load", keys, [0, *good_load[1:]]),
        ("voucher_load", keys, [*good_load[:2], 0, *good_load[3:]]),  # quota 0
        ("voucher_apply", keys, [claim_id, 1, "s1.1", 5, 6, now + HOUR_MS]),  # cost above the discount
        ("voucher_apply", keys, [claim_id, 1, "s1.1", 5, 5]),
        ("voucher_apply", keys, [claim_id, 1, "", 5, 5, now + HOUR_MS]),
        ("voucher_apply", keys, [claim_id, -1, "s1.1", 5, 5, now + HOUR_MS]),
        ("voucher_apply", keys, ["bad id!", 1, "s1.1", 5, 5, now + HOUR_MS]),
        ("voucher_release", keys, [claim_id]),
        ("voucher_redeem", keys, [claim_id, "s1.1", "extra"]),
        ("voucher_sweep", keys, [0]),
        ("voucher_sweep", keys, []),
        ("voucher_close", keys, ["now"]),
        ("voucher_budget", keys, ["x"]),
    ]
    before = await snapshot(redis)
    for function, call_keys, args in bad:
        with pytest.raises(ResponseError, match=function):
            await redis.fcall(function, len(call_keys), *call_keys, *args)
        assert await snapshot(redis) == before, f"{function} {args} changed something"

    # A key of the wrong type: every function refuses before writing anything.
    await redis.set(keys[5], "not a hash")  # the buyers key
    before = await snapshot(redis)
    calls: list[tuple[str, list[Any]]] = [
        ("voucher_claim", [1, 3, "b"]),
        ("voucher_load", good_load),
        ("voucher_apply", [claim_id, 1, "s1.1", 5, 5, now + HOUR_MS]),
        ("voucher_release", [claim_id, "s1.1"]),
        ("voucher_redeem", [claim_id, "s1.1"]),
        ("voucher_sweep", [10]),
        ("voucher_close", []),
        ("voucher_budget", []),
    ]
    for function, args in calls:
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await redis.fcall(function, len(keys), *keys, *args)
        assert await snapshot(redis) == before, f"{function} changed something"
    for i, part in enumerate(("cfg", "claims", "idem", "budget", "expiry", "outbox")):
        fresh = list(voucher_keys(VOUCHER + 2))
        index = [0, 1, 2, 3, 4, 6][i]
        await redis.flushall()
        await store.load_library()
        await (redis.lpush(fresh[index], "x") if part != "expiry" else redis.set(fresh[index], "x"))
        before = await snapshot(redis)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await redis.fcall("voucher_claim", 7, *fresh, 1, 3, "b")
        assert await snapshot(redis) == before, part


async def test_refusals_for_a_voucher_not_loaded_or_not_covered(redis: Redis) -> None:
    store = VoucherStore(redis)
    (result,), budget = await store.claim(VOUCHER, [ClaimRequest(1, "a")])  # loads the library by itself
    assert result == ClaimRefused(ClaimRefusal.NOT_LOADED)
    assert budget == Budget(0, 0, 0, 0, 0)
    assert (await store.apply(VOUCHER, "v4.1", buyer_id=1, hold_id="s1.1", discount=1, cost=1, until_ms=1)).status is (
        ClaimOutcome.NOT_FOUND
    )
    now = await redis_ms(redis)
    await store.load(VOUCHER, VoucherConfig(1, 5, 1, now - HOUR_MS, now + HOUR_MS, 30, 50))
    (ok, out), _ = await store.claim(VOUCHER, [ClaimRequest(1, "a"), ClaimRequest(2, "a")])
    assert isinstance(ok, Claimed)
    assert out == ClaimRefused(ClaimRefusal.BUDGET_OUT)
    reply = await store.apply(VOUCHER, ok.claim.id, buyer_id=1, hold_id="s1.1", discount=40, cost=31, until_ms=now)
    assert reply.status is ClaimOutcome.TOO_MUCH  # more than the claim reserved
    shorter = await store.load(VOUCHER, VoucherConfig(2, 5, 1, now - HOUR_MS, now + HOUR_MS, 30, 29))
    assert shorter.status == "short"  # 30 reserved: funded may drop to 30 at least
    assert (await store.load(VOUCHER, VoucherConfig(3, 5, 1, now - HOUR_MS, now + HOUR_MS, 30, 30))).status == "loaded"
    await redis.function_flush()
    assert await store.budget(VOUCHER) == Budget(30, 30, 0, 0, 1)  # the library was loaded again


async def test_a_redemption_spends_the_cost_the_paid_hold_recorded(redis: Redis) -> None:
    """The paid hold's own figure settles the budget (never more than the claim reserved), whatever cost the claim
    was applied with."""
    store = VoucherStore(redis)
    now = await redis_ms(redis)
    await store.load(VOUCHER, VoucherConfig(1, 5, 1, now - HOUR_MS, now + HOUR_MS, 30, 100))
    (first, second), _ = await store.claim(VOUCHER, [ClaimRequest(1, "a"), ClaimRequest(2, "a")])
    assert isinstance(first, Claimed)
    assert isinstance(second, Claimed)
    for claimed, hold in ((first, "s1.1"), (second, "s1.2")):
        applied = await store.apply(
            VOUCHER, claimed.claim.id, buyer_id=claimed.claim.buyer_id, hold_id=hold, discount=50, cost=25, until_ms=now
        )
        assert applied.status is ClaimOutcome.OK
    assert (await store.redeem(VOUCHER, first.claim.id, "s1.1", 31)).status is ClaimOutcome.TOO_MUCH
    assert await store.budget(VOUCHER) == Budget(100, 60, 0, 40, 2)  # refused: nothing changed
    done = await store.redeem(VOUCHER, first.claim.id, "s1.1", 20)
    assert (done.status, done.claim and done.claim.cost_minor) == (ClaimOutcome.OK, 20)
    assert (await store.redeem(VOUCHER, second.claim.id, "s1.2")).status is ClaimOutcome.OK  # as applied: 25
    assert await store.budget(VOUCHER) == Budget(100, 0, 45, 55, 2)


# --- one hash tag ---------------------------------------------------------------------------------------------


async def test_every_key_of_a_voucher_shares_one_hash_tag(redis: Redis) -> None:
    keys = voucher_keys(VOUCHER)
    assert all(f"{{voucher:{VOUCHER}}}" in key for key in keys)
    assert len({key_slot(key.encode()) for key in keys}) == 1
    store = VoucherStore(redis)
    now = await redis_ms(redis)
    await store.load(VOUCHER, VoucherConfig(1, 5, 2, now - HOUR_MS, now + HOUR_MS, 5, 50))
    (claimed,), _ = await store.claim(VOUCHER, [ClaimRequest(1, "a")])
    assert isinstance(claimed, Claimed)
    await store.apply(VOUCHER, claimed.claim.id, buyer_id=1, hold_id="s1.1", discount=5, cost=5, until_ms=now)
    await store.redeem(VOUCHER, claimed.claim.id, "s1.1")
    await store.sweep(VOUCHER)
    await store.close(VOUCHER)
    written = {bytes(key).decode() async for key in redis.scan_iter()} - {"livecommerce:vouchers"}
    assert {keys.cfg, keys.claims, keys.idem, keys.budget, keys.buyers, keys.outbox} <= written <= set(keys)
    assert {key_slot(key.encode()) for key in written} == {key_slot(keys.cfg.encode())}


async def test_the_outbox_is_bounded(redis: Redis) -> None:
    store = VoucherStore(redis)
    now = await redis_ms(redis)
    await store.load(VOUCHER, VoucherConfig(1, 20_000, 1, now - HOUR_MS, now + HOUR_MS, 0, 0))
    for start in range(1, 12_001, 500):
        results, _ = await store.claim(VOUCHER, [ClaimRequest(b, "a") for b in range(start, start + 500)])
        assert all(isinstance(r, Claimed) for r in results)
    length = await redis.xlen(voucher_keys(VOUCHER).outbox)
    assert 10_000 <= length < 10_200, length  # 12001 appended, trimmed near 10000 (MAXLEN ~: whole stream nodes)
