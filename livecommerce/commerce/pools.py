"""Inventory pools in Redis: the live stock of one flash sale or one product, sold through holds.

A pool's truth is in Redis because a burst of buyers must be served in microseconds; every rule that
protects a unit (sale window, invitation, single-use code, per-buyer cap, idempotency, stock) is checked by
one Lua function (`livecommerce/lua/pools.lua`) in the same atomic step that takes the stock, records the
hold and appends to the pool's outbox stream, from which the worker writes SQL (`commerce.orders`). So
`available + held + paid = total` holds at every instant, whatever the burst, retry or crash.

This module is storage only: typed calls, typed results. What a refusal means to a buyer is `commerce.buying`'s.
The client must not decode responses. Keys (`PoolId.keys`) share the hash tag ``{sale:ID}`` or ``{product:ID}``:
see the header of `pools.lua` for what each holds.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from livecommerce.commerce.terms import SaleTerms
from livecommerce.live import codec
from livecommerce.scripts import FunctionLibrary, missing_function

__all__ = [
    "HOLD_ID_PATTERN",
    "POOL_NAME_PATTERN",
    "POOL_REGISTRY",
    "Hold",
    "HoldDiscount",
    "HoldOutcome",
    "HoldReply",
    "HoldState",
    "Inventory",
    "PoolConfig",
    "PoolId",
    "PoolKeys",
    "Refusal",
    "Refused",
    "ReserveRequest",
    "Reserved",
    "Stock",
    "SweepResult",
]

log = logging.getLogger(__name__)

POOL_REGISTRY: Final = "livecommerce:pools"  # set of pool names the worker sweeps and drains
MAX_BATCH: Final = 500  # reservations per function call (pools.lua MAX_BATCH)
_LIBRARY: Final = "livecommerce_pools"
ADJUST_ONCE_MS: Final = 24 * 3600 * 1000  # how long a stock adjustment's once key answers a repeat
_NO_TERMS: Final = SaleTerms.default()
_OP: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


# --- names ----------------------------------------------------------------------------------------------------

# The grammar of pool names ("s12": sale 12, "p7": product 7) and of hold ids, "<pool>.<n>" (pools.lua numbers
# a pool's holds from 1): the one definition, used by `PoolId.parse`, the REST path and the socket events.
POOL_NAME_PATTERN: Final = r"[sp][1-9][0-9]{0,14}"
_HOLD_NUMBER: Final = r"\.[1-9][0-9]{0,15}"
HOLD_ID_PATTERN: Final = POOL_NAME_PATTERN + _HOLD_NUMBER
_POOL_OR_HOLD: Final = re.compile(rf"({POOL_NAME_PATTERN})(?:{_HOLD_NUMBER})?")


class PoolKeys(NamedTuple):
    """The nine keys every pool function takes, in this order (see the header of `pools.lua`)."""

    cfg: str
    stock: str
    holds: str
    expiry: str
    buyers: str
    idem: str
    invites: str
    codes: str
    outbox: str


@dataclass(frozen=True, slots=True, order=True)
class PoolId:
    """A pool: a flash sale's (`s<id>`) or a product's own, for buying outside sales (`p<id>`)."""

    kind: Literal["sale", "product"]
    id: int

    @classmethod
    def sale(cls, sale_id: int) -> PoolId:
        return cls("sale", sale_id)

    @classmethod
    def product(cls, product_id: int) -> PoolId:
        return cls("product", product_id)

    @classmethod
    def parse(cls, name: str) -> PoolId:
        """From `name` ("s12", "p7") or a hold id ("s12.345"); ValueError when it is neither."""
        match = _POOL_OR_HOLD.fullmatch(name)
        if match is None:
            raise ValueError(f"{name!r} is not a pool name or hold id")
        head = match.group(1)
        return cls("sale" if head[0] == "s" else "product", int(head[1:]))

    @property
    def name(self) -> str:
        return f"{self.kind[0]}{self.id}"

    @property
    def keys(self) -> PoolKeys:
        """The nine keys every pool function takes, in order, by name."""
        return PoolKeys(*(f"livecommerce:{{{self.kind}:{self.id}}}:{part}" for part in PoolKeys._fields))

    @property
    def outbox(self) -> str:
        return self.keys.outbox

    def __str__(self) -> str:
        return self.name


# --- values ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """What a pool sells, to whom, when. `version` orders updates: an older one never replaces a newer one."""

    version: int
    product_id: int
    brand_id: int
    sale_id: int | None
    price_minor: int
    currency: str
    quantity: int  # the stock a new pool starts with; ignored once the pool exists
    per_buyer_limit: int
    starts_at_ms: int
    ends_at_ms: int
    hold_ms: int
    audience: Literal["open", "list", "codes"] = "open"


@dataclass(frozen=True, slots=True)
class Stock:
    available: int
    held: int
    paid: int
    total: int

    @property
    def sold_out(self) -> bool:
        return self.available == 0

    def as_wire(self) -> dict[str, int | bool]:
        return {
            "available": self.available,
            "held": self.held,
            "sold": self.paid,
            "total": self.total,
            "sold_out": self.sold_out,
        }


class HoldState(enum.StrEnum):
    HELD = "held"
    PAYING = "paying"  # the payment provider is being asked; the sweeper waits until the deadline
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class HoldOutcome(enum.StrEnum):
    """What a hold function (begin/complete/abort payment, cancel, expire) answers: it did it (`OK`), there is
    no such hold of that buyer (`NOT_FOUND`), a paying hold whose deadline has not passed (`NOT_DUE`, expire
    only), or the hold's state, which made the call a no-op or a refusal."""

    OK = "ok"
    NOT_FOUND = "not_found"
    NOT_DUE = "not_due"
    HELD = HoldState.HELD.value
    PAYING = HoldState.PAYING.value
    PAID = HoldState.PAID.value
    CANCELLED = HoldState.CANCELLED.value
    EXPIRED = HoldState.EXPIRED.value


@dataclass(frozen=True, slots=True)
class HoldDiscount:
    """The vouchers applied to a hold when its payment began (hold JSON field `disc`; `pool_begin_payment`
    records it once). `seller_funded` and `platform_funded` are the parts of the discounts each party bears
    (`commerce.voucher_price.Price`); the buyer pays the rest of the hold's total."""

    seller_voucher_id: int | None = None
    seller_claim_id: str | None = None
    platform_voucher_id: int | None = None
    platform_claim_id: str | None = None
    seller_funded: int = 0
    platform_funded: int = 0

    @property
    def claims(self) -> list[tuple[int, str]]:
        """(voucher id, claim id) of each voucher applied."""
        out: list[tuple[int, str]] = []
        if self.seller_voucher_id is not None and self.seller_claim_id:
            out.append((self.seller_voucher_id, self.seller_claim_id))
        if self.platform_voucher_id is not None and self.platform_claim_id:
            out.append((self.platform_voucher_id, self.platform_claim_id))
        return out

    def args(self) -> list[str | int]:
        """`pool_begin_payment`'s six optional arguments (0 and "" for an empty slot)."""
        return [
            self.seller_voucher_id or 0, self.seller_claim_id or "", self.platform_voucher_id or 0,
            self.platform_claim_id or "", self.seller_funded, self.platform_funded,
        ]  # fmt: skip

    @classmethod
    def parse(cls, d: dict[str, Any]) -> HoldDiscount:
        return cls(
            seller_voucher_id=int(d.get("sv") or 0) or None,
            seller_claim_id=d.get("sc") or None,
            platform_voucher_id=int(d.get("pv") or 0) or None,
            platform_claim_id=d.get("pc") or None,
            seller_funded=int(d.get("sf") or 0),
            platform_funded=int(d.get("pf") or 0),
        )


@dataclass(frozen=True, slots=True)
class Hold:
    """Units taken from a pool for one buyer, as Redis recorded them (also the outbox's payload)."""

    id: str
    pool: PoolId
    product_id: int
    brand_id: int
    sale_id: int | None
    buyer_id: int
    quantity: int
    unit_price_minor: int
    currency: str
    state: HoldState
    expires_at_ms: int
    created_at_ms: int
    room_id: int | None
    code: str
    key: str
    payment_ref: str | None = None
    paid_at_ms: int | None = None
    ended_at_ms: int | None = None
    deadline_ms: int | None = None
    # The attribution and fee snapshot taken when the hold was made (`commerce.terms`); a record written
    # before terms existed reads as no creator, no collaboration and the default fee.
    terms: SaleTerms = field(default_factory=SaleTerms.default)
    # The vouchers applied when its payment began (None: none, or not yet); cleared by a decline.
    disc: HoldDiscount | None = None

    @property
    def total_minor(self) -> int:
        """The goods value: unit price x quantity, before vouchers."""
        return self.quantity * self.unit_price_minor

    @property
    def pay_minor(self) -> int:
        """What the buyer pays (what the provider charges and refunds): the total less the vouchers' parts."""
        if self.disc is None:
            return self.total_minor
        return self.total_minor - self.disc.seller_funded - self.disc.platform_funded

    @classmethod
    def from_json(cls, raw: bytes | str) -> Hold:
        d: dict[str, Any] = orjson.loads(raw)

        def opt(name: str) -> int | None:
            value = d.get(name)
            return None if value is None else int(value)

        return cls(
            id=d["id"],
            pool=PoolId.parse(d["pool"]),
            product_id=int(d["product"]),
            brand_id=int(d["brand"]),
            sale_id=int(d["sale"]) or None,
            buyer_id=int(d["buyer"]),
            quantity=int(d["qty"]),
            unit_price_minor=int(d["price"]),
            currency=d["currency"],
            state=HoldState(d["state"]),
            expires_at_ms=int(d["exp"]),
            created_at_ms=int(d["created"]),
            room_id=int(d["room"]) or None,
            code=d.get("code", ""),
            key=d.get("key", ""),
            payment_ref=d.get("ref"),
            paid_at_ms=opt("paid"),
            ended_at_ms=opt("ended"),
            deadline_ms=opt("deadline"),
            terms=SaleTerms.parse(d["terms"]) if d.get("terms") else _NO_TERMS,
            disc=HoldDiscount.parse(d["disc"]) if isinstance(d.get("disc"), dict) else None,
        )


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """One tap on Buy. `key` is the buyer's idempotency key: a retry with it returns the same hold (with the
    terms it was made with: `terms` is not part of the request's identity). `terms` is a `SaleTerms.encode()`
    token ("" for none), stored verbatim in the hold."""

    buyer_id: int
    key: str
    quantity: int = 1
    code: str = ""
    room_id: int | None = None
    terms: str = ""

    def args(self) -> list[str | int]:
        """The request's group of `pool_reserve` arguments (six; see the function's header in `pools.lua`)."""
        room = "" if self.room_id is None else self.room_id
        return [self.buyer_id, self.key, self.quantity, self.code, room, self.terms]


class Refusal(enum.StrEnum):
    """Why a pool did not take units (the first element of a pool_reserve result)."""

    KEY_REUSED = "key_reused"
    NOT_LOADED = "not_loaded"
    CLOSED = "closed"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    OVER_LIMIT = "over_limit"
    NOT_INVITED = "not_invited"
    CODE_REQUIRED = "code_required"
    CODE_INVALID = "code_invalid"
    CODE_USED = "code_used"
    LIMIT = "limit"
    SOLD_OUT = "sold_out"
    NOT_ENOUGH = "not_enough"


@dataclass(frozen=True, slots=True)
class Refused:
    refusal: Refusal
    limit: int | None = None  # OVER_LIMIT, LIMIT
    have: int | None = None  # LIMIT: units the buyer already holds or bought
    available: int | None = None  # NOT_ENOUGH
    starts_at_ms: int | None = None  # NOT_STARTED
    hold_id: str | None = None  # KEY_REUSED


@dataclass(frozen=True, slots=True)
class Reserved:
    hold: Hold
    replayed: bool  # the idempotency key had been used: this is the earlier hold, in its current state


ReserveResult = Reserved | Refused


@dataclass(frozen=True, slots=True)
class SweepResult:
    expired: list[str]
    stale_paying: list[str]  # paying holds past their deadline: ask the payment provider, then settle
    stock: Stock


# --- parsing --------------------------------------------------------------------------------------------------


def _stock(reply: Sequence[Any]) -> Stock:
    assert codec.text(reply[0]) == "stock", reply
    return Stock(int(reply[1]), int(reply[2]), int(reply[3]), int(reply[4]))


def _reserve_result(reply: Sequence[Any]) -> ReserveResult:
    status = codec.text(reply[0])
    if status == "ok":
        return Reserved(Hold.from_json(reply[1]), replayed=bool(int(reply[2])))
    refusal = Refusal(status)
    if refusal is Refusal.OVER_LIMIT:
        return Refused(refusal, limit=int(reply[1]))
    if refusal is Refusal.LIMIT:
        return Refused(refusal, limit=int(reply[1]), have=int(reply[2]))
    if refusal is Refusal.NOT_ENOUGH:
        return Refused(refusal, available=int(reply[1]))
    if refusal is Refusal.NOT_STARTED:
        return Refused(refusal, starts_at_ms=int(reply[1]))
    if refusal is Refusal.KEY_REUSED:
        return Refused(refusal, hold_id=codec.text(reply[1]))
    return Refused(refusal)


@dataclass(frozen=True, slots=True)
class HoldReply:
    """A hold function's answer: its outcome and, when the hold exists, the hold after the call."""

    status: HoldOutcome
    hold: Hold | None

    @classmethod
    def parse(cls, reply: Sequence[Any]) -> HoldReply:
        return cls(HoldOutcome(codec.text(reply[0])), Hold.from_json(reply[1]) if len(reply) > 1 else None)


# --- the store ------------------------------------------------------------------------------------------------


class Inventory:
    """Typed calls to the pool functions. One per process; `load_library` once at start (it is also re-loaded
    by itself when Redis lost it)."""

    def __init__(self, redis: Redis) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("Inventory needs a Redis client with decode_responses=False")
        self._redis = redis
        self._library = FunctionLibrary(redis, "pools.lua", "pool functions")

    @property
    def redis(self) -> Redis:
        return self._redis

    async def load_library(self) -> None:
        await self._library.load()

    async def _fcall(self, function: str, pool: PoolId, *args: Any, extra_keys: Sequence[str] = ()) -> Any:
        """Call a pool function (loading the library again if Redis lost it: `FunctionLibrary`)."""
        return await self._library.call(function, [*pool.keys, *extra_keys], *args)

    # --- configuration ----------------------------------------------------------------------------------------

    async def load(
        self, pool: PoolId, config: PoolConfig, *, invitees: Iterable[int] = (), codes: Iterable[str] = ()
    ) -> tuple[str, int, bool]:
        """Create or update `pool` from `config` (and add invitees or codes, in chunks). Idempotent: a stored
        newer version wins, and live stock is never replaced. Returns (status, stored version, created)."""
        await self._redis.sadd(POOL_REGISTRY, pool.name)
        base: list[Any] = [
            config.version, pool.name, config.product_id, config.brand_id, config.sale_id or 0,
            config.price_minor, config.currency, config.quantity, config.per_buyer_limit, config.starts_at_ms,
            config.ends_at_ms, config.hold_ms, config.audience,
        ]  # fmt: skip
        items: list[Any] = [*invitees, *codes]
        first = True
        reply: Any = None
        created = False
        for start in range(0, max(len(items), 1), 1000):
            if not first and codec.text(reply[0]) != "loaded":
                break
            reply = await self._fcall("pool_load", pool, *base, *items[start : start + 1000])
            if first:
                created = codec.text(reply[0]) == "loaded" and bool(int(reply[2]))
            first = False
        status = codec.text(reply[0])
        version = int(reply[1]) if len(reply) > 1 else 0
        return status, version, created

    async def adjust(self, pool: PoolId, delta: int, op: str | None = None) -> tuple[str, Stock | None]:
        """Add `delta` units to a loaded pool ("ok"), or refuse when fewer than `-delta` are available ("short").

        Once per `op` (a fresh id when not given, kept for the call's own retries; give a stable one to make
        an operation repeatable across processes): a second call with it changes nothing ("replayed")."""
        op = op or uuid.uuid4().hex
        if not _OP.fullmatch(op):
            raise ValueError(f"operation id {op!r}: 1-64 characters of A-Z a-z 0-9 _ . : -")
        once = pool.keys.cfg.removesuffix("cfg") + f"adjust:{op}"
        reply = await self._fcall("pool_adjust", pool, delta, ADJUST_ONCE_MS, extra_keys=(once,))
        status = codec.text(reply[0])
        return status, (_stock(reply[1]) if len(reply) > 1 else None)

    async def close(self, pool: PoolId) -> tuple[Stock, int]:
        """Stop reservations; held holds are released by the next sweep. Returns the stock and the number of
        holds still held or paying."""
        stock, open_holds = await self._fcall("pool_close", pool)
        return _stock(stock), int(open_holds)

    # --- buying -----------------------------------------------------------------------------------------------

    async def reserve(self, pool: PoolId, requests: Sequence[ReserveRequest]) -> tuple[list[ReserveResult], Stock]:
        """Apply up to `MAX_BATCH` reservations in one atomic call, in order."""
        if not 1 <= len(requests) <= MAX_BATCH:
            raise ValueError(f"between 1 and {MAX_BATCH} requests per call")
        args = [arg for request in requests for arg in request.args()]
        reply = await self._fcall("pool_reserve", pool, len(requests), *args)
        return [_reserve_result(r) for r in reply[:-1]], _stock(reply[-1])

    async def reserve_groups(
        self, groups: Mapping[PoolId, Sequence[ReserveRequest]]
    ) -> dict[PoolId, tuple[list[ReserveResult], Stock] | BaseException]:
        """Several pools' batches in one pipeline (one round trip). A pool whose call failed maps to its error;
        retrying it is safe (idempotency keys)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for pool, requests in groups.items():
                args = [arg for request in requests for arg in request.args()]
                pipe.fcall("pool_reserve", 9, *pool.keys, len(requests), *args)
            replies = await pipe.execute(raise_on_error=False)
        out: dict[PoolId, tuple[list[ReserveResult], Stock] | BaseException] = {}
        for (pool, requests), reply in zip(groups.items(), replies, strict=True):
            if isinstance(reply, ResponseError) and missing_function(reply):
                try:
                    out[pool] = await self.reserve(pool, requests)
                except Exception as exc:  # noqa: BLE001 - each pool's failure is its callers'
                    out[pool] = exc
            elif isinstance(reply, BaseException):
                out[pool] = reply
            else:
                out[pool] = ([_reserve_result(r) for r in reply[:-1]], _stock(reply[-1]))
        return out

    async def begin_payment(
        self, pool: PoolId, hold_id: str, buyer_id: int, grace_ms: int, disc: HoldDiscount | None = None
    ) -> HoldReply:
        """A held hold becomes paying; `disc` records the vouchers applied (a retry keeps what was recorded
        first: the reply's hold says what stands)."""
        extra = [] if disc is None or not disc.claims else disc.args()
        return HoldReply.parse(await self._fcall("pool_begin_payment", pool, hold_id, buyer_id, grace_ms, *extra))

    async def complete_payment(self, pool: PoolId, hold_id: str, payment_ref: str) -> HoldReply:
        return HoldReply.parse(await self._fcall("pool_complete_payment", pool, hold_id, payment_ref))

    async def abort_payment(self, pool: PoolId, hold_id: str) -> HoldReply:
        return HoldReply.parse(await self._fcall("pool_abort_payment", pool, hold_id))

    async def cancel(self, pool: PoolId, hold_id: str, buyer_id: int = 0) -> HoldReply:
        """Give a held hold back; `buyer_id` 0 acts for any buyer (staff, the system)."""
        return HoldReply.parse(await self._fcall("pool_cancel", pool, hold_id, buyer_id))

    async def expire(self, pool: PoolId, hold_id: str) -> HoldReply:
        """End a hold past its expiry or payment deadline (after the provider confirmed no charge)."""
        return HoldReply.parse(await self._fcall("pool_expire", pool, hold_id))

    async def sweep(self, pool: PoolId, max_holds: int = 1000) -> SweepResult:
        expired, stale, stock = await self._fcall("pool_sweep", pool, max_holds)
        return SweepResult([codec.text(i) for i in expired], [codec.text(i) for i in stale], _stock(stock))

    # --- reading ----------------------------------------------------------------------------------------------

    async def hold(self, pool: PoolId, hold_id: str) -> Hold | None:
        raw = await self._redis.hget(pool.keys.holds, hold_id)
        return None if raw is None else Hold.from_json(raw)

    async def stock(self, pools: Sequence[PoolId]) -> dict[PoolId, Stock]:
        """The stock of each loaded pool among `pools`, in one round trip (absent pools are left out)."""
        if not pools:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for pool in pools:
                pipe.hmget(pool.keys.stock, ["available", "held", "paid", "total"])
            replies = await pipe.execute()
        return {
            pool: Stock(*(int(v) for v in values))
            for pool, values in zip(pools, replies, strict=True)
            if values[3] is not None
        }

    async def config(self, pool: PoolId) -> dict[str, str]:
        """The pool's stored configuration (empty when not loaded)."""
        raw = await self._redis.hgetall(pool.keys.cfg)
        return {codec.text(k): codec.text(v) for k, v in raw.items()}

    async def registered(self) -> list[PoolId]:
        """Pools the worker looks after (loaded and not yet retired)."""
        names = await self._redis.smembers(POOL_REGISTRY)
        return sorted(PoolId.parse(codec.text(n)) for n in names)

    async def retire(self, pool: PoolId, keep_seconds: int = 7 * 86400) -> None:
        """A finished pool leaves the registry; its keys expire after `keep_seconds` (late reads still work)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.srem(POOL_REGISTRY, pool.name)
            for key in pool.keys:
                pipe.expire(key, keep_seconds)
            await pipe.execute()
