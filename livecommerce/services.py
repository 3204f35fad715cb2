"""The domain's use cases that reach past one SQL transaction: Redis that must follow SQL, and live viewers.

Each method takes the request's `Transaction` (its session and commit/rollback hooks) and the caller, applies
the rules of `catalog`, `rooms`, `users` and `commerce.sales` in that transaction, and arranges what follows:

- a product's own pool in Redis moves with its SQL stock: units taken out now (refused while buyers hold
  them) and put back if the transaction rolls back; units added once it commits (`commerce.product_stock`);
- a committed change to a sale's window reaches its pool at once (the worker would, later), and this process's
  offer cache forgets the sale's old terms;
- a committed go-live, end or countdown is told to the room's live viewers (`rooms.RoomNotices`);
- a committed account change is announced to every process (`Accounts.announce`).

The transports (`api/`) only translate wire models to these calls and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce import catalog, rooms, users
from livecommerce.accounts import Accounts
from livecommerce.auth import Principal
from livecommerce.commerce import sales
from livecommerce.commerce.buying import Buying
from livecommerce.commerce.loading import load_sale, to_ms
from livecommerce.commerce.product_stock import give_units, take_units
from livecommerce.models import Product, Role, Room, SaleStatus, User
from livecommerce.transaction import Transaction

__all__ = ["SERVICES", "Services"]


class Services:
    """One per web process (`SERVICES`), built in `app.py` with the live-rooms notices it should use."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        buying: Buying,
        accounts: Accounts,
        notices: rooms.RoomNotices,
    ) -> None:
        self.sessions = sessions
        self.buying = buying
        self.accounts = accounts
        self.notices = notices

    # --- products -----------------------------------------------------------------------------------------

    async def update_product(
        self, tx: Transaction, who: Principal, product_id: int, changes: Mapping[str, Any]
    ) -> Product:
        """`catalog.update_product`, with the product's live pool following a change of stock."""
        before = (await catalog.get_product(tx.session, product_id)).stock
        product = await catalog.update_product(tx.session, who, product_id, changes)
        await self._follow_stock(tx, product.id, product.stock - before)
        return product

    async def _follow_stock(self, tx: Transaction, product_id: int, delta: int) -> None:
        """Move the product's live pool (if any) by the `delta` this transaction makes to its SQL stock:
        removals now, undone if it rolls back (409 when buyers hold the units); additions once it commits."""
        inventory = self.buying.inventory
        if delta < 0:
            await take_units(inventory, product_id, -delta)
            tx.on_rollback(lambda: give_units(inventory, product_id, -delta))
        elif delta > 0:
            tx.on_commit(lambda: give_units(inventory, product_id, delta))

    # --- rooms --------------------------------------------------------------------------------------------

    async def go_live(self, tx: Transaction, who: Principal, room_id: int) -> Room:
        room = await rooms.go_live(tx.session, who, room_id)
        self._announce_status(tx, room)
        return room

    async def end_room(self, tx: Transaction, who: Principal, room_id: int) -> Room:
        """End a live room, or cancel a scheduled one; its viewers hear it once committed."""
        room = await rooms.end_room(tx.session, who, room_id)
        self._announce_status(tx, room)
        return room

    def _announce_status(self, tx: Transaction, room: Room) -> None:
        notices = self.notices
        tx.on_commit(lambda: notices.room_status_changed(room))

    # --- flash sales --------------------------------------------------------------------------------------

    async def schedule_sale(self, tx: Transaction, who: Principal, sale_id: int) -> sales.SaleView:
        """Schedule a draft; its quantity leaves the product's stock (and the product's live pool)."""
        view = await sales.schedule_sale(tx.session, who, sale_id)
        await self._follow_stock(tx, view.sale.product_id, -view.sale.quantity)
        return view

    async def cancel_sale(self, tx: Transaction, who: Principal, sale_id: int) -> sales.SaleView:
        """Cancel a draft, or a scheduled sale (whose quantity returns to the product's stock)."""
        was_scheduled = (await sales.get_sale(tx.session, who, sale_id)).sale.status is SaleStatus.SCHEDULED
        view = await sales.cancel_sale(tx.session, who, sale_id)
        if was_scheduled:
            await self._follow_stock(tx, view.sale.product_id, view.sale.quantity)
        return view

    async def end_sale(self, tx: Transaction, who: Principal, sale_id: int) -> sales.SaleView:
        """End a started sale now: once committed its pool stops taking reservations, and this process's
        buyers see the product's new terms at once (others within the offer cache's second)."""
        view = await sales.end_sale(tx.session, who, sale_id)
        tx.on_commit(lambda: self._reload_sale(sale_id))
        tx.on_commit(lambda: self._forget_offers(view))
        return view

    async def countdown(
        self, tx: Transaction, who: Principal, sale_id: int, room_id: int, seconds: int
    ) -> sales.Countdown:
        """Start a scheduled sale `seconds` from now; once committed the pool's window follows, then the room's
        viewers hear when it starts."""
        started = await sales.countdown(tx.session, who, sale_id, room_id, seconds)
        starts_at_ms, notices = to_ms(started.starts_at), self.notices
        tx.on_commit(lambda: self._reload_sale(sale_id))
        tx.on_commit(lambda: notices.announce_countdown(started.room_id, sale_id, starts_at_ms))
        return started

    async def _reload_sale(self, sale_id: int) -> None:
        async with self.sessions() as session:
            await load_sale(self.buying.inventory, session, sale_id)

    async def _forget_offers(self, view: sales.SaleView) -> None:
        for room_id in view.room_ids:
            self.buying.forget_offer(room_id, view.sale.product_id)

    # --- accounts -----------------------------------------------------------------------------------------

    async def change_role(
        self, tx: Transaction, who: Principal, user_id: int, *, role: Role, brand_id: int | None
    ) -> User:
        user = await users.change_role(tx.session, who, user_id, role=role, brand_id=brand_id)
        return self._announce_account(tx, user)

    async def suspend_user(self, tx: Transaction, who: Principal, user_id: int) -> User:
        return self._announce_account(tx, await users.suspend_user(tx.session, who, user_id))

    async def reinstate_user(self, tx: Transaction, who: Principal, user_id: int) -> User:
        return self._announce_account(tx, await users.reinstate_user(tx.session, who, user_id))

    async def delete_user(self, tx: Transaction, who: Principal, user_id: int) -> User:
        return self._announce_account(tx, await users.delete_user(tx.session, who, user_id))

    def _announce_account(self, tx: Transaction, user: User) -> User:
        """Once committed, every process applies the change: REST at once, open sockets re-authorised or closed."""
        accounts, user_id = self.accounts, user.id
        tx.on_commit(lambda: accounts.announce(user_id))
        return user


SERVICES: web.AppKey[Services] = web.AppKey("services")
