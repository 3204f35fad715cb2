"""Vouchers in Redis: the claims of one voucher and the campaign budget allotted to it.

A viewer claims a voucher in a LIVE while thousands of others do: quota, per-buyer limit, idempotency and the
budget's reservation are checked by one Lua function (`livecommerce/lua/vouchers.lua`) in the same atomic step
that records the claim and appends to the voucher's outbox stream. So at every instant claimed <= quota, each
buyer's claims <= limit, and reserved + spent + free = funded with every part >= 0: a claim reserves the
voucher's worst cost (`commerce.voucher_price.worst_cost`), redemption settles the true cost, expiry returns
the rest.

This module is storage only: typed calls, typed results. Who may claim (a buyer account, old enough, in a room
where the voucher is pinned) and what a refusal means to a buyer is the domain's. Keys (`VoucherKeys`) share the
hash tag ``{voucher:ID}``: see the header of `vouchers.lua`. `VoucherClaimBatcher` coalesces concurrent claims
of one voucher into one function call, as `commerce.batcher` does for taps on Buy.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from livecommerce.live import codec
from livecommerce.scripts import FunctionLibrary

__all__ = [
    "MAX_CLAIM_BATCH",
    "VOUCHER_REGISTRY",
    "Budget",
    "Claim",
    "ClaimOutcome",
    "ClaimRefusal",
    "ClaimRefused",
    "ClaimReply",
    "ClaimRequest",
    "ClaimResult",
    "ClaimState",
    "Claimed",
    "LoadResult",
    "VoucherClaimBatcher",
    "VoucherConfig",
    "VoucherHistory",
    "VoucherKeys",
    "VoucherStore",
    "VoucherSweep",
    "voucher_keys",
]

log = logging.getLogger(__name__)

VOUCHER_REGISTRY: Final = "livecommerce:vouchers"  # set of voucher ids the worker sweeps
MAX_CLAIM_BATCH: Final = 500  # claims per function call (vouchers.lua MAX_BATCH)
_KEY: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class VoucherKeys(NamedTuple):
    """The seven keys every voucher function takes, in this order (see the header of `vouchers.lua`)."""

    cfg: str
    claims: str
    idem: str
    budget: str
    expiry: str
    buyers: str
    outbox: str


def voucher_keys(voucher_id: int) -> VoucherKeys:
    """Voucher `voucher_id`'s keys, all under its hash tag (one Redis Cluster slot)."""
    return VoucherKeys(*(f"livecommerce:{{voucher:{voucher_id}}}:{part}" for part in VoucherKeys._fields))


# --- values ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoucherConfig:
    """What Redis needs of a voucher. `version` orders updates: an older one never replaces a newer one.
    `worst_cost_minor` is what each new claim reserves from the budget; `funded_minor` the budget allotted (0 and
    0 for a seller-funded voucher: its claims reserve nothing)."""

    version: int
    quota: int
    per_buyer_limit: int
    starts_at_ms: int
    ends_at_ms: int
    worst_cost_minor: int
    funded_minor: int


@dataclass(frozen=True, slots=True)
class VoucherHistory:
    """What SQL's paid orders say a voucher has used: the budget it spent (their platform discounts) and each
    buyer's claims used. Loaded into a Redis that lost the voucher, so it never starts again from zero."""

    spent_minor: int
    used_by: dict[int, int]  # buyer id -> orders that used the voucher


@dataclass(frozen=True, slots=True)
class Budget:
    """reserved + spent + free = funded, every part >= 0. `claimed`: claims ever made (<= quota)."""

    funded: int
    reserved: int
    spent: int
    free: int
    claimed: int

    @classmethod
    def parse(cls, reply: Sequence[Any]) -> Budget:
        assert codec.text(reply[0]) == "budget", reply
        return cls(*(int(v) for v in reply[1:6]))


class ClaimState(enum.StrEnum):
    CLAIMED = "claimed"  # the buyer has it; it reserves its worst cost
    APPLIED = "applied"  # applied to a hold at checkout
    USED = "used"  # the hold was paid: the budget spent its cost
    EXPIRED = "expired"  # the voucher ended unused: the reservation went back


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim as Redis recorded it (also the outbox's payload)."""

    id: str
    voucher_id: int
    buyer_id: int
    key: str
    state: ClaimState
    reserved_minor: int
    hold_id: str | None  # APPLIED, USED
    discount_minor: int
    cost_minor: int  # what the budget pays of the discount (APPLIED: will pay; USED: paid)
    created_at_ms: int
    until_ms: int | None  # APPLIED, USED: the hold's deadline when applied
    used_at_ms: int | None = None  # USED

    @classmethod
    def from_json(cls, raw: bytes | str) -> Claim:
        d: dict[str, Any] = orjson.loads(raw)
        return cls(
            id=d["id"],
            voucher_id=int(d["voucher"]),
            buyer_id=int(d["buyer"]),
            key=d["key"],
            state=ClaimState(d["state"]),
            reserved_minor=int(d["reserved"]),
            hold_id=d["hold"] or None,
            discount_minor=int(d["discount"]),
            cost_minor=int(d["cost"]),
            created_at_ms=int(d["created"]),
            until_ms=int(d["until"]) or None,
            used_at_ms=int(d["used"]) if "used" in d else None,
        )


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One claim. The same buyer and key always mean the same claim (a retry gets it back, replayed)."""

    buyer_id: int
    key: str

    def __post_init__(self) -> None:
        # Checked here too, so one bad request cannot fail the batch of claims it would share a call with.
        if not 1 <= self.buyer_id <= 10**15:
            raise ValueError(f"buyer id {self.buyer_id} is not an account id")
        if not _KEY.fullmatch(self.key):
            raise ValueError(f"claim key {self.key!r}: 1-64 characters of A-Z a-z 0-9 _ . : -")


class ClaimRefusal(enum.StrEnum):
    NOT_LOADED = "not_loaded"
    CLOSED = "closed"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    CLAIMED_OUT = "claimed_out"
    LIMIT = "limit"
    BUDGET_OUT = "budget_out"


@dataclass(frozen=True, slots=True)
class ClaimRefused:
    refusal: ClaimRefusal
    starts_at_ms: int | None = None  # NOT_STARTED
    quota: int | None = None  # CLAIMED_OUT
    limit: int | None = None  # LIMIT
    have: int | None = None  # LIMIT: claims the buyer has


@dataclass(frozen=True, slots=True)
class Claimed:
    claim: Claim
    replayed: bool  # this buyer's key had been used: the earlier claim, in its current state


ClaimResult = Claimed | ClaimRefused


class ClaimOutcome(enum.StrEnum):
    """What apply, release and redeem answer: done (`OK`), no such claim (of that buyer), the cost is more than
    the claim reserved (`TOO_MUCH`, apply), another hold has it (`IN_USE`), or the claim's state, which made the
    call a no-op (`USED` from redeem is a retry of a redemption that applied)."""

    OK = "ok"
    NOT_FOUND = "not_found"
    TOO_MUCH = "too_much"
    IN_USE = "in_use"
    CLAIMED = ClaimState.CLAIMED.value
    APPLIED = ClaimState.APPLIED.value
    USED = ClaimState.USED.value
    EXPIRED = ClaimState.EXPIRED.value


@dataclass(frozen=True, slots=True)
class ClaimReply:
    status: ClaimOutcome
    claim: Claim | None

    @classmethod
    def parse(cls, reply: Sequence[Any]) -> ClaimReply:
        return cls(ClaimOutcome(codec.text(reply[0])), Claim.from_json(reply[1]) if len(reply) > 1 else None)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """`status`: loaded, stale (`version` is the stored one), closed, short (less is free than a smaller funding
    would take), quota_short / limit_short (`count`: claims made / one buyer's most claims exceed the new
    figure)."""

    status: str
    version: int | None = None
    created: bool = False
    budget: Budget | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class VoucherSweep:
    expired: list[str]
    stale_applied: list[Claim]  # applied past their until: ask the hold's pool, then redeem or release
    budget: Budget


def _claim_result(reply: Sequence[Any]) -> ClaimResult:
    status = codec.text(reply[0])
    if status == "ok":
        return Claimed(Claim.from_json(reply[1]), replayed=bool(int(reply[2])))
    refusal = ClaimRefusal(status)
    if refusal is ClaimRefusal.NOT_STARTED:
        return ClaimRefused(refusal, starts_at_ms=int(reply[1]))
    if refusal is ClaimRefusal.CLAIMED_OUT:
        return ClaimRefused(refusal, quota=int(reply[1]))
    if refusal is ClaimRefusal.LIMIT:
        return ClaimRefused(refusal, limit=int(reply[1]), have=int(reply[2]))
    return ClaimRefused(refusal)


# --- the store ------------------------------------------------------------------------------------------------


class VoucherStore:
    """Typed calls to the voucher functions. One per process; `load_library` once at start (it is also re-loaded
    by itself when Redis lost it)."""

    def __init__(self, redis: Redis) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("VoucherStore needs a Redis client with decode_responses=False")
        self._redis = redis
        self._library = FunctionLibrary(redis, "vouchers.lua", "voucher functions")

    @property
    def redis(self) -> Redis:
        return self._redis

    async def load_library(self) -> None:
        await self._library.load()

    async def _fcall(self, function: str, voucher_id: int, *args: Any) -> Any:
        """Call a voucher function (loading the library again if Redis lost it: `FunctionLibrary`)."""
        return await self._library.call(function, voucher_keys(voucher_id), *args)

    async def load(self, voucher_id: int, config: VoucherConfig, history: VoucherHistory | None = None) -> LoadResult:
        """Create or update the voucher and its budget (idempotent: a stored newer version wins; live claims and
        the budget's reserved and spent parts are never replaced). `history`, what SQL's orders say was used, is
        applied only if Redis has no budget for it (it lost its data): spent and claims start from there."""
        await self._redis.sadd(VOUCHER_REGISTRY, voucher_id)
        extra: list[int] = []
        if history is not None:
            extra = [history.spent_minor]
            for buyer_id, used in sorted(history.used_by.items()):
                extra += [buyer_id, used]
        reply = await self._fcall(
            "voucher_load", voucher_id, config.version, voucher_id, config.quota, config.per_buyer_limit,
            config.starts_at_ms, config.ends_at_ms, config.worst_cost_minor, config.funded_minor, *extra,
        )  # fmt: skip
        status = codec.text(reply[0])
        if status == "loaded":
            return LoadResult(status, int(reply[1]), bool(int(reply[2])), Budget.parse(reply[3]))
        if status == "stale":
            return LoadResult(status, version=int(reply[1]))
        if status == "short":
            return LoadResult(status, budget=Budget.parse(reply[1]))
        if status in ("quota_short", "limit_short"):
            return LoadResult(status, count=int(reply[1]))
        return LoadResult(status)

    async def claim(self, voucher_id: int, requests: Sequence[ClaimRequest]) -> tuple[list[ClaimResult], Budget]:
        """Up to `MAX_CLAIM_BATCH` claims in one atomic call, in order."""
        if not 1 <= len(requests) <= MAX_CLAIM_BATCH:
            raise ValueError(f"between 1 and {MAX_CLAIM_BATCH} claims per call")
        args = [arg for r in requests for arg in (r.buyer_id, r.key)]
        reply = await self._fcall("voucher_claim", voucher_id, len(requests), *args)
        return [_claim_result(r) for r in reply[:-1]], Budget.parse(reply[-1])

    async def apply(
        self, voucher_id: int, claim_id: str, *, buyer_id: int, hold_id: str, discount: int, cost: int, until_ms: int
    ) -> ClaimReply:
        """Apply a claim to a hold at checkout; `cost` is the budget's part of `discount`; `buyer_id` 0: any."""
        reply = await self._fcall("voucher_apply", voucher_id, claim_id, buyer_id, hold_id, discount, cost, until_ms)
        return ClaimReply.parse(reply)

    async def release(self, voucher_id: int, claim_id: str, hold_id: str) -> ClaimReply:
        """The hold went unpaid: its claim is the buyer's again."""
        return ClaimReply.parse(await self._fcall("voucher_release", voucher_id, claim_id, hold_id))

    async def redeem(self, voucher_id: int, claim_id: str, hold_id: str, cost_minor: int | None = None) -> ClaimReply:
        """The hold was paid: the claim is used and the budget spends its cost — `cost_minor` when given (what the
        paid hold recorded; more than the claim reserved answers TOO_MUCH), else the cost it was applied with.
        A retry answers USED."""
        extra = () if cost_minor is None else (cost_minor,)
        return ClaimReply.parse(await self._fcall("voucher_redeem", voucher_id, claim_id, hold_id, *extra))

    async def sweep(self, voucher_id: int, max_claims: int = 1000) -> VoucherSweep:
        expired, stale, budget = await self._fcall("voucher_sweep", voucher_id, max_claims)
        return VoucherSweep([codec.text(i) for i in expired], [Claim.from_json(s) for s in stale], Budget.parse(budget))

    async def close(self, voucher_id: int) -> tuple[Budget, int]:
        """No further claims. Returns the budget and the number of claims still claimed or applied."""
        budget, open_claims = await self._fcall("voucher_close", voucher_id)
        return Budget.parse(budget), int(open_claims)

    async def budget(self, voucher_id: int) -> Budget:
        return Budget.parse(await self._fcall("voucher_budget", voucher_id))

    async def get_claim(self, voucher_id: int, claim_id: str) -> Claim | None:
        raw = await self._redis.hget(voucher_keys(voucher_id).claims, claim_id)
        return None if raw is None else Claim.from_json(raw)

    async def get_claims(self, wanted: Sequence[tuple[int, str]]) -> list[Claim | None]:
        """Several claims, (voucher id, claim id) each, in one round trip (None where there is none)."""
        if not wanted:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for voucher_id, claim_id in wanted:
                pipe.hget(voucher_keys(voucher_id).claims, claim_id)
            replies = await pipe.execute()
        return [None if raw is None else Claim.from_json(raw) for raw in replies]

    async def registered(self) -> list[int]:
        """Vouchers the worker sweeps (loaded and not yet retired)."""
        return sorted(int(codec.text(v)) for v in await self._redis.smembers(VOUCHER_REGISTRY))

    async def retire(self, voucher_id: int, keep_seconds: int = 7 * 86400) -> None:
        """A finished voucher leaves the registry; its keys expire after `keep_seconds`."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.srem(VOUCHER_REGISTRY, voucher_id)
            for key in voucher_keys(voucher_id):
                pipe.expire(key, keep_seconds)
            await pipe.execute()


# --- the batcher ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    request: ClaimRequest
    future: asyncio.Future[ClaimResult]


class VoucherClaimBatcher:
    """Coalesces concurrent claims: while a call is in flight, claims wait and go together in the next, one
    `voucher_claim` call per voucher (up to `MAX_CLAIM_BATCH`), at most `max_in_flight` calls at once. An idle
    batcher sends a lone claim at once. A Redis error reaches every claim of the failed call (retrying with the
    same key is safe). One per process; `claim` is safe from any number of tasks."""

    def __init__(self, store: VoucherStore, *, max_in_flight: int = 2) -> None:
        self._store = store
        self._max_in_flight = max_in_flight
        self._queue: dict[int, list[_Pending]] = {}
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # function calls made (for benchmarks and tests)
        self.last_budget: dict[int, Budget] = {}  # each voucher's budget as its last call reported it
        # Called with a call's claims (new and replayed) before their callers hear of them: one step per batch
        # for what must follow every claim (`VoucherLive` lists them per buyer). Its failure is logged; the
        # claims stand.
        self.on_claimed: Callable[[list[Claim]], Awaitable[None]] | None = None

    async def claim(self, voucher_id: int, request: ClaimRequest) -> ClaimResult:
        future: asyncio.Future[ClaimResult] = asyncio.get_running_loop().create_future()
        self._queue.setdefault(voucher_id, []).append(_Pending(request, future))
        self._send()
        return await future

    def _send(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            voucher_id = next(iter(self._queue))
            pending = self._queue[voucher_id]
            batch, rest = pending[:MAX_CLAIM_BATCH], pending[MAX_CLAIM_BATCH:]
            if rest:
                self._queue[voucher_id] = rest
            else:
                del self._queue[voucher_id]
            self._in_flight += 1
            task = asyncio.create_task(self._call(voucher_id, batch), name="voucher-claim-batch")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, voucher_id: int, batch: list[_Pending]) -> None:
        try:
            self.calls += 1
            try:
                results, budget = await self._store.claim(voucher_id, [p.request for p in batch])
            except Exception as exc:  # noqa: BLE001 - the whole call failed: every claim hears why
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                return
            self.last_budget[voucher_id] = budget
            claimed = [r.claim for r in results if isinstance(r, Claimed)]
            if claimed and self.on_claimed is not None:
                try:
                    await self.on_claimed(claimed)
                except (RedisError, OSError):  # the claims are made; what follows them is best effort
                    log.warning("voucher %d: what follows %d claims failed", voucher_id, len(claimed), exc_info=True)
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
        finally:
            self._in_flight -= 1
            self._send()

    async def close(self) -> None:
        """Wait for calls in flight (their claims get answers)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
