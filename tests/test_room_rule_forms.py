"""Room rules written in two forms agree, on both databases: who runs a room (`rooms.run_by` in SQL,
`rooms.may_run` in Python) and which brands a room sells (`rooms.sells` / `rooms.can_sell`).

The same grid as `test_room_visibility`: every kind of caller and every brand against rooms public or private,
featuring no brand, one brand or both, hosted by one host or the other.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import selectinload

from livecommerce import rooms
from livecommerce.errors import Conflict, Forbidden
from livecommerce.models import Room, RoomStatus
from tests.test_room_visibility import _callers, _seed


async def _every_room(engine: AsyncEngine) -> list[Room]:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        query = select(Room).options(selectinload(Room.brands)).order_by(Room.id)
        return list((await session.scalars(query)).all())


async def test_run_by_and_may_run_agree_for_every_caller_and_room(engine: AsyncEngine) -> None:
    ids = await _seed(engine)
    every_room = await _every_room(engine)
    runs = {}
    async with async_sessionmaker(engine)() as session:
        for name, who in _callers(ids).items():
            by_sql = set((await session.scalars(select(Room.id).where(rooms.run_by(who)))).all())
            by_python = {room.id for room in every_room if rooms.may_run(who, room)}
            assert by_sql == by_python, name
            runs[name] = by_sql
    everything = {room.id for room in every_room}
    hosted = {room.id for room in every_room if room.host_id == ids["host"]}
    assert runs["admin"] == everything
    assert runs["host"] == runs["former_host"] == hosted
    assert runs["other_host"] == everything - hosted
    assert runs["anonymous"] == runs["viewer"] == runs["staff"] == set()


async def test_sells_and_can_sell_agree_for_every_brand_and_room(engine: AsyncEngine) -> None:
    ids = await _seed(engine)
    every_room = await _every_room(engine)
    async with async_sessionmaker(engine)() as session:
        for brand_id in (ids["ours"], ids["theirs"], ids["theirs"] + 1000):
            by_sql = set((await session.scalars(select(Room.id).where(rooms.sells(brand_id)))).all())
            by_python = {room.id for room in every_room if rooms.can_sell(room, brand_id)}
            stated = {room.id for room in every_room if brand_id in {brand.id for brand in room.brands}}
            assert by_sql == by_python == stated, brand_id
            assert len(by_sql) == (0 if brand_id > ids["theirs"] else 8), "half the rooms feature each brand"
            for room in every_room:  # `require_sellable` is `can_sell`, with the 403
                if room.id in by_python:
                    rooms.require_sellable(room, brand_id)
                else:
                    with pytest.raises(Forbidden, match="brand is not featured in the room"):
                        rooms.require_sellable(room, brand_id)


async def test_an_ended_room_is_final_alone_or_among_several(engine: AsyncEngine) -> None:
    await _seed(engine)
    first, second, third = (await _every_room(engine))[:3]
    rooms.require_not_ended(first, "; never raised")
    rooms.require_not_ended([first, second], "; never raised")
    first.status = second.status = RoomStatus.ENDED
    with pytest.raises(Conflict, match=r"^this room has ended; go elsewhere$"):
        rooms.require_not_ended(first, "; go elsewhere")
    with pytest.raises(Conflict, match=rf"^room {first.id}, {second.id} has ended; drop them$"):
        rooms.require_not_ended([first, second, third], "; drop them")
