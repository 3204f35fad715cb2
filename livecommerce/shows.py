"""The host's tools in a live show: pin and unpin a product, moderate the room's chat.

Each use case checks its rule (`rooms`) against the room as it is now, does the work (the offer and stock a pin
shows come from `commerce.buying`; moderation lists live in the room's Redis store) and publishes what viewers
see through `LiveRooms`. The socket hub only validates the wire event and calls these; a REST route for the
same action would call the same function.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce import rooms
from livecommerce.auth import Principal
from livecommerce.commerce.buying import Buying
from livecommerce.errors import InvalidRequest, NotFound
from livecommerce.live import events as ev
from livecommerce.live.events import Event
from livecommerce.live.rooms import LiveRooms
from livecommerce.models import Product, Room

__all__ = ["MODERATOR_APPOINTMENTS", "Shows"]

# Only the room's host (or an admin) appoints moderators; appointed moderators do the rest.
MODERATOR_APPOINTMENTS = frozenset({"add_moderator", "remove_moderator"})


class Shows:
    """One per web process (the hub holds it)."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], buying: Buying, live: LiveRooms) -> None:
        self.sessions = sessions
        self.buying = buying
        self.live = live

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
        return await self.live.publish(room.id, shown)

    async def unpin(self, who: Principal, room_id: int) -> Event:
        room = await self._room(who, room_id)
        rooms.require_live_runner(who, room, "unpin products")
        return await self.live.publish(room.id, ev.unpinned(room.id))

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
