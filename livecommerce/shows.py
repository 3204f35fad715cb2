"""The host's tools in a live show: pin and unpin a product or a voucher, moderate the room's chat.

Each use case checks its rule (`rooms`) against the room as it is now, does the work (the offer and stock a pin
shows come from `commerce.buying`; moderation lists live in the room's Redis store) and publishes what viewers
see through `LiveRooms`. The socket hub only validates the wire event and calls these; a REST route for the
same action would call the same function.

The pin card shows a product or a voucher. A voucher may be pinned in a room when it is active and running and
the room may sell its brand (`rooms.can_sell`: featured, or the host collaborates on its product), or when it
is a platform voucher for any brand. Pinning it loads it into Redis and marks it pinned in the room for this
show (`VoucherLive`, the live voucher service), so viewers may claim it. A product pin also records the
room's last pinned product (`livecommerce:{room:ID}:last_product`): a claim's ack quotes the price after
vouchers for it while the voucher card is shown.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce import rooms
from livecommerce.auth import Principal
from livecommerce.commerce.buying import Buying
from livecommerce.commerce.collaborations import terms_for
from livecommerce.commerce.voucher_live import VoucherLive, claim_wire
from livecommerce.commerce.vouchers import get_voucher
from livecommerce.errors import Conflict, Forbidden, InvalidRequest, NotFound
from livecommerce.live import events as ev
from livecommerce.live.events import Event, Payload
from livecommerce.live.rooms import LiveRooms
from livecommerce.live.store import room_key
from livecommerce.models import Funding, Product, Room, Voucher, VoucherStatus, utcnow
from livecommerce.recent import RecentCache

__all__ = ["MODERATOR_APPOINTMENTS", "Shows"]

# Only the room's host (or an admin) appoints moderators; appointed moderators do the rest.
MODERATOR_APPOINTMENTS = frozenset({"add_moderator", "remove_moderator"})


_LAST_PRODUCT_SECONDS = 24 * 3600  # a show's last pinned product is forgotten a day after it was pinned


class Shows:
    """One per web process (the hub holds it). Without `vouchers`, pinning a voucher is refused."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        buying: Buying,
        live: LiveRooms,
        vouchers: VoucherLive | None = None,
    ) -> None:
        self.sessions = sessions
        self.buying = buying
        self.live = live
        self.vouchers = vouchers
        # A claim's ack quotes the room's last pinned product: read from Redis at most once a second per room (a
        # pin in another process shows within that), not once per claim of a burst.
        self._last_product: RecentCache[int, int | None] = RecentCache(1.0, 5.0, name="room's last pinned product")

    async def _room(self, who: Principal, room_id: int) -> Room:
        async with self.sessions() as session:
            return await rooms.get_room(session, who, room_id)

    async def pin(self, who: Principal, room_id: int, product_id: int) -> Event:
        """Show a product to the room's viewers with its price, offer and stock (host or admin, room live)."""
        room = await self._room(who, room_id)
        rooms.require_live_runner(who, room, "pin products")
        async with self.sessions() as session:
            product = await session.get(Product, product_id)
        if product is None:
            raise NotFound(f"no product with id {product_id}")
        self.buying.forget_room(room.id)  # the offer's lookup applies `rooms.require_sellable` to the room now
        offer = await self.buying.offer(await self.buying.room(room.id, who), product.id, fresh=True)
        stock = (await self.buying.inventory.stock([offer.pool])).get(offer.pool)
        shown = ev.pinned(
            room.id,
            product,
            price_minor=offer.price_minor,
            stock=stock.available if stock is not None else 0,
            offer=offer.as_wire(),
        )
        key = room_key(room.id, "last_product")
        await self.buying.inventory.redis.set(key, product.id, ex=_LAST_PRODUCT_SECONDS)
        self._last_product.drop(room.id)
        return await self.live.publish(room.id, shown)

    async def last_product(self, room_id: int) -> int | None:
        """The product pinned last in the room (this show), if any: what a claim's ack quotes."""

        async def load() -> int | None:
            raw = await self.buying.inventory.redis.get(room_key(room_id, "last_product"))
            return None if raw is None else int(raw)

        return await self._last_product.get(room_id, load)

    # --- vouchers ---------------------------------------------------------------------------------------------

    async def _usable(self, session: AsyncSession, room: Room, voucher: Voucher) -> bool:
        """May the room show this voucher: a platform voucher for any brand, or a voucher for a brand the room
        may sell (featured, or for a product the host collaborates on)."""
        if voucher.brand_id is None:
            return voucher.funding is Funding.PLATFORM
        if rooms.can_sell(room, voucher.brand_id):
            return True
        if voucher.product_id is None:  # collaborations are per product: a brand-wide voucher needs the brand
            return False
        product = await session.get(Product, voucher.product_id)
        return product is not None and await terms_for(session, creator_id=room.host_id, product=product,
                                                       at=utcnow()) is not None  # fmt: skip

    async def _left(self, voucher_ids: list[int], quotas: dict[int, int]) -> dict[int, int]:
        """Claims left per voucher: its quota less what Redis counted (the quota while not yet loaded)."""
        left = {}
        for voucher_id in voucher_ids:
            budget = None if self.vouchers is None else await self.vouchers.budget(voucher_id)
            left[voucher_id] = max(0, quotas[voucher_id] - (0 if budget is None else budget.claimed))
        return left

    async def room_vouchers(self, who: Principal, room_id: int) -> list[Payload]:
        """The vouchers the room's host may pin now (host or admin): active, running, usable in the room; each
        as its pin card with `funding`, `platform_share_bps`, `brand_id` and `product_id` added."""
        now = utcnow()
        async with self.sessions() as session:
            room = await rooms.get_room(session, who, room_id)
            rooms.require_runner(who, room, "list the vouchers you can pin")
            query = (
                select(Voucher)
                .where(
                    Voucher.status == VoucherStatus.ACTIVE, Voucher.ends_at > now, Voucher.starts_at <= now,
                    or_(Voucher.brand_id.is_(None), Voucher.brand_id.in_(room.brand_ids),
                        Voucher.product_id.is_not(None)),
                )
                .order_by(Voucher.id)
            )  # fmt: skip
            usable = [v for v in (await session.scalars(query)).all() if await self._usable(session, room, v)]
        left = await self._left([v.id for v in usable], {v.id: v.quota for v in usable})
        return [
            {**ev.voucher_card(v, left=left[v.id]), "funding": str(v.funding),
             "platform_share_bps": v.platform_share_bps, "brand_id": v.brand_id, "product_id": v.product_id}
            for v in usable
        ]  # fmt: skip

    async def pin_voucher(self, who: Principal, room_id: int, voucher_id: int) -> Event:
        """Show a voucher card to the room's viewers (host or admin, room live): it must be active, running and
        usable in the room. Loads it into Redis and marks it pinned this show, so viewers may claim it."""
        async with self.sessions() as session:
            room = await rooms.get_room(session, who, room_id)
            rooms.require_live_runner(who, room, "pin vouchers")
            voucher = await get_voucher(session, who, voucher_id)
            now = utcnow()
            if voucher.status is not VoucherStatus.ACTIVE or voucher.ends_at <= now:
                raise Conflict(f"voucher {voucher.id} has ended; pin a running voucher")
            if voucher.starts_at > now:
                raise Conflict(f"voucher {voucher.id} starts at {voucher.starts_at.isoformat()}; pin it from then")
            if not await self._usable(session, room, voucher):
                raise Forbidden(
                    f"voucher {voucher.id} is for a brand this room does not sell: feature the brand in the room, "
                    "or collaborate on the voucher's product, or pin a voucher of a featured brand"
                )
        if self.vouchers is None:
            raise Conflict("vouchers cannot be pinned on this server (the live voucher service is not running)")
        await self.vouchers.ensure_loaded(voucher.id)
        await self.vouchers.mark_pinned(room.id, voucher.id)
        left = (await self._left([voucher.id], {voucher.id: voucher.quota}))[voucher.id]
        return await self.live.publish(room.id, ev.pinned_voucher(room.id, voucher, left=left))

    async def unpin(self, who: Principal, room_id: int) -> Event:
        room = await self._room(who, room_id)
        rooms.require_live_runner(who, room, "unpin products")
        return await self.live.publish(room.id, ev.unpinned(room.id))

    def _voucher_service(self) -> VoucherLive:
        if self.vouchers is None:
            raise Conflict("vouchers are not available on this server (the live voucher service is not running)")
        return self.vouchers

    async def claim_voucher(self, who: Principal, room_id: int, voucher_id: int, key: str) -> Payload:
        """Claim a voucher pinned in the room this show (the rules: `VoucherLive.claim`); with the quote for the
        product pinned last in the room, if any (null otherwise, or when that product no longer sells here)."""
        claim, replayed = await self._voucher_service().claim(who, room_id, voucher_id, key)
        product_id = await self.last_product(room_id)
        quote = None
        if product_id is not None:
            try:
                quote = await self.quote(who, room_id, product_id, 1)
            except (NotFound, Forbidden, Conflict):
                quote = None
        return {"claim": claim_wire(claim), "replayed": replayed, "quote": quote}

    async def quote(self, who: Principal, room_id: int, product_id: int, quantity: int) -> Payload:
        """The price after the caller's best usable claims for `quantity` of a product the room sells
        (`Quote.as_wire()`: subtotal, seller and platform discounts, what the buyer pays, the vouchers used)."""
        rooms.require_buyer(who)
        assert who.user_id is not None
        room = await self.buying.room(room_id, who)
        offer = await self.buying.offer(room, product_id)
        quote = await self._voucher_service().quote(who.user_id, room.id, offer, quantity)
        return quote.as_wire()

    async def moderate(
        self,
        who: Principal,
        room_id: int,
        action: str,
        *,
        user_id: int | None = None,
        seconds: int | None = None,
        message_id: str | None = None,
        words: list[str] | None = None,
    ) -> None:
        """One moderation action (the hub's `moderate` event documents each; the arguments it needs are given)."""
        room = await self._room(who, room_id)
        appointed = not rooms.may_run(who, room) and (
            who.user_id is not None and await self.live.store.is_moderator(room.id, who.user_id)
        )
        rooms.require_moderator(who, room, appointed=appointed, appoints=action in MODERATOR_APPOINTMENTS)
        store = self.live.store
        if action == "mute" and user_id is not None and seconds is not None:
            await store.mute(room.id, user_id, seconds)
        elif action == "unmute" and user_id is not None:
            await store.unmute(room.id, user_id)
        elif action == "ban" and user_id is not None:
            await store.ban(room.id, user_id)
        elif action == "unban" and user_id is not None:
            await store.unban(room.id, user_id)
        elif action == "delete" and message_id is not None:
            if await self.live.delete_chat(room.id, message_id) is None:
                raise NotFound(f"no chat message {message_id} in this room (already deleted?)")
        elif action == "slow_mode" and seconds is not None:
            await store.set_slow_mode(room.id, seconds)
            await self.live.publish(room.id, ev.chat_settings(room.id, seconds))
        elif action == "block_words" and words is not None:
            await store.set_blocked_words(room.id, [word.casefold() for word in words])
        elif action == "add_moderator" and user_id is not None:
            await store.add_moderator(room.id, user_id)
        elif action == "remove_moderator" and user_id is not None:
            await store.remove_moderator(room.id, user_id)
        else:
            raise InvalidRequest(
                f"the moderation action {action!r} is unknown or lacks what it needs (docs/protocol.md)"
            )
