"""From a tap on Buy to a paid hold: what a buyer may buy in a room, at which price, from which pool.

A product shown in a room sells from a flash sale's pool while a sale of it runs (or is scheduled) in that
room, else from the product's own pool. Every rule that protects a unit is enforced in Redis
(`commerce.pools`); this module finds the pool, words each refusal for a person, and runs checkout:

    begin_payment (the hold becomes "paying": the sweeper waits) → provider.charge(key = hold id, so a retry
    never charges twice) → complete_payment → paid. A decline puts the hold back to "held". A charge that
    lands after the hold was released is refunded at once. A provider that does not answer leaves the hold
    "paying"; the worker asks the provider after the deadline and completes or releases it. A checkout retry
    that finds the hold "paying" (its hub may have died mid-checkout) asks the provider at once, the same way
    (`settle_by_provider`): charged → paid; not charged → it charges the same key itself.

Each offer carries its `SaleTerms` (the room's host as creator, their collaboration's commission rate in force,
the platform fee rule in force), and every reservation snapshots them into its hold in Redis: the order writer
records what the hold says, never recomputes it. Whoever changes a collaboration, a rate or the fee calls
`forget_offers`, so the next buy reads the offer (and its terms, or a refusal) again.

Room and offer lookups are cached for a second: a burst of taps must not become a burst of SQL queries.
Redis re-checks the window and the stock on every tap, so a stale cache can refuse late, never oversell.
The same caches keep their last good value while the database is down (up to five minutes), so a loaded
sale in a live room sells and is paid for through a database outage: a buy and a checkout need only Redis,
and the order writer turns the outbox into orders when the database is back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce import rooms as room_rules
from livecommerce.auth import Principal
from livecommerce.clock import from_ms, now_ms, to_ms
from livecommerce.commerce import collaborations, fees
from livecommerce.commerce.batcher import ReservationBatcher
from livecommerce.commerce.guesses import CodeGuesses
from livecommerce.commerce.payments import (
    InvalidCard,
    PaymentDeclined,
    PaymentProvider,
    refund_owed,
    settle_by_provider,
)
from livecommerce.commerce.pools import (
    Hold,
    HoldOutcome,
    HoldReply,
    HoldState,
    Inventory,
    PoolConfig,
    PoolId,
    Refusal,
    Refused,
    ReserveRequest,
)
from livecommerce.commerce.terms import SaleTerms
from livecommerce.commerce.voucher_live import Quote, VoucherLive, VoucherNotUsable
from livecommerce.errors import (
    ClientError,
    Conflict,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from livecommerce.models import (
    FlashSale,
    Product,
    RoomStatus,
    RoomVisibility,
    SaleAudience,
    SaleStatus,
    sale_rooms,
)
from livecommerce.recent import RecentCache

__all__ = [
    "BUYING",
    "Buying",
    "HoldExpired",
    "PaymentInProgress",
    "PaymentPending",
    "PurchaseRefused",
    "RoomOffer",
    "SaleNotRunning",
    "hold_wire",
]

PRODUCT_POOL_LIMIT = 10  # units one buyer may hold or buy of a product outside flash sales
PRODUCT_HOLD_MS = 10 * 60_000
PAYMENT_GRACE_MS = 60_000  # how long a hold stays "paying" before the worker asks the provider
_FOREVER_MS = 10**15 - 1
log = logging.getLogger(__name__)

_CACHE_SECONDS = 1.0  # a change made elsewhere shows within a second (or at once where we drop the key)
_STALE_SECONDS = 5.0  # served while one refresh runs, so a burst never waits on SQL
_KEEP_SECONDS = 300.0  # served while the database is down (refreshes fail), so a live sale keeps selling
_AUDIENCE = {SaleAudience.OPEN: "open", SaleAudience.INVITE_LIST: "list", SaleAudience.INVITE_CODES: "codes"}


# --- refusals, worded for buyers ------------------------------------------------------------------------------


class PurchaseRefused(ClientError):
    """The pool did not take units; each subclass's `code` names why (listed in `docs/protocol.md`)."""

    status = 409
    code = "purchase_refused"
    title = "Not bought"


class SoldOut(PurchaseRefused):
    status = 409
    code = "sold_out"
    title = "Sold out"


class NotEnoughLeft(PurchaseRefused):
    status = 409
    code = "not_enough_left"
    title = "Not enough left"


class LimitReached(PurchaseRefused):
    status = 409
    code = "limit_reached"
    title = "Limit reached"


class OverLimit(PurchaseRefused):
    status = 422
    code = "over_limit"
    title = "Too many"


class NotInvited(PurchaseRefused):
    status = 403
    code = "not_invited"
    title = "Invite only"


class InviteCodeRequired(PurchaseRefused):
    status = 403
    code = "invite_code_required"
    title = "Invite code needed"


class InviteCodeInvalid(PurchaseRefused):
    status = 403
    code = "invite_code_invalid"
    title = "Invite code not valid"


class InviteCodeUsed(PurchaseRefused):
    status = 409
    code = "invite_code_used"
    title = "Invite code used"


class SaleNotStarted(PurchaseRefused):
    status = 409
    code = "sale_not_started"
    title = "Not started yet"


class SaleEnded(PurchaseRefused):
    status = 409
    code = "sale_ended"
    title = "Sale ended"


class SaleNotOpen(PurchaseRefused):
    status = 409
    code = "sale_not_open"
    title = "Not open yet"


class KeyReused(PurchaseRefused):
    status = 422
    code = "idempotency_key_reused"
    title = "Key already used"


class SaleNotRunning(PurchaseRefused):
    """A buy names a sale (its invite code, or `sale_id`) that is not what the room sells the product from now."""

    status = 409
    code = "sale_not_running"
    title = "Sale not running"


class HoldExpired(ClientError):
    status = 410
    code = "hold_expired"
    title = "Hold expired"


class PaymentInProgress(Conflict):
    code = "payment_in_progress"
    title = "Payment in progress"


class PaymentPending(ServiceUnavailable):
    """Charged, but the hold could not be marked paid yet: the worker settles it with the provider."""

    code = "payment_pending"
    title = "Payment being confirmed"


def _clock(ms: int) -> str:
    return from_ms(ms).strftime("%H:%M:%S UTC")


def refusal_error(refused: Refused, offer: RoomOffer) -> PurchaseRefused:
    """The buyer-facing error for a pool's refusal."""
    r = refused.refusal
    if r is Refusal.SOLD_OUT:
        return SoldOut(f"{offer.title} is sold out")
    if r is Refusal.NOT_ENOUGH:
        return NotEnoughLeft(f"only {refused.available} left; ask for fewer")
    if r is Refusal.LIMIT:
        return LimitReached(f"limit of {refused.limit} per buyer reached: you already have {refused.have}")
    if r is Refusal.OVER_LIMIT:
        return OverLimit(f"at most {refused.limit} per buyer; ask for fewer")
    if r is Refusal.NOT_INVITED:
        return NotInvited("this sale is invite-only, and you are not on its list")
    if r is Refusal.CODE_REQUIRED:
        return InviteCodeRequired("this sale is invite-only: enter your invite code")
    if r is Refusal.CODE_INVALID:
        return InviteCodeInvalid("that invite code is not valid for this sale")
    if r is Refusal.CODE_USED:
        return InviteCodeUsed("that invite code has already been used")
    if r is Refusal.NOT_STARTED:
        assert refused.starts_at_ms is not None
        wait = max(1, round((refused.starts_at_ms - now_ms()) / 1000))
        return SaleNotStarted(f"the sale starts at {_clock(refused.starts_at_ms)} (in {wait} s)")
    if r in (Refusal.ENDED, Refusal.CLOSED):
        return SaleEnded("this sale has ended")
    if r is Refusal.KEY_REUSED:
        return KeyReused("this idempotency key was used for a different purchase; send a new key for each tap")
    if r is Refusal.NOT_LOADED:
        return SaleNotOpen("this sale is not open for buying yet")
    raise AssertionError(f"unhandled refusal {r}")


# --- what a room sells ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """What buying and joining need of a room, cached: it keeps serving while the database is down."""

    id: int
    status: RoomStatus
    visibility: RoomVisibility
    host_id: int
    brand_ids: frozenset[int]
    title: str
    host_name: str
    brands: tuple[tuple[int, str], ...]  # (id, name), by id
    started_at: datetime | None


@dataclass(frozen=True, slots=True)
class RoomOffer:
    """A product as sold in a room right now: its pool, price and terms (`terms`: who earns what on a sale made
    now, snapshotted into each hold)."""

    pool: PoolId
    room_id: int
    product_id: int
    brand_id: int
    title: str
    image_url: str | None
    price_minor: int
    list_price_minor: int
    currency: str
    per_buyer_limit: int
    hold_seconds: int
    terms: SaleTerms
    sale_id: int | None = None
    starts_at_ms: int | None = None
    ends_at_ms: int | None = None
    audience: str = "open"

    def as_wire(self) -> dict[str, Any]:
        sale = None
        if self.sale_id is not None:
            sale = {
                "id": self.sale_id,
                "starts_at_ms": self.starts_at_ms,
                "ends_at_ms": self.ends_at_ms,
                "audience": _AUDIENCE_WIRE.get(self.audience, self.audience),
            }
        return {
            "pool": self.pool.name,
            "price_minor": self.price_minor,
            "list_price_minor": self.list_price_minor,
            "currency": self.currency,
            "per_buyer_limit": self.per_buyer_limit,
            "hold_seconds": self.hold_seconds,
            "sale": sale,
        }


_AUDIENCE_WIRE = {"open": "open", "list": "invite_list", "codes": "invite_codes"}


def product_pool_config(product: Product) -> PoolConfig:
    """A product's own pool: open, always on, the product's price; loading it again never replaces stock."""
    return PoolConfig(
        version=to_ms(product.updated_at), product_id=product.id, brand_id=product.brand_id, sale_id=None,
        price_minor=product.price_minor, currency=product.currency, quantity=product.stock,
        per_buyer_limit=PRODUCT_POOL_LIMIT, starts_at_ms=0, ends_at_ms=_FOREVER_MS, hold_ms=PRODUCT_HOLD_MS,
    )  # fmt: skip


def hold_wire(hold: Hold, price: dict[str, Any] | None = None) -> dict[str, Any]:
    """A hold as buyers see it (REST and socket). `price`: a quote's wire (`voucher_live.Quote.as_wire`); by
    default the discounts recorded on the hold (none: its total)."""
    if price is None:
        disc = hold.disc
        vouchers = [] if disc is None else [
            {"voucher_id": v, "claim_id": c, "title": None, "discount_minor": None} for v, c in disc.claims
        ]  # fmt: skip
        seller = 0 if disc is None else disc.seller_funded
        platform = 0 if disc is None else disc.platform_funded
        price = {
            "subtotal_minor": hold.total_minor, "seller_discount_minor": seller, "platform_discount_minor": platform,
            "pay_minor": hold.pay_minor, "vouchers": vouchers,
        }  # fmt: skip
    return {
        "id": hold.id,
        "state": hold.state.value,
        "product_id": hold.product_id,
        "sale_id": hold.sale_id,
        "room_id": hold.room_id,
        "quantity": hold.quantity,
        "unit_price_minor": hold.unit_price_minor,
        "total_minor": hold.total_minor,
        "currency": hold.currency,
        "expires_at_ms": hold.expires_at_ms,
        "payment_ref": hold.payment_ref,
        "price": price,
    }


# --- the service ----------------------------------------------------------------------------------------------


class Buying:
    """One per web process: the REST routes and the hub's `buy`/`checkout`/`cancel_hold` events call it."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        inventory: Inventory,
        batcher: ReservationBatcher,
        provider: PaymentProvider,
        payment_grace_ms: int = PAYMENT_GRACE_MS,
        guesses: CodeGuesses | None = None,
    ) -> None:
        self.sessions = sessions
        self.inventory = inventory
        self.batcher = batcher
        self.provider = provider
        self.payment_grace_ms = payment_grace_ms
        self.guesses = guesses  # None: invite-code guesses are not limited (unit tests of this class)
        self.vouchers: VoucherLive | None = None  # set by app.py: checkout applies the buyer's vouchers
        self._rooms: RecentCache[int, RoomInfo] = RecentCache(
            _CACHE_SECONDS, _STALE_SECONDS, keep_seconds=_KEEP_SECONDS, name="room"
        )
        self._offers: RecentCache[tuple[int, int], RoomOffer] = RecentCache(
            _CACHE_SECONDS, _STALE_SECONDS, keep_seconds=_KEEP_SECONDS, name="offer (room, product)"
        )

    # --- lookups ----------------------------------------------------------------------------------------------

    async def room(self, room_id: int, who: Principal, *, fresh: bool = False) -> RoomInfo:
        """The room as `who` may see it (else NotFound). Cached; while the database is down, the last good
        value (up to `_KEEP_SECONDS` old). `fresh` reads the database now and fails when it is down."""
        info = await self._rooms.get(room_id, lambda: self._lookup_room(room_id), fresh=fresh)
        room_rules.require_visible(who, info)
        return info

    async def _lookup_room(self, room_id: int) -> RoomInfo:
        async with self.sessions() as session:
            room = await room_rules.load_room(session, room_id)
            if room is None:
                raise NotFound(f"no room with id {room_id}")
            brands = sorted((brand.id, brand.name) for brand in room.brands)
            return RoomInfo(
                id=room.id, status=room.status, visibility=room.visibility, host_id=room.host_id,
                brand_ids=frozenset(b for b, _ in brands), title=room.title, host_name=room.host.display_name,
                brands=tuple(brands), started_at=room.started_at,
            )  # fmt: skip

    async def room_info(self, room_id: int) -> RoomInfo:
        """The room's cached facts, for the system (no visibility check: callers that act for a person use
        `room`)."""
        return await self._rooms.get(room_id, lambda: self._lookup_room(room_id))

    def forget_room(self, room_id: int) -> None:
        """The room changed (went live, ended): look it up again next time."""
        self._rooms.drop(room_id)

    def forget_offer(self, room_id: int, product_id: int) -> None:
        """How the product sells in the room changed (a sale ended): look it up again next time."""
        self._offers.drop((room_id, product_id))

    def forget_offers(self) -> None:
        """What creators may sell, or at which commission or fee, changed: look every offer up again."""
        self._offers.clear()

    async def offer(self, room: RoomInfo, product_id: int, *, fresh: bool = False) -> RoomOffer:
        """How `product_id` sells in `room` now; loads the product's own pool into Redis when it sells outside
        a sale. `fresh` bypasses the cache (a pin must show the current terms)."""

        async def load() -> RoomOffer:
            async with self.sessions() as session:
                return await self._lookup_offer(session, room, product_id)

        return await self._offers.get((room.id, product_id), load, fresh=fresh)

    async def _lookup_offer(self, session: AsyncSession, room: RoomInfo, product_id: int) -> RoomOffer:
        product = await session.get(Product, product_id)
        if product is None:
            raise NotFound(f"no product with id {product_id}")
        at = datetime.now(UTC)
        terms = await _sale_terms(session, room, product, at)
        sale = await session.scalar(
            select(FlashSale)
            .join(sale_rooms, and_(sale_rooms.c.sale_id == FlashSale.id, sale_rooms.c.room_id == room.id))
            .where(
                FlashSale.product_id == product_id,
                FlashSale.status.in_([SaleStatus.SCHEDULED, SaleStatus.LIVE]),
                FlashSale.ends_at > at,
            )
            .order_by(FlashSale.starts_at)
            .limit(1)
        )
        if sale is not None:
            return RoomOffer(
                pool=PoolId.sale(sale.id), room_id=room.id, product_id=product.id, brand_id=product.brand_id,
                title=product.title, image_url=product.image_url, price_minor=sale.price_minor,
                list_price_minor=product.price_minor, currency=product.currency,
                per_buyer_limit=sale.per_buyer_limit, hold_seconds=sale.hold_seconds, terms=terms, sale_id=sale.id,
                starts_at_ms=to_ms(sale.starts_at), ends_at_ms=to_ms(sale.ends_at), audience=_AUDIENCE[sale.audience],
            )  # fmt: skip
        pool = PoolId.product(product.id)
        await self.inventory.load(pool, product_pool_config(product))
        return RoomOffer(
            pool=pool, room_id=room.id, product_id=product.id, brand_id=product.brand_id, title=product.title,
            image_url=product.image_url, price_minor=product.price_minor, list_price_minor=product.price_minor,
            currency=product.currency, per_buyer_limit=PRODUCT_POOL_LIMIT, hold_seconds=PRODUCT_HOLD_MS // 1000,
            terms=terms,
        )  # fmt: skip

    # --- buying -----------------------------------------------------------------------------------------------

    async def buy(
        self,
        who: Principal,
        room_id: int,
        product_id: int,
        *,
        quantity: int = 1,
        key: str | None = None,
        code: str | None = None,
        sale_id: int | None = None,
    ) -> tuple[Hold, bool]:
        """Reserve `quantity` of `product_id` as sold in `room_id`. Returns (hold, replayed): a retry with the
        same `key` gets the same hold back. A `code` or `sale_id` names a sale: when the product does not sell
        from it (or any sale) now, the buy is refused rather than made at another price."""
        room_rules.require_buyer(who)
        assert who.user_id is not None
        room = await self.room(room_id, who)
        room_rules.require_buying_open(room)
        offer = await self.offer(room, product_id)
        if not _sells_from(offer, code, sale_id):  # the cache may be a second behind: ask SQL before refusing
            offer = await self.offer(room, product_id, fresh=True)
            if not _sells_from(offer, code, sale_id):
                raise _not_running(offer, code, sale_id)
        if code and self.guesses is not None:  # only a code that reaches the pool is a try (it learns from it)
            await self.guesses.before_code(who.user_id)
        request = ReserveRequest(
            buyer_id=who.user_id,
            key=key or uuid.uuid4().hex,
            quantity=quantity,
            code=(code or "").strip().upper(),
            room_id=room.id,
            terms=offer.terms.encode(),
        )
        try:
            result = await self.batcher.reserve(offer.pool, request, new_key=key is None)
        except (RedisError, OSError):
            log.warning("reserving in %s failed", offer.pool.name, exc_info=True)
            raise ServiceUnavailable(
                "we could not reach the stock service; try again with the same key (it never takes a unit twice)"
            ) from None
        if isinstance(result, Refused):
            raise refusal_error(result, offer)
        return result.hold, result.replayed

    async def hold(self, who: Principal, hold_id: str) -> Hold:
        """The caller's own hold (staff see holds through orders)."""
        if not who.authenticated or who.user_id is None:
            raise Unauthorized("sign in to see your holds")
        pool = _pool_of(hold_id)
        hold = await self.inventory.hold(pool, hold_id)
        if hold is None or hold.buyer_id != who.user_id:
            raise NotFound(f"no hold {hold_id} of yours")
        return hold

    async def cancel(self, who: Principal, hold_id: str) -> Hold:
        if not who.authenticated or who.user_id is None:
            raise Unauthorized("sign in to manage your holds")
        reply = await self.inventory.cancel(_pool_of(hold_id), hold_id, who.user_id)
        if reply.hold is None:
            raise NotFound(f"no hold {hold_id} of yours")
        if reply.status is HoldOutcome.OK:
            return reply.hold
        if reply.status is HoldOutcome.PAYING:
            raise PaymentInProgress("this hold is being paid for; it can no longer be cancelled")
        if reply.status is HoldOutcome.PAID:
            raise Conflict("this hold is paid; ask the brand for a refund instead")
        raise Conflict(f"this hold is already {reply.status}")

    async def checkout(
        self, who: Principal, hold_id: str, card_number: str, *, claim_ids: Sequence[str] | None = None
    ) -> Hold:
        """Pay for a hold. Idempotent: paying a paid hold returns it; the provider is asked with the hold id as
        its idempotency key, so no path charges twice. With vouchers (`self.vouchers`), the buyer's claims are
        applied first (`claim_ids`, else the best of them: `VoucherLive.quote_hold`) and the discount is
        recorded on the hold as its payment begins; the provider charges `Hold.pay_minor`."""
        if not who.authenticated or who.user_id is None:
            raise Unauthorized("sign in to check out")
        pool = _pool_of(hold_id)
        applied = await self._apply_vouchers(who.user_id, pool, hold_id, claim_ids)
        try:
            begun = await self.inventory.begin_payment(
                pool, hold_id, who.user_id, self.payment_grace_ms, None if applied is None else applied.discount()
            )
        except (RedisError, OSError):
            log.warning("starting the payment of %s failed", hold_id, exc_info=True)
            await self._release_unrecorded(hold_id, applied, None)
            raise ServiceUnavailable("we could not reach the stock service; nothing was charged, try again") from None
        await self._release_unrecorded(hold_id, applied, begun.hold if begun.status is HoldOutcome.OK else None)
        if begun.hold is None:
            raise NotFound(f"no hold {hold_id} of yours")
        hold = begun.hold
        if begun.status is HoldOutcome.PAYING:  # a retry: the hub that began it may have died; the provider knows
            settled = await settle_by_provider(self.inventory, self.provider, pool, hold_id, expire=False)
            if settled.status is HoldOutcome.PAID and settled.hold is not None:
                await self._redeem(settled.hold)
                return settled.hold
            if settled.status is not HoldOutcome.PAYING:
                raise HoldExpired("your hold was released before the payment arrived; the charge was refunded")
            begun = HoldReply(HoldOutcome.OK, hold)  # not charged: charge the hold's key (the provider charges it once)
        if begun.status is HoldOutcome.PAID:
            await self._redeem(hold)
            return hold
        if begun.status is HoldOutcome.EXPIRED or hold.state is HoldState.EXPIRED:
            raise HoldExpired("your hold expired before payment and its units went back on sale; tap Buy again")
        if begun.status is not HoldOutcome.OK:
            raise Conflict(f"this hold was {hold.state.value}; tap Buy again")
        try:
            charge = await self.provider.charge(hold_id, hold.pay_minor, hold.currency, card_number)
        except (PaymentDeclined, InvalidCard):
            try:
                await self.inventory.abort_payment(pool, hold_id)  # held again until its own expiry, no vouchers
            except (RedisError, OSError):  # the decline still stands; the worker settles the hold (unpaid)
                log.warning("hold %s: could not put it back to held after a decline", hold_id, exc_info=True)
            if self.vouchers is not None and hold.disc is not None:
                await self.vouchers.release_claims(hold_id, hold.disc.claims)
            raise
        # Any other failure leaves the hold "paying": the worker asks the provider after the deadline.
        try:
            done = await self.inventory.complete_payment(pool, hold_id, charge.ref)
            if done.status in (HoldOutcome.OK, HoldOutcome.PAID) and done.hold is not None:
                await self._redeem(done.hold)
                return done.hold
            await refund_owed(self.inventory.redis, self.provider, hold_id)
        except (RedisError, OSError):
            log.warning("hold %s: charged (%s) but not yet recorded", hold_id, charge.ref, exc_info=True)
            raise PaymentPending(
                "your card was charged and we are confirming the payment; look at this hold again in a minute "
                "(it will be paid, or refunded if its units were released) — you will not be charged twice"
            ) from None
        raise HoldExpired("your hold was released before the payment arrived; the charge was refunded")

    async def _apply_vouchers(
        self, buyer_id: int, pool: PoolId, hold_id: str, claim_ids: Sequence[str] | None
    ) -> Quote | None:
        """Apply the buyer's chosen (or best) claims to a held hold not yet priced; None: no vouchers."""
        if self.vouchers is None or claim_ids == []:
            return None
        try:
            hold = await self.inventory.hold(pool, hold_id)
        except (RedisError, OSError):
            return None  # begin_payment reports the outage
        if hold is None or hold.buyer_id != buyer_id or hold.state is not HoldState.HELD or hold.disc is not None:
            return None
        quote = await self.vouchers.quote_hold(hold, claim_ids)
        if not quote.vouchers:
            return None
        try:
            applied = await self.vouchers.apply(hold, quote, self.payment_grace_ms)
        except (RedisError, OSError):
            log.warning("hold %s: could not apply vouchers; checking out without them", hold_id, exc_info=True)
            if claim_ids is not None:
                raise ServiceUnavailable("we could not reach the voucher service; nothing was charged") from None
            return None
        if claim_ids is not None and len(applied.vouchers) < len(quote.vouchers):
            await self.vouchers.release_claims(hold_id, [(q.voucher.id, q.claim_id) for q in applied.vouchers])
            raise VoucherNotUsable("a voucher you chose was used or taken meanwhile; check out again")
        return applied if applied.vouchers else None

    async def _release_unrecorded(self, hold_id: str, applied: Quote | None, hold: Hold | None) -> None:
        """Release the claims applied now that the hold did not record (its payment had begun with others, or
        did not begin)."""
        if self.vouchers is None or applied is None:
            return
        recorded = set() if hold is None or hold.disc is None else set(hold.disc.claims)
        left = [(q.voucher.id, q.claim_id) for q in applied.vouchers if (q.voucher.id, q.claim_id) not in recorded]
        if left:
            await self.vouchers.release_claims(hold_id, left)

    async def _redeem(self, hold: Hold) -> None:
        if self.vouchers is not None:
            await self.vouchers.redeem_claims(hold)


async def _sale_terms(session: AsyncSession, room: RoomInfo, product: Product, at: datetime) -> SaleTerms:
    """Who earns what on a sale of `product` in `room` at `at`: the host as creator, with the commission of their
    collaboration on it (if any) and the fee rule in force. Refuses (403) a product the room may not sell: its
    brand is not featured and the host has no collaboration terms for it."""
    creator = await collaborations.terms_for(session, creator_id=room.host_id, product=product, at=at)
    room_rules.require_sellable(room, product.brand_id, collaborating=creator is not None)
    fee = await fees.rule_in_force(session, at)
    return SaleTerms(
        creator_id=room.host_id,
        collaboration_id=None if creator is None else creator.collaboration_id,
        commission_bps=0 if creator is None else creator.rate_bps,
        fee_rule_id=fee.rule_id,
        fee_bps=fee.bps,
        fee_base=fee.base,
    )


def _sells_from(offer: RoomOffer, code: str | None, sale_id: int | None) -> bool:
    """Whether the offer sells from the sale a buy names: by `sale_id`, else (a `code`) a sale for code holders
    (Redis then checks the code belongs to it). Needs no SQL: the buy path runs from Redis and caches."""
    if sale_id is not None:
        return offer.sale_id == sale_id
    return not code or offer.audience == "codes"


def _not_running(offer: RoomOffer, code: str | None, sale_id: int | None) -> SaleNotRunning:
    named = f"sale {sale_id}" if sale_id is not None else "the sale this invite code is for"
    if offer.sale_id is None:
        return SaleNotRunning(
            f"{named} is not running in this room (it has ended, or does not show here); "
            f"{offer.title} is still on sale at its regular price: buy again without the "
            + " and ".join(name for name, value in (("code", code), ("sale_id", sale_id)) if value)
        )
    again = f"with sale_id {offer.sale_id}" if sale_id is not None else "without the code"
    return SaleNotRunning(
        f"{named} is not running in this room; {offer.title} sells from sale {offer.sale_id} now: buy again {again}"
    )


def _pool_of(hold_id: str) -> PoolId:
    try:
        return PoolId.parse(hold_id)
    except ValueError:
        raise InvalidRequest(f"{hold_id!r} is not a hold id (like s12.345 or p7.8)") from None


BUYING: web.AppKey[Buying] = web.AppKey("buying")
