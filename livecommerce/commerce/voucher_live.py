"""Vouchers in a LIVE: claiming them while the show runs, pricing a buy with them, settling them at checkout.

One `VoucherLive` per web process and per worker (`VOUCHERS`), on top of `commerce.voucher_store` (the atomic
Redis functions) and `commerce.vouchers` (the SQL rows and who manages them):

- `ensure_loaded` reads a voucher from SQL (cached for a second, kept through a database outage like buying's
  caches) and loads it into Redis when this process has not loaded that version yet; an ended voucher is closed
  in Redis. The REST paths that create, change or end a voucher call `reload` once their transaction commits.
- `mark_pinned` records, per room, the vouchers pinned in the current show (a hash voucher id -> the show's
  start in ms): a voucher pinned earlier in this show stays claimable; a new show starts with none.
- `claim` applies the claim rules (below), then claims through the batcher (one function call per burst per
  voucher). Every refusal is a `ClientError` worded for buyers (codes in `docs/protocol.md`).
- `quote` picks the buyer's best usable claims (one seller slot, one platform slot) for a product in a room.
- `apply` / `settle` / `release` carry claims through checkout (`commerce.buying`), `reconcile` is what the
  worker's sweeper does with applied claims whose hold's deadline has passed.

Claim rules (`claim`): signed in (`rooms.require_buyer`), the room visible to the caller and live, the voucher
pinned in the room in this show, active and in its window, and the account at least `min_account_age_days` old
(read from the users table: an account's age is not the client's to say). Follows do not exist yet, so no
voucher is limited to followers. Quota, per-buyer limit, idempotency and the budget are Redis's.

A buyer's claims are listed in `livecommerce:{buyer:B}:voucher-claims` (a set of "<voucher>:<claim>") added
after Redis answers; a crash between the two loses the entry until the buyer retries with the same key (the
replay adds it again), never the claim itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy import BindParameter, Integer, bindparam, case, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce import rooms as room_rules
from livecommerce.auth import Principal
from livecommerce.clock import from_ms, now_ms, to_ms
from livecommerce.commerce.pools import Hold, HoldDiscount, HoldState, Inventory, PoolId
from livecommerce.commerce.voucher_price import Price, VoucherTerms, price_after, slot_of, worst_cost
from livecommerce.commerce.voucher_store import (
    Budget,
    Claim,
    ClaimOutcome,
    ClaimRefusal,
    ClaimRefused,
    ClaimRequest,
    ClaimState,
    VoucherClaimBatcher,
    VoucherConfig,
    VoucherHistory,
    VoucherStore,
    voucher_keys,
)
from livecommerce.commerce.vouchers import voucher_terms
from livecommerce.errors import ClientError, Conflict, InvalidRequest, NotFound, ServiceUnavailable, Unauthorized
from livecommerce.live import codec
from livecommerce.models import Funding, Order, OrderStatus, RoomStatus, User, Voucher, VoucherKind, VoucherStatus
from livecommerce.recent import RecentCache

__all__ = [
    "VOUCHERS",
    "AccountTooNew",
    "ClaimView",
    "Quote",
    "QuotedVoucher",
    "VoucherBudgetSpent",
    "VoucherClaimedOut",
    "VoucherEnded",
    "VoucherInfo",
    "VoucherLimitReached",
    "VoucherLive",
    "VoucherNotInRoom",
    "VoucherNotStarted",
    "VoucherNotUsable",
    "buyer_claims_key",
    "claim_wire",
    "price_wire",
    "room_pins_key",
]

log = logging.getLogger(__name__)

_CACHE_SECONDS: Final = 1.0
_STALE_SECONDS: Final = 5.0
_KEEP_SECONDS: Final = 300.0
_DAY_MS: Final = 86_400_000
_CLAIM_GRACE_MS: Final = 60_000  # an applied claim outlives its hold's deadline by this much before reconciling


def room_pins_key(room_id: int) -> str:
    """Hash voucher id -> the start (ms) of the show it was pinned in."""
    return f"livecommerce:{{room:{room_id}}}:voucher-pins"


def buyer_claims_key(buyer_id: int) -> str:
    """Set of "<voucher id>:<claim id>": the buyer's claims."""
    return f"livecommerce:{{buyer:{buyer_id}}}:voucher-claims"


# --- refusals, worded for buyers ------------------------------------------------------------------------------


class VoucherNotInRoom(ClientError):
    status = 409
    code = "voucher_not_in_room"
    title = "Voucher not offered here"


class VoucherClaimedOut(ClientError):
    status = 409
    code = "voucher_claimed_out"
    title = "All claimed"


class VoucherLimitReached(ClientError):
    status = 409
    code = "voucher_limit_reached"
    title = "Limit reached"


class VoucherBudgetSpent(ClientError):
    status = 409
    code = "voucher_budget_spent"
    title = "Voucher budget spent"


class VoucherNotStarted(ClientError):
    status = 409
    code = "voucher_not_started"
    title = "Not started yet"


class VoucherEnded(ClientError):
    status = 409
    code = "voucher_ended"
    title = "Voucher ended"


class AccountTooNew(ClientError):
    status = 403
    code = "account_too_new"
    title = "Account too new"


class VoucherNotUsable(ClientError):
    """A claim named at checkout cannot apply to this hold (not the buyer's, used, another product...)."""

    status = 409
    code = "voucher_not_usable"
    title = "Voucher not usable"


# --- values ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoucherInfo:
    """What claiming and pricing need of a voucher, cached (kept while the database is down)."""

    id: int
    title: str
    kind: VoucherKind
    terms: VoucherTerms
    funding: Funding
    brand_id: int | None
    product_id: int | None
    campaign_id: int | None
    currency: str
    starts_at_ms: int
    ends_at_ms: int
    quota: int
    per_buyer_limit: int
    min_account_age_days: int
    budget_minor: int
    status: VoucherStatus
    version: int

    @classmethod
    def of(cls, v: Voucher) -> VoucherInfo:
        return cls(
            id=v.id, title=v.title, kind=v.kind, terms=voucher_terms(v), funding=v.funding, brand_id=v.brand_id,
            product_id=v.product_id, campaign_id=v.campaign_id, currency=v.currency,
            starts_at_ms=to_ms(v.starts_at), ends_at_ms=to_ms(v.ends_at), quota=v.quota,
            per_buyer_limit=v.per_buyer_limit, min_account_age_days=v.min_account_age_days,
            budget_minor=v.budget_minor, status=v.status, version=to_ms(v.updated_at),
        )  # fmt: skip

    @property
    def slot(self) -> str:
        return slot_of(self.funding)

    def config(self) -> VoucherConfig:
        return VoucherConfig(
            version=self.version, quota=self.quota, per_buyer_limit=self.per_buyer_limit,
            starts_at_ms=self.starts_at_ms, ends_at_ms=self.ends_at_ms, worst_cost_minor=worst_cost(self.terms),
            funded_minor=self.budget_minor,
        )  # fmt: skip

    def applies_to(self, product_id: int, brand_id: int, currency: str) -> bool:
        """Whether the voucher's scope (brand, product, currency) covers this product."""
        if currency != self.currency:
            return False
        if self.brand_id is not None and self.brand_id != brand_id:
            return False
        return self.product_id is None or self.product_id == product_id

    def open_at(self, ms: int) -> bool:
        return self.status is VoucherStatus.ACTIVE and self.starts_at_ms <= ms < self.ends_at_ms

    def as_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "kind": self.kind.value, "amount_minor": self.terms.amount_minor,
            "percent_bps": self.terms.percent_bps, "cap_minor": self.terms.cap_minor,
            "min_spend_minor": self.terms.min_spend_minor, "currency": self.currency, "funding": self.funding.value,
            "starts_at_ms": self.starts_at_ms, "ends_at_ms": self.ends_at_ms,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class QuotedVoucher:
    voucher: VoucherInfo
    claim_id: str
    discount_minor: int  # what this voucher takes off
    cost_minor: int  # the platform's part of it (what the budget pays)

    def as_wire(self) -> dict[str, Any]:
        return {
            "voucher_id": self.voucher.id,
            "claim_id": self.claim_id,
            "title": self.voucher.title,
            "discount_minor": self.discount_minor,
        }


@dataclass(frozen=True, slots=True)
class Quote:
    """The price of a buy after the vouchers chosen for it (at most one per slot)."""

    price: Price
    seller: QuotedVoucher | None = None
    platform: QuotedVoucher | None = None

    @property
    def vouchers(self) -> list[QuotedVoucher]:
        return [q for q in (self.seller, self.platform) if q is not None]

    def discount(self) -> HoldDiscount | None:
        """What `pool_begin_payment` records on the hold (None: no voucher)."""
        if not self.vouchers:
            return None
        return HoldDiscount(
            seller_voucher_id=None if self.seller is None else self.seller.voucher.id,
            seller_claim_id=None if self.seller is None else self.seller.claim_id,
            platform_voucher_id=None if self.platform is None else self.platform.voucher.id,
            platform_claim_id=None if self.platform is None else self.platform.claim_id,
            seller_funded=self.price.seller_funded,
            platform_funded=self.price.platform_funded,
        )

    def as_wire(self) -> dict[str, Any]:
        return price_wire(self.price.subtotal_minor, self.price.seller_funded, self.price.platform_funded,
                          [q.as_wire() for q in self.vouchers])  # fmt: skip


def price_wire(
    subtotal: int, seller_funded: int, platform_funded: int, vouchers: list[dict[str, Any]]
) -> dict[str, Any]:
    """The one wire shape of a price (REST and socket): see `docs/protocol.md`."""
    return {
        "subtotal_minor": subtotal,
        "seller_discount_minor": seller_funded,
        "platform_discount_minor": platform_funded,
        "pay_minor": subtotal - seller_funded - platform_funded,
        "vouchers": vouchers,
    }


@dataclass(frozen=True, slots=True)
class ClaimView:
    """A claim with its voucher, as its buyer sees it (`GET /api/v1/me/voucher-claims`)."""

    claim: Claim
    voucher: VoucherInfo | None  # None: the voucher is gone from SQL

    def as_wire(self) -> dict[str, Any]:
        return claim_wire(self.claim, self.voucher)


def claim_wire(claim: Claim, voucher: VoucherInfo | None = None) -> dict[str, Any]:
    return {
        "id": claim.id,
        "voucher_id": claim.voucher_id,
        "state": claim.state.value,
        "hold_id": claim.hold_id,
        "discount_minor": claim.discount_minor,
        "created_at_ms": claim.created_at_ms,
        "used_at_ms": claim.used_at_ms,
        "voucher": None if voucher is None else voucher.as_wire(),
    }


@dataclass(frozen=True, slots=True)
class _Item:
    product_id: int
    brand_id: int
    unit_price_minor: int
    currency: str


def _item_of(product: Any) -> _Item:
    """A `RoomOffer` (price_minor) or a `Hold` (unit_price_minor)."""
    price = getattr(product, "unit_price_minor", None)
    if price is None:
        price = product.price_minor
    return _Item(int(product.product_id), int(product.brand_id), int(price), str(product.currency))


# --- the service ----------------------------------------------------------------------------------------------


class VoucherLive:
    """See the module docstring. `rooms`: a callable giving a room's facts (buying's cached room lookup)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        store: VoucherStore,
        batcher: VoucherClaimBatcher | None = None,
        inventory: Inventory | None = None,
        buying: Any = None,  # commerce.buying.Buying (its room cache); None in the worker
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.batcher = batcher or VoucherClaimBatcher(store)
        self.batcher.on_claimed = self._list_claims  # each batch's claims listed per buyer in one round trip
        self.inventory = inventory
        self.buying = buying
        self._vouchers: RecentCache[int, VoucherInfo] = RecentCache(
            _CACHE_SECONDS, _STALE_SECONDS, keep_seconds=_KEEP_SECONDS, name="voucher"
        )
        self._joined: RecentCache[int, int] = RecentCache(
            60.0, 600.0, keep_seconds=3600.0, name="account created at (ms)"
        )
        self._loaded: dict[int, int] = {}  # voucher id -> the version this process loaded into Redis
        self._pins: RecentCache[int, frozenset[int]] = RecentCache(
            _CACHE_SECONDS, _STALE_SECONDS, keep_seconds=_STALE_SECONDS, name="room voucher pins"
        )

    @property
    def redis(self) -> Any:
        return self.store.redis

    # --- loading ----------------------------------------------------------------------------------------------

    async def _lookup(self, voucher_id: int) -> VoucherInfo:
        async with self.sessions() as session:
            voucher = await session.get(Voucher, voucher_id)
            if voucher is None:
                raise NotFound(f"no voucher with id {voucher_id}")
            return VoucherInfo.of(voucher)

    async def info(self, voucher_id: int, *, fresh: bool = False) -> VoucherInfo:
        return await self._vouchers.get(voucher_id, lambda: self._lookup(voucher_id), fresh=fresh)

    async def ensure_loaded(self, voucher_id: int, *, fresh: bool = False) -> VoucherInfo:
        """The voucher, loaded into Redis (closed there once ended) if this process has not done it for this
        version. Idempotent: Redis refuses a stale version and never replaces live claims."""
        info = await self.info(voucher_id, fresh=fresh)
        if self._loaded.get(voucher_id) == info.version:
            return info
        result = await self.store.load(voucher_id, info.config(), await self._history_if_missing(voucher_id))
        if info.status is VoucherStatus.ENDED:
            await self.store.close(voucher_id)
        if result.status not in ("loaded", "stale", "closed"):  # tried again next time: never marked loaded
            log.warning("voucher %d: Redis refused the load (%s)", voucher_id, result.status)
            return info
        self._loaded[voucher_id] = info.version
        return info

    async def _history_if_missing(self, voucher_id: int) -> VoucherHistory | None:
        """What SQL's paid orders say the voucher used, when Redis has no budget for it (never loaded, or Redis
        lost its data); None when Redis has it (the usual case: no query). Redis applies it only if it still has
        none when the load runs. With the database down as well, nothing is loaded (503) rather than a voucher
        that starts again from zero."""
        if await self.redis.exists(voucher_keys(voucher_id).budget):
            return None
        try:
            async with self.sessions() as session:
                rows = (await session.execute(_USED.params(voucher=voucher_id))).all()
        except (SQLAlchemyError, OSError):
            log.warning("voucher %d: could not read its history to load it", voucher_id, exc_info=True)
            raise ServiceUnavailable(
                "we could not load this voucher (its claims are being restored): try again in a moment"
            ) from None
        return VoucherHistory(
            spent_minor=sum(int(spent) for _, _, spent in rows), used_by={int(b): int(n) for b, n, _ in rows}
        )

    async def apply_before_commit(self, voucher: Voucher, *, funded_before: int) -> None:
        """A change to a voucher, made in Redis before its SQL transaction commits, so Redis refuses (409) what
        its live figures do not allow — an allotment below what claims reserve or have spent, a quota below the
        claims made, a per-buyer limit below one buyer's claims — and nothing commits. A raise of the allotment
        is held back to `funded_before` here and reaches Redis only once SQL has committed it (`reload`): Redis
        never funds more than SQL allots, whichever step fails."""
        config = VoucherInfo.of(voucher).config()
        config = replace(config, funded_minor=min(config.funded_minor, funded_before))
        try:
            result = await self.store.load(voucher.id, config, await self._history_if_missing(voucher.id))
        except (RedisError, OSError):
            log.warning("voucher %d: could not check a change against Redis", voucher.id, exc_info=True)
            raise ServiceUnavailable(
                "we could not reach the voucher service to check this change against the live claims; nothing "
                "was changed: try again in a moment"
            ) from None
        if result.status == "short" and result.budget is not None:
            held = result.budget.reserved + result.budget.spent
            raise Conflict(f"claims reserve or have spent {held} of voucher {voucher.id}'s allotment now; it can "
                           f"be cut to {held} at the least")  # fmt: skip
        if result.status == "quota_short":
            raise Conflict(f"{result.count} claims of voucher {voucher.id} have been made; its quota cannot go "
                           "below that")  # fmt: skip
        if result.status == "limit_short":
            raise Conflict(f"a buyer has {result.count} claims of voucher {voucher.id}; its per-buyer limit "
                           "cannot go below that")  # fmt: skip
        self._loaded.pop(voucher.id, None)

    async def reload(self, voucher_id: int) -> None:
        """After a create, change or end committed: read the voucher now and load (or close) it in Redis."""
        self._vouchers.drop(voucher_id)
        self._loaded.pop(voucher_id, None)
        try:
            await self.ensure_loaded(voucher_id, fresh=True)
        except (RedisError, OSError):  # loaded lazily on the next pin or claim
            log.warning("voucher %d: could not load it into Redis after its change", voucher_id, exc_info=True)

    async def budget(self, voucher_id: int) -> Budget | None:
        """The voucher's live budget figures from Redis (None: not loaded there, or Redis unreachable)."""
        try:
            budget = await self.store.budget(voucher_id)
        except (RedisError, OSError):
            log.warning("voucher %d: could not read its budget from Redis", voucher_id, exc_info=True)
            return None
        return budget

    # --- pins -------------------------------------------------------------------------------------------------

    async def _show_ms(self, room_id: int) -> int:
        """The current show's start (ms) of the room (0 when it has not started)."""
        if self.buying is None:
            raise AssertionError("VoucherLive needs buying's room lookup for rooms")
        info = await self.buying.room_info(room_id)
        return 0 if info.started_at is None else to_ms(info.started_at)

    async def mark_pinned(self, room_id: int, voucher_id: int) -> None:
        """The voucher was pinned in the room's current show: claimable there until the show ends."""
        show = await self._show_ms(room_id)
        await self.redis.hset(room_pins_key(room_id), str(voucher_id), str(show))
        self._pins.drop(room_id)

    async def pinned(self, room_id: int, *, fresh: bool = False) -> frozenset[int]:
        """The vouchers pinned in the room's current show (cached for a second: `fresh` reads Redis now)."""

        async def load() -> frozenset[int]:
            show = str(await self._show_ms(room_id))
            raw = await self.redis.hgetall(room_pins_key(room_id))
            return frozenset(int(codec.text(k)) for k, v in raw.items() if codec.text(v) == show)

        return await self._pins.get(room_id, load, fresh=fresh)

    async def _is_pinned(self, room_id: int, voucher_id: int) -> bool:
        """Pinned in this show; a miss asks Redis again (another process may have pinned it this second)."""
        return voucher_id in await self.pinned(room_id) or voucher_id in await self.pinned(room_id, fresh=True)

    # --- claims -----------------------------------------------------------------------------------------------

    async def _joined_ms(self, user_id: int) -> int:
        async def load() -> int:
            async with self.sessions() as session:
                created = await session.scalar(select(User.created_at).where(User.id == user_id))
                if created is None:
                    raise Unauthorized("the account this token names no longer exists; sign in again")
                return to_ms(created)

        return await self._joined.get(user_id, load)

    async def claim(self, who: Principal, room_id: int, voucher_id: int, key: str) -> tuple[Claim, bool]:
        """Claim a voucher pinned in a live room (the rules in the module docstring). Returns (claim,
        replayed): a retry with the same `key` gets the same claim back."""
        room_rules.require_buyer(who)
        assert who.user_id is not None
        try:
            request = ClaimRequest(who.user_id, key)
        except ValueError as exc:
            raise InvalidRequest(str(exc), errors=[{"field": "body.idempotency_key", "message": str(exc)}]) from None
        if self.buying is None:
            raise AssertionError("claims need buying's room lookup")
        room = await self.buying.room(room_id, who)  # NotFound unless the caller can see it
        if room.status is not RoomStatus.LIVE:
            raise room_rules.RoomNotLive("the room is not live; vouchers are claimed while the show is on")
        if not await self._is_pinned(room_id, voucher_id):
            raise VoucherNotInRoom("this voucher has not been offered in this show; claim the vouchers the host pins")
        info = await self.ensure_loaded(voucher_id)
        if info.status is VoucherStatus.ENDED:
            raise VoucherEnded("this voucher has ended")
        if info.min_account_age_days:
            age_ms = now_ms() - await self._joined_ms(who.user_id)
            if age_ms < info.min_account_age_days * _DAY_MS:
                raise AccountTooNew(
                    f"this voucher is for accounts at least {info.min_account_age_days} days old; yours is "
                    f"{age_ms // _DAY_MS} days old"
                )
        for attempt in range(2):
            try:
                result = await self.batcher.claim(voucher_id, request)
            except (RedisError, OSError):
                log.warning("claiming voucher %d failed", voucher_id, exc_info=True)
                raise ServiceUnavailable(
                    "we could not reach the voucher service; try again with the same key (it never claims twice)"
                ) from None
            if isinstance(result, ClaimRefused) and result.refusal is ClaimRefusal.NOT_LOADED and attempt == 0:
                self._loaded.pop(voucher_id, None)  # Redis lost it (restarted, flushed): load it again
                await self.ensure_loaded(voucher_id)
                continue
            break
        if isinstance(result, ClaimRefused):
            raise _refusal(result, info)
        return result.claim, result.replayed

    async def _list_claims(self, claims: list[Claim]) -> None:
        """The buyer's list of claims (`claims_of`), for a batch of claims in one pipelined round trip. Not
        atomic with the claims: if it fails they stand, and a retry with the same key lists them."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for claim in claims:
                pipe.sadd(buyer_claims_key(claim.buyer_id), f"{claim.voucher_id}:{claim.id}")
            await pipe.execute()

    async def claims_of(self, buyer_id: int) -> list[Claim]:
        """The buyer's claims, newest first."""
        members = [codec.text(m).partition(":") for m in await self.redis.smembers(buyer_claims_key(buyer_id))]
        wanted = [(int(voucher), claim_id) for voucher, _, claim_id in members]
        found = [c for c in await self.store.get_claims(wanted) if c is not None and c.buyer_id == buyer_id]
        found.sort(key=lambda c: (c.created_at_ms, c.id), reverse=True)
        return found

    async def my_claims(self, who: Principal) -> list[ClaimView]:
        if not who.authenticated or who.user_id is None:
            raise Unauthorized("sign in to see your vouchers")
        views: list[ClaimView] = []
        for claim in await self.claims_of(who.user_id):
            try:
                info: VoucherInfo | None = await self.info(claim.voucher_id)
            except NotFound:
                info = None
            views.append(ClaimView(claim, info))
        return views

    # --- pricing ----------------------------------------------------------------------------------------------

    async def _candidates(
        self, buyer_id: int, room_id: int | None, item: _Item, *, hold_id: str | None = None,
        claim_ids: Sequence[str] | None = None,
    ) -> list[tuple[VoucherInfo, Claim]]:  # fmt: skip
        """The buyer's claims usable for `item`: claimed (or applied to `hold_id`), of vouchers pinned in the
        room this show (any room when `room_id` is None), open now, covering the product."""
        pinned = None if room_id is None else set(await self.pinned(room_id))
        now = now_ms()
        usable: list[tuple[VoucherInfo, Claim]] = []
        for claim in await self.claims_of(buyer_id):
            if claim_ids is not None and claim.id not in claim_ids:
                continue
            if claim_ids is None and pinned is not None and claim.voucher_id not in pinned:
                continue
            mine = claim.state is ClaimState.CLAIMED or (
                claim.state is ClaimState.APPLIED and hold_id is not None and claim.hold_id == hold_id
            )
            if not mine:
                continue
            try:
                info = await self.info(claim.voucher_id)
            except NotFound:
                continue
            if info.open_at(now) and info.applies_to(item.product_id, item.brand_id, item.currency):
                usable.append((info, claim))
        return usable

    async def quote(self, buyer_id: int, room_id: int | None, product: Any, quantity: int) -> Quote:
        """The best price for `quantity` of `product` (a `RoomOffer` or a `Hold`) with the buyer's usable claims
        (the most taken off, one voucher per slot)."""
        item = _item_of(product)
        return _best(item.unit_price_minor * quantity, await self._candidates(buyer_id, room_id, item))

    async def quote_hold(self, hold: Hold, claim_ids: Sequence[str] | None = None) -> Quote:
        """The price of a hold at checkout: with `claim_ids` (the buyer's choice; each must be usable) or the
        best of the buyer's claims for it."""
        item = _item_of(hold)
        found = await self._candidates(hold.buyer_id, hold.room_id, item, hold_id=hold.id, claim_ids=claim_ids)
        if claim_ids is not None:
            missing = sorted(set(claim_ids) - {c.id for _, c in found})
            if missing:
                raise VoucherNotUsable(
                    f"voucher claim {missing[0]} cannot be used for this hold (not yours, already used, ended, or "
                    "not for this product); check out without it or choose another"
                )
            slots = [i.slot for i, _ in found]
            if len(slots) != len(set(slots)):
                raise VoucherNotUsable("at most one seller voucher and one platform voucher per order")
        return _best(hold.total_minor, found)

    # --- checkout ---------------------------------------------------------------------------------------------

    def until_ms(self, hold: Hold, grace_ms: int) -> int:
        """How long a claim stays applied to a hold: past its payment deadline, then the worker reconciles."""
        return max(hold.expires_at_ms, now_ms() + grace_ms) + grace_ms + _CLAIM_GRACE_MS

    async def apply(self, hold: Hold, quote: Quote, grace_ms: int) -> Quote:
        """Apply the quote's claims to the hold in Redis. A claim that cannot apply (used meanwhile, another
        hold has it) is left out: the quote is worked out again without it. Returns what was applied."""
        for _ in range(3):
            failed: list[str] = []
            applied: list[QuotedVoucher] = []
            for q in quote.vouchers:
                reply = await self.store.apply(
                    q.voucher.id, q.claim_id, buyer_id=hold.buyer_id, hold_id=hold.id, discount=q.discount_minor,
                    cost=q.cost_minor, until_ms=self.until_ms(hold, grace_ms),
                )  # fmt: skip
                if reply.status is ClaimOutcome.OK:
                    applied.append(q)
                else:
                    failed.append(q.claim_id)
            if not failed:
                return quote
            await self.release_claims(hold.id, [(q.voucher.id, q.claim_id) for q in applied])
            left = [(q.voucher, _claim_stub(q)) for q in quote.vouchers if q.claim_id not in failed]
            quote = _best(hold.total_minor, left)
        return Quote(price_after(hold.total_minor, seller=None, platform=None))

    async def release_claims(self, hold_id: str, claims: Iterable[tuple[int, str]]) -> None:
        """The hold will not be paid with these claims: they are the buyer's again (best effort; the worker's
        reconcile releases what is left applied)."""
        for voucher_id, claim_id in claims:
            try:
                await self.store.release(voucher_id, claim_id, hold_id)
            except (RedisError, OSError):
                log.warning("claim %s: could not release it from hold %s", claim_id, hold_id, exc_info=True)

    async def redeem_claims(self, hold: Hold) -> None:
        """The hold was paid: its claims are used and their budgets spend the true cost (best effort)."""
        if hold.disc is None:
            return
        for voucher_id, claim_id in hold.disc.claims:
            try:
                await self.store.redeem(voucher_id, claim_id, hold.id, _recorded_cost(hold, voucher_id, claim_id))
            except (RedisError, OSError):
                log.warning("claim %s: could not redeem it for hold %s", claim_id, hold.id, exc_info=True)

    async def reconcile(self, claim: Claim) -> ClaimOutcome | None:
        """An applied claim past its `until`: redeem it when its hold was paid with it, release it when the hold
        was not (or is gone); leave it while the hold is still being paid. Returns what was done."""
        if claim.hold_id is None or self.inventory is None:
            return None
        try:
            pool = PoolId.parse(claim.hold_id)
        except ValueError:
            return (await self.store.release(claim.voucher_id, claim.id, claim.hold_id)).status
        hold = await self.inventory.hold(pool, claim.hold_id)
        if hold is not None and hold.state is HoldState.PAYING:
            return None
        paid = hold is not None and hold.state is HoldState.PAID and hold.disc is not None
        if paid and hold is not None and hold.disc is not None and (claim.voucher_id, claim.id) in hold.disc.claims:
            cost = _recorded_cost(hold, claim.voucher_id, claim.id)
            return (await self.store.redeem(claim.voucher_id, claim.id, claim.hold_id, cost)).status
        return (await self.store.release(claim.voucher_id, claim.id, claim.hold_id)).status

    async def sweep(self) -> int:
        """One round of the worker's voucher sweeper: every registered voucher's expired claims go back to its
        budget, applied claims past their `until` are reconciled. Returns the claims handled. One broken voucher
        does not stop the others (its error is raised after the round)."""
        handled = 0
        failed: list[BaseException] = []
        for voucher_id in await self.store.registered():
            try:
                swept = await self.store.sweep(voucher_id)
                handled += len(swept.expired)
                for claim in swept.stale_applied:
                    if await self.reconcile(claim) is not None:
                        handled += 1
                if not swept.stale_applied and swept.budget.reserved == 0:
                    await self._retire_if_over(voucher_id)
            except Exception as exc:  # noqa: BLE001 - reported below, after the other vouchers
                failed.append(exc)
        if failed:
            raise failed[0]
        return handled

    async def _retire_if_over(self, voucher_id: int) -> None:
        """A voucher that has ended (or whose window has passed) with nothing left reserved leaves the sweep's
        registry, its keys kept a week (`VoucherStore.retire`), so the sweeper's round does not grow with every
        voucher ever made. A later load (the window moved on) registers it again. The database unreachable: tried
        again next round."""
        try:
            info = await self.info(voucher_id)
        except (SQLAlchemyError, OSError, NotFound):
            return
        if info.status is VoucherStatus.ENDED or now_ms() >= info.ends_at_ms:
            await self.store.retire(voucher_id)


def _claim_stub(q: QuotedVoucher) -> Claim:
    return Claim(
        id=q.claim_id, voucher_id=q.voucher.id, buyer_id=0, key="", state=ClaimState.CLAIMED, reserved_minor=0,
        hold_id=None, discount_minor=0, cost_minor=0, created_at_ms=0, until_ms=None,
    )  # fmt: skip


def _best(subtotal: int, candidates: Sequence[tuple[VoucherInfo, Claim]]) -> Quote:
    """The pair (one seller-slot, one platform-slot claim, either may be absent) that takes the most off; ties go
    to the earlier claims (ids sort by claim order)."""
    sellers: list[tuple[VoucherInfo, Claim] | None] = [None]
    platforms: list[tuple[VoucherInfo, Claim] | None] = [None]
    for pair in sorted(candidates, key=lambda p: (p[1].created_at_ms, p[1].id)):
        (sellers if pair[0].slot == "seller" else platforms).append(pair)
    best: Quote | None = None
    for s in sellers:
        for p in platforms:
            price = price_after(
                subtotal, seller=None if s is None else s[0].terms, platform=None if p is None else p[0].terms
            )
            if best is not None and price.buyer_pays >= best.price.buyer_pays:
                continue
            best = Quote(
                price,
                seller=None if s is None or price.seller_voucher_discount == 0 else QuotedVoucher(
                    s[0], s[1].id, price.seller_voucher_discount, _part(s[0], price, True),
                ),
                platform=None if p is None or price.platform_voucher_discount == 0 else QuotedVoucher(
                    p[0], p[1].id, price.platform_voucher_discount, _part(p[0], price, False),
                ),
            )  # fmt: skip
    assert best is not None
    return best


def _part(info: VoucherInfo, price: Price, seller_slot: bool) -> int:
    """The platform's part of the slot's discount (what the voucher's budget pays)."""
    off = price.seller_voucher_discount if seller_slot else price.platform_voucher_discount
    return off * info.terms.platform_share_bps // 10_000


def _refusal(refused: ClaimRefused, info: VoucherInfo) -> ClientError:
    r = refused.refusal
    if r is ClaimRefusal.CLAIMED_OUT:
        return VoucherClaimedOut(f"all {refused.quota} of this voucher have been claimed")
    if r is ClaimRefusal.LIMIT:
        return VoucherLimitReached(f"you have claimed this voucher {refused.have} times: the limit is {refused.limit}")
    if r is ClaimRefusal.BUDGET_OUT:
        return VoucherBudgetSpent("this voucher's budget has been used up; no more can be claimed")
    if r is ClaimRefusal.NOT_STARTED:
        start = refused.starts_at_ms or info.starts_at_ms
        return VoucherNotStarted(f"this voucher can be claimed from {from_ms(start).strftime('%Y-%m-%d %H:%M UTC')}")
    if r in (ClaimRefusal.ENDED, ClaimRefusal.CLOSED):
        return VoucherEnded("this voucher has ended")
    if r is ClaimRefusal.NOT_LOADED:
        return ServiceUnavailable("this voucher is being set up; try again in a moment with the same key",
                                  retry_after=1.0)  # fmt: skip
    raise AssertionError(f"unhandled refusal {r}")


VOUCHERS: web.AppKey[VoucherLive] = web.AppKey("vouchers")


_VOUCHER: BindParameter[int] = bindparam("voucher", type_=Integer)
# Per buyer: the paid orders that used the voucher, and the platform discounts they record (its budget spent).
_USED = (
    select(
        Order.buyer_id,
        func.count(),
        func.coalesce(
            func.sum(case((Order.platform_voucher_id == _VOUCHER, Order.platform_discount_minor), else_=0)), 0
        ),
    )
    .where(
        or_(Order.seller_voucher_id == _VOUCHER, Order.platform_voucher_id == _VOUCHER),
        Order.status == OrderStatus.PAID,
    )
    .group_by(Order.buyer_id)
)


def _recorded_cost(hold: Hold, voucher_id: int, claim_id: str) -> int:
    """What the budget pays for a claim of a paid hold: as the hold recorded it (the order's platform discount is
    the platform slot's platform part; a seller-slot voucher is the brand's alone), never as some other checkout
    of the same hold quoted it."""
    disc = hold.disc
    assert disc is not None
    if (disc.platform_voucher_id, disc.platform_claim_id) == (voucher_id, claim_id):
        return disc.platform_funded
    return 0
