"""The order writer: every pool's outbox stream, written to SQL exactly once per hold, whatever is replayed.

Each pool (`commerce.pools`) appends every change of a hold — reserved, paid, cancelled, expired — to its
outbox stream in the same atomic step that makes the change, and every entry carries the hold's whole record.
The writer reads the outboxes of all registered pools as consumer group ``order-writer`` (one consumer per
worker process), and applies each batch in one SQL transaction:

- the order is inserted by `hold_id` if it is new (``INSERT … ON CONFLICT DO NOTHING``), in the state of the
  hold's latest record in the batch (a hold reserved and paid within one batch is one INSERT, its change made now);
- for an order that already existed, a state change is applied only from ``held`` (held → paid | cancelled |
  expired), by a conditional UPDATE, and only a change that happened moves anything else: a paid
  product-pool order takes its units from
  `products.stock` and adds them to `units_sold`; a paid flash-sale order only adds to `units_sold` (the
  sale's units left the product's stock when it was scheduled); a paid order that used an invite code marks
  the code redeemed; and a paid order posts its sale to the money ledger (`commerce.ledger`, lines keyed by
  ``sale:<hold id>`` and account, inserted ``ON CONFLICT DO NOTHING``) in the same transaction.

The order is inserted with the attribution the hold snapshotted (`Hold.terms`: creator, collaboration,
commission rate, fee rule, fee rate and base), never recomputed here.

So applying any entry again — a crash between commit and acknowledgement, two workers racing for one entry,
a replayed stream — changes nothing: no counter moves twice and no ledger line is posted twice (only a move
that happened now posts, and the ledger's unique key refuses a second line besides). Entries are acknowledged
and deleted only after the commit. Entries read by a worker that died are taken over (XAUTOCLAIM) once idle
for `claim_after_ms`; a consumer reads its own pending entries before new ones. An entry SQL refuses for good
(a constraint) is moved, with the error, to the dead-letter stream ``livecommerce:orders:dead`` rather than
blocking the pool's stream forever.

After each commit, the batch's paid holds are counted in the GMV rankings (`commerce.rankings.record_paid`:
idempotent by hold id, and a Redis failure there is logged, never stopping the writer).

A missing buyer is never such a refusal: accounts are deleted by anonymising them (the row stays), and a
buyer row that is truly gone (removed by hand in SQL) is recreated first as a deleted, anonymised tombstone
with the same id, so a paid hold always becomes an order and the charge always has its order.

The outboxes are read with one XREADGROUP over all pools: on Redis Cluster the pools would have to be read
per node.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import Table, bindparam, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce.clock import from_ms
from livecommerce.commerce.ledger import SaleFacts, post_sales
from livecommerce.commerce.pools import Hold, HoldState, Inventory, PoolId
from livecommerce.commerce.rankings import Rankings, record_paid
from livecommerce.live import codec
from livecommerce.models import AccountStatus, Order, OrderStatus, Product, Role, SaleCode, User, utcnow
from livecommerce.users import DELETED_NAME, deleted_email

__all__ = ["DEAD_LETTERS", "GROUP", "OrderWriter", "apply_holds", "pool_drained"]

log = logging.getLogger(__name__)

GROUP: Final = "order-writer"
DEAD_LETTERS: Final = "livecommerce:orders:dead"
_ORDERS: Final = cast(Table, Order.__table__)
_PRODUCTS: Final = cast(Table, Product.__table__)
_CODES: Final = cast(Table, SaleCode.__table__)
_USERS: Final = cast(Table, User.__table__)
_TERMINAL: Final = {
    HoldState.PAID: OrderStatus.PAID,
    HoldState.CANCELLED: OrderStatus.CANCELLED,
    HoldState.EXPIRED: OrderStatus.EXPIRED,
}
_IN_CHUNK: Final = 500  # ids per IN (...) list


@dataclass(frozen=True, slots=True)
class _Entry:
    stream: str
    id: bytes
    fields: dict[bytes, bytes] | None  # None: deleted from the stream while pending
    hold: Hold | None  # None: deleted, or unreadable (`error` says why)
    error: str | None = None


def _entry(stream: str, entry_id: Any, fields: Any) -> _Entry:
    raw_id = entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()
    if not fields:
        return _Entry(stream, raw_id, None, None)
    fields = {k if isinstance(k, bytes) else str(k).encode(): v for k, v in fields.items()}
    try:
        return _Entry(stream, raw_id, fields, Hold.from_json(fields[b"data"]))
    except (KeyError, ValueError, TypeError) as exc:
        return _Entry(stream, raw_id, fields, None, f"unreadable outbox entry: {exc!r}")


def _when(ms: int | None) -> datetime | None:
    if ms is None:
        return None
    return from_ms(ms)


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _latest(holds: Iterable[Hold]) -> list[Hold]:
    """One record per hold: its end (paid, cancelled, expired) if the batch holds it, else the last seen."""
    out: dict[str, Hold] = {}
    for hold in holds:
        seen = out.get(hold.id)
        if seen is None or seen.state not in _TERMINAL:
            out[hold.id] = hold
    return [out[hold_id] for hold_id in sorted(out)]  # one lock order for every writer


async def apply_holds(session: AsyncSession, holds: Iterable[Hold]) -> list[Hold]:
    """Write hold records to SQL idempotently (in the caller's transaction); returns the holds whose state
    changed now (the others were already written)."""
    records = _latest(holds)
    if not records:
        return []
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await _retain_buyers(session, insert, sorted({h.buyer_id for h in records}))
    rows = [
        {
            "hold_id": h.id, "pool": h.pool.name, "sale_id": h.sale_id, "product_id": h.product_id,
            "brand_id": h.brand_id, "room_id": h.room_id, "buyer_id": h.buyer_id, "quantity": h.quantity,
            "unit_price_minor": h.unit_price_minor, "total_minor": h.total_minor, "currency": h.currency,
            "status": _TERMINAL.get(h.state, OrderStatus.HELD), "held_at": _when(h.created_at_ms),
            "expires_at": _when(h.expires_at_ms), **_ending(h),
            "creator_id": h.terms.creator_id or None, "collaboration_id": h.terms.collaboration_id,
            "commission_bps": h.terms.commission_bps, "fee_rule_id": h.terms.fee_rule_id,
            "fee_bps": h.terms.fee_bps, "fee_base": h.terms.fee_base, **_vouchers(h),
        }
        for h in records
    ]  # fmt: skip
    # A hold first seen already ended (its reserved and paid entries in one batch: the usual case under load) is
    # inserted in its final state: one statement, and its change happened now. Rows that exist are left as they
    # are here and move below, only from held.
    inserted = await session.execute(
        insert(_ORDERS).on_conflict_do_nothing(index_elements=["hold_id"]).returning(_ORDERS.c.hold_id, _ORDERS.c.id),
        rows,
    )
    order_ids: dict[str, int] = {hold_id: order_id for hold_id, order_id in inserted.all()}
    moved = [h for h in records if h.id in order_ids and h.state in _TERMINAL]
    by_id = {h.id: h for h in records}
    changed: list[Hold] = []
    for state, status in _TERMINAL.items():
        ids = [h.id for h in records if h.state is state and h.id not in order_ids]
        for chunk in _chunks(ids):
            result = await session.execute(
                update(_ORDERS)
                .where(_ORDERS.c.hold_id.in_(chunk), _ORDERS.c.status == OrderStatus.HELD)
                .values(status=status)
                .returning(_ORDERS.c.hold_id, _ORDERS.c.id)
            )
            for hold_id, order_id in result.all():
                changed.append(by_id[hold_id])
                order_ids[hold_id] = order_id
    if changed:
        changed.sort(key=lambda h: h.id)
        await session.execute(
            update(_ORDERS)
            .where(_ORDERS.c.hold_id == bindparam("b_hold"))
            .values(
                payment_ref=bindparam("b_ref"),
                paid_at=bindparam("b_paid"),
                updated_at=bindparam("b_updated"),
                **{column: bindparam(f"b_{column}") for column in _VOUCHER_COLUMNS},
            ),
            [
                {
                    "b_hold": h.id,
                    "b_ref": e["payment_ref"],
                    "b_paid": e["paid_at"],
                    "b_updated": e["updated_at"],
                    **{f"b_{column}": value for column, value in _vouchers(h).items()},
                }
                for h in changed
                for e in (_ending(h),)
            ],
        )
    moved += changed
    if not moved:
        return []
    moved.sort(key=lambda h: h.id)
    paid = [h for h in moved if h.state is HoldState.PAID]
    await post_sales(session, [_sale(h, order_ids[h.id]) for h in paid])
    taken: Counter[int] = Counter()  # units leaving products.stock (product pools)
    sold: Counter[int] = Counter()
    for hold in paid:
        sold[hold.product_id] += hold.quantity
        if hold.sale_id is None:
            taken[hold.product_id] += hold.quantity
    now = utcnow()
    for product_id in sorted(sold):
        take = taken[product_id]
        values: dict[str, Any] = {"units_sold": _PRODUCTS.c.units_sold + sold[product_id], "updated_at": now}
        if take:
            # The paid order is the fact; SQL stock edited below what Redis sold bottoms out at 0.
            values["stock"] = case((_PRODUCTS.c.stock >= take, _PRODUCTS.c.stock - take), else_=0)
        await session.execute(update(_PRODUCTS).where(_PRODUCTS.c.id == product_id).values(values))
    redeemed = [
        {"b_sale": h.sale_id, "b_code": h.code, "b_hold": h.id} for h in paid if h.code and h.sale_id is not None
    ]
    if redeemed:
        await session.execute(
            update(_CODES)
            .where(_CODES.c.sale_id == bindparam("b_sale"), _CODES.c.code == bindparam("b_code"))
            .values(redeemed_hold=bindparam("b_hold")),
            redeemed,
        )
    return moved


def _ending(hold: Hold) -> dict[str, Any]:
    """The order's payment reference and times for the hold's state (held: none yet)."""
    paid = hold.state is HoldState.PAID
    if hold.state not in _TERMINAL:
        return {"payment_ref": None, "paid_at": None, "updated_at": _when(hold.created_at_ms)}
    return {
        "payment_ref": hold.payment_ref if paid else None,
        "paid_at": _when(hold.paid_at_ms) if paid else None,
        "updated_at": _when(hold.paid_at_ms if paid else hold.ended_at_ms) or utcnow(),
    }


_VOUCHER_COLUMNS: Final = (
    "seller_discount_minor", "platform_discount_minor", "seller_voucher_id", "platform_voucher_id",
    "seller_claim_id", "platform_claim_id",
)  # fmt: skip


def _vouchers(hold: Hold) -> dict[str, Any]:
    """The order's voucher columns, from the discount recorded on the hold when its payment began (`disc`)."""
    d = hold.disc
    if d is None:
        return dict.fromkeys(_VOUCHER_COLUMNS[:2], 0) | dict.fromkeys(_VOUCHER_COLUMNS[2:])
    return {
        "seller_discount_minor": d.seller_funded, "platform_discount_minor": d.platform_funded,
        "seller_voucher_id": d.seller_voucher_id, "platform_voucher_id": d.platform_voucher_id,
        "seller_claim_id": d.seller_claim_id, "platform_claim_id": d.platform_claim_id,
    }  # fmt: skip


def _sale(hold: Hold, order_id: int) -> SaleFacts:
    paid_at = _when(hold.paid_at_ms) or utcnow()
    disc = hold.disc
    return SaleFacts(
        order_id, hold.id, hold.brand_id, hold.room_id, hold.pay_minor, hold.currency, hold.terms, paid_at,
        platform_discount=0 if disc is None else disc.platform_funded,
        seller_discount=0 if disc is None else disc.seller_funded,
    )  # fmt: skip


async def _retain_buyers(session: AsyncSession, insert: Any, buyer_ids: Sequence[int]) -> None:
    """Recreate buyers whose row is gone as deleted, anonymised tombstones, so their orders can be written
    (ids of real, once-created users: below PostgreSQL's sequence, so no later user collides with one)."""
    missing: list[int] = []
    for start in range(0, len(buyer_ids), _IN_CHUNK):
        ids = buyer_ids[start : start + _IN_CHUNK]
        found = set((await session.scalars(select(_USERS.c.id).where(_USERS.c.id.in_(ids)))).all())
        missing += [i for i in ids if i not in found]
    if not missing:
        return
    log.warning("buyer(s) %s no longer exist; their orders are recorded against deleted tombstone accounts",
                ", ".join(map(str, missing)))  # fmt: skip
    now = utcnow()
    tombstones = [
        {"id": i, "email": deleted_email(i), "display_name": DELETED_NAME, "role": Role.VIEWER, "brand_id": None,
         "status": AccountStatus.DELETED, "created_at": now, "deleted_at": now}
        for i in missing
    ]  # fmt: skip
    await session.execute(insert(_USERS).on_conflict_do_nothing(), tombstones)


async def pool_drained(redis: Redis, pool: PoolId) -> bool:
    """True when the writer has read and acknowledged everything in the pool's outbox."""
    stream = pool.outbox
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return True
        raise
    group = next((g for g in groups if codec.text(g["name"]) == GROUP), None)
    if group is None:
        return int(await redis.xlen(stream)) == 0
    if int(group["pending"]):
        return False
    last = codec.text(group["last-delivered-id"])
    return not await redis.xrange(stream, min=f"({last}", max="+", count=1)


class OrderWriter:
    """One consumer of group ``order-writer``; `step` reads and applies one batch."""

    def __init__(
        self,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        inventory: Inventory,
        *,
        consumer: str,
        claim_after_ms: int = 30_000,
        batch: int = 500,
        block_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._sessions = sessions
        self._inventory = inventory
        self.consumer = consumer
        self.claim_after_ms = claim_after_ms
        self.batch = batch
        self.block_ms = block_ms
        self._grouped: set[str] = set()
        self._pending = True  # a consumer reads its own pending entries first
        self._next_claim = 0.0
        self._next_tidy = time.monotonic() + 60
        self._rankings = Rankings(redis)

    async def step(self) -> int:
        """Read one batch (this consumer's pending entries first, then new ones, waiting up to `block_ms`),
        write it to SQL in one transaction, then acknowledge it. Returns the number of entries handled."""
        streams = await self._streams()
        if not streams:
            return 0
        if time.monotonic() >= self._next_claim:
            await self._claim(streams)
        entries: list[_Entry] = []
        if self._pending:
            entries = await self._read(streams, "0", block=None)
            self._pending = bool(entries)
        if not entries:
            entries = await self._read(streams, ">", block=self.block_ms)
        if entries:
            await self._apply(entries)
            await self._ack(entries)
        return len(entries)

    def restart(self) -> None:
        """After a failed step: read this consumer's pending entries again before new ones."""
        self._pending = True
        self._grouped.clear()

    # --- Redis ------------------------------------------------------------------------------------------------

    async def _streams(self) -> list[str]:
        streams = [pool.outbox for pool in await self._inventory.registered()]
        for stream in streams:
            if stream not in self._grouped:
                try:
                    await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._grouped.add(stream)
        self._grouped.intersection_update(streams)
        return streams

    async def _read(self, streams: list[str], from_id: str, block: int | None) -> list[_Entry]:
        try:
            reply: Any = await self._redis.xreadgroup(
                GROUP, self.consumer, dict.fromkeys(streams, from_id), count=self.batch, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("an outbox lost its consumer group (its stream was deleted?); creating it again")
            self._grouped.clear()
            return []
        items: Iterable[Any] = reply.items() if isinstance(reply, dict) else (reply or [])
        return [
            _entry(codec.text(stream), entry_id, fields) for stream, messages in items for entry_id, fields in messages
        ]

    async def _claim(self, streams: list[str]) -> None:
        """Take over entries another consumer read but did not acknowledge within `claim_after_ms`."""
        claimed = 0
        more = False
        for stream in streams:
            ids = await self._redis.xautoclaim(  # with JUSTID, redis-py returns the claimed ids only
                stream, GROUP, self.consumer, self.claim_after_ms, start_id="0-0", count=self.batch, justid=True
            )
            claimed += len(ids)
            more = more or len(ids) >= self.batch
        if claimed:
            log.warning("took over %d outbox entries from a worker that stopped answering", claimed)
            self._pending = True
        now = time.monotonic()
        self._next_claim = now if more else now + max(self.claim_after_ms / 2000, 0.1)
        if now >= self._next_tidy:
            await self._forget_idle_consumers(streams)
            self._next_tidy = now + 60

    async def _forget_idle_consumers(self, streams: list[str]) -> None:
        """Consumers of stopped workers, once nothing is pending for them, leave the group."""
        idle_ms = max(10 * self.claim_after_ms, 60_000)
        for stream in streams:
            for info in await self._redis.xinfo_consumers(stream, GROUP):
                name = codec.text(info["name"])
                if name != self.consumer and not int(info["pending"]) and int(info["idle"]) > idle_ms:
                    await self._redis.xgroup_delconsumer(stream, GROUP, name)

    async def _ack(self, entries: Sequence[_Entry]) -> None:
        by_stream: dict[str, list[bytes]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.id)
        for stream, ids in by_stream.items():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(stream, GROUP, *ids)
                pipe.xdel(stream, *ids)
                await pipe.execute()

    # --- SQL --------------------------------------------------------------------------------------------------

    async def _apply(self, entries: Sequence[_Entry]) -> None:
        unreadable = [e for e in entries if e.error is not None]
        holds = [e.hold for e in entries if e.hold is not None]
        written = holds  # committed: counted in the rankings (new or replayed: rank_add counts a hold once)
        try:
            async with self._sessions.begin() as session:
                await apply_holds(session, holds)
        except (IntegrityError, DataError):
            log.warning("an outbox batch was refused by SQL; writing its holds one at a time", exc_info=True)
            written = []
            for hold_id in sorted({h.id for h in holds}):
                mine = [e for e in entries if e.hold is not None and e.hold.id == hold_id]
                try:
                    async with self._sessions.begin() as session:
                        await apply_holds(session, [e.hold for e in mine if e.hold is not None])
                    written += [e.hold for e in mine if e.hold is not None]
                except (IntegrityError, DataError) as exc:
                    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                    await self._dead_letter(mine, reason)
        await record_paid(self._rankings, written)  # never raises: `commerce.rankings`
        await self._dead_letter(unreadable, None)

    async def _dead_letter(self, entries: Sequence[_Entry], reason: str | None) -> None:
        for entry in entries:
            why = reason or entry.error or "unknown"
            log.error("outbox entry %s of %s cannot be written to SQL (%s); moved to %s",
                      entry.id.decode(), entry.stream, why, DEAD_LETTERS)  # fmt: skip
            fields: dict[bytes | str, bytes | str] = {"stream": entry.stream, "id": entry.id, "error": why}
            for name, value in (entry.fields or {}).items():
                fields[name] = value
            await self._redis.xadd(DEAD_LETTERS, fields)  # type: ignore[arg-type]
