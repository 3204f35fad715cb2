"""Room rules with two forms agree, on both databases. Visibility: SQL (`rooms.visible_to`) and Python
(`rooms.can_see`); below, who runs a room (`rooms.run_by` / `rooms.may_run`) and which brands a room sells
(`rooms.sells` / `rooms.can_sell`; a host with collaboration terms for a product sells it in any of their rooms:
`can_sell(..., collaborating=True)`).

Every kind of caller against every kind of room (public or private; featuring no brand, the caller's brand,
or another brand; hosted by the caller or not), on both databases: the rooms SQL lets through are exactly
those Python lets through, and both match the rule as the docs state it.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import selectinload

from livecommerce import rooms
from livecommerce.auth import ANONYMOUS, Principal
from livecommerce.errors import Conflict, Forbidden, NotFound
from livecommerce.models import Brand, Role, Room, RoomStatus, RoomVisibility, User, utcnow


async def _seed(engine: AsyncEngine) -> dict[str, int]:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions.begin() as session:
        ours, theirs = Brand(name="Ours", name_key="ours"), Brand(name="Theirs", name_key="theirs")
        session.add_all([ours, theirs])
        await session.flush()
        people = {
            "host": User(email="host@t.dev", display_name="Host", role=Role.HOST),
            "other_host": User(email="oh@t.dev", display_name="Other host", role=Role.HOST),
            "viewer": User(email="v@t.dev", display_name="Viewer", role=Role.VIEWER),
            "staff": User(email="s@t.dev", display_name="Staff", role=Role.BRAND_STAFF, brand_id=ours.id),
            "admin": User(email="a@t.dev", display_name="Admin", role=Role.ADMIN),
        }
        session.add_all(people.values())
        await session.flush()
        hosts = [people["host"], people["other_host"]]
        featured = [[], [ours], [theirs], [ours, theirs]]
        for visibility, host, brands in itertools.product(RoomVisibility, hosts, featured):
            session.add(
                Room(
                    title=f"{visibility.value} by {host.display_name} with {len(brands)}",
                    host_id=host.id,
                    visibility=visibility,
                    status=RoomStatus.SCHEDULED,
                    scheduled_start=utcnow() + timedelta(days=1),
                    brands=brands,
                )
            )
        return {"ours": ours.id, "theirs": theirs.id, **{name: user.id for name, user in people.items()}}


def _callers(ids: dict[str, int]) -> dict[str, Principal]:
    return {
        "anonymous": ANONYMOUS,
        "viewer": Principal(ids["viewer"], Role.VIEWER),
        "host": Principal(ids["host"], Role.HOST),
        "other_host": Principal(ids["other_host"], Role.HOST),
        "staff": Principal(ids["staff"], Role.BRAND_STAFF, ids["ours"]),
        "admin": Principal(ids["admin"], Role.ADMIN),
        # A host demoted to viewer still sees the rooms they host; a viewer's stray brand_id grants nothing.
        "former_host": Principal(ids["host"], Role.VIEWER),
        "viewer_with_brand": Principal(ids["viewer"], Role.VIEWER, ids["ours"]),
    }


def _stated_rule(who: Principal, room: Room) -> bool:
    """The rule as `docs` and the `rooms` docstring state it, written out independently."""
    featured = {brand.id for brand in room.brands}
    return (
        room.visibility is RoomVisibility.PUBLIC
        or who.role is Role.ADMIN
        or (who.user_id is not None and who.user_id == room.host_id)
        or (who.role is Role.BRAND_STAFF and who.brand_id in featured)
    )


async def test_sql_and_python_agree_for_every_caller_and_room(engine: AsyncEngine) -> None:
    ids = await _seed(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        every_room = list(
            (await session.scalars(select(Room).options(selectinload(Room.brands)).order_by(Room.id))).all()
        )
        assert len(every_room) == 2 * 2 * 4
        for name, who in _callers(ids).items():
            by_sql = set((await session.scalars(select(Room.id).where(rooms.visible_to(who)))).all())
            by_python = {room.id for room in every_room if rooms.can_see(who, room)}
            stated = {room.id for room in every_room if _stated_rule(who, room)}
            assert by_sql == by_python == stated, name
            for room in every_room:  # `require_visible` is `can_see`, with the 404 a stranger gets
                if room.id in by_python:
                    rooms.require_visible(who, room)
                else:
                    with pytest.raises(NotFound, match=f"no room with id {room.id}$"):
                        rooms.require_visible(who, room)
    # Each kind of caller sees a different set, so the comparison above distinguishes them.
    public = {room.id for room in every_room if room.visibility is RoomVisibility.PUBLIC}
    async with sessions() as session:
        anonymous = set((await session.scalars(select(Room.id).where(rooms.visible_to(ANONYMOUS)))).all())
        staff_sees = set((await session.scalars(select(Room.id).where(rooms.visible_to(_callers(ids)["staff"])))).all())
    assert anonymous == public
    assert len(staff_sees - public) == 4, "the private rooms featuring the staff's brand (2 hosts x 2 brand sets)"


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
                assert rooms.can_sell(room, brand_id, collaborating=True), "a collaborating host sells anywhere"
                rooms.require_sellable(room, brand_id, collaborating=True)
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
