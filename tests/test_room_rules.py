"""The room rules of `livecommerce.rooms`, as pure functions: who may run, moderate, chat, buy and sell."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from livecommerce import rooms
from livecommerce.auth import ANONYMOUS, Principal
from livecommerce.errors import Conflict, Forbidden, Unauthorized
from livecommerce.models import Role, RoomStatus, RoomVisibility

HOST = Principal(1, Role.HOST)
OTHER_HOST = Principal(2, Role.HOST)
ADMIN = Principal(3, Role.ADMIN)
VIEWER = Principal(4, Role.VIEWER)
STAFF = Principal(5, Role.BRAND_STAFF, brand_id=10)


@dataclass(frozen=True)
class _Room:
    id: int = 7
    status: RoomStatus = RoomStatus.LIVE
    visibility: RoomVisibility = RoomVisibility.PUBLIC
    host_id: int = HOST.user_id or 0
    brand_ids: frozenset[int] = field(default_factory=lambda: frozenset({10}))


def test_only_the_host_or_an_admin_runs_a_room() -> None:
    room = _Room()
    assert [rooms.may_run(who, room) for who in (HOST, ADMIN, OTHER_HOST, VIEWER, STAFF, ANONYMOUS)] == [
        True, True, False, False, False, False,
    ]  # fmt: skip
    rooms.require_runner(HOST, room, "end this room")
    with pytest.raises(Forbidden, match=r"^only the room's host or an admin may end this room$"):
        rooms.require_runner(OTHER_HOST, room, "end this room")
    with pytest.raises(Unauthorized, match=r"^sign in to end this room$"):
        rooms.require_runner(ANONYMOUS, room, "end this room")


def test_pinning_needs_a_live_room() -> None:
    rooms.require_live_runner(ADMIN, _Room(), "pin products")
    with pytest.raises(Conflict, match="the room is scheduled; you can pin products only while it is live"):
        rooms.require_live_runner(HOST, _Room(status=RoomStatus.SCHEDULED), "pin products")
    with pytest.raises(Forbidden):  # who comes before when
        rooms.require_live_runner(VIEWER, _Room(status=RoomStatus.ENDED), "pin products")


def test_moderators_moderate_but_only_runners_appoint() -> None:
    room = _Room()
    rooms.require_moderator(HOST, room, appointed=False, appoints=True)
    rooms.require_moderator(STAFF, room, appointed=True)
    with pytest.raises(Forbidden, match="appoint moderators"):
        rooms.require_moderator(STAFF, room, appointed=True, appoints=True)
    with pytest.raises(Forbidden, match="its moderators or an admin may moderate"):
        rooms.require_moderator(VIEWER, room, appointed=False)
    with pytest.raises(Unauthorized, match="sign in to moderate"):
        rooms.require_moderator(ANONYMOUS, room, appointed=False)


def test_chatting_and_buying_need_a_signed_in_caller_and_buying_a_live_room() -> None:
    rooms.require_chatter(VIEWER)
    rooms.require_buyer(VIEWER)
    with pytest.raises(Unauthorized, match="sign in to chat"):
        rooms.require_chatter(ANONYMOUS)
    with pytest.raises(Unauthorized, match="sign in to buy"):
        rooms.require_buyer(ANONYMOUS)
    rooms.require_buying_open(_Room())
    for status in (RoomStatus.SCHEDULED, RoomStatus.ENDED):
        with pytest.raises(rooms.RoomNotLive) as refused:
            rooms.require_buying_open(_Room(status=status))
        assert (refused.value.status, refused.value.code) == (409, "room_not_live")


def test_a_room_sells_its_featured_brands_and_what_its_host_collaborates_on() -> None:
    rooms.require_sellable(_Room(brand_ids=frozenset({10, 11})), 11)
    rooms.require_sellable(_Room(), 12, collaborating=True)
    with pytest.raises(Forbidden, match="not featured in the room") as refused:
        rooms.require_sellable(_Room(), 12)
    assert "apply to the brand's open plan" in refused.value.detail
    assert "feature the brand" in refused.value.detail
