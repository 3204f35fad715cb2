"""WHIP ingest and WHEP playback end to end: real aiortc peers on loopback, the whole app, real Redis.

The media tests run on SQLite only (see conftest.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from livecommerce.live.store import RoomStore
from livecommerce.media.sessions import MediaService
from tests.support.media import FAST
from tests.support.peers import Publisher, Viewer, post_sdp
from tests.support.waits import until
from tests.support.world import World

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


async def video_state(redis_url: str, room_id: int) -> str | None:
    client = Redis.from_url(redis_url)
    try:
        snapshot = await RoomStore(client, "test-reader").snapshot(room_id)
    finally:
        await client.aclose()
    video = snapshot.as_wire()["video"]  # what a joining viewer gets
    return None if video is None else str(video["state"])


async def state_is(redis_url: str, room_id: int, state: str) -> bool:
    return await video_state(redis_url, room_id) == state


async def test_publisher_streams_to_two_viewers_and_delete_ends_them(
    media_client: TestClient[Any, Any], world: World, media: MediaService, redis_url: str
) -> None:
    room, token = world.ids["room"], world.api.tokens["host"]
    publisher, viewers = Publisher(), [Viewer(), Viewer()]
    try:
        answer = await publisher.publish(media_client, room, token)
        assert answer.status == 201, answer.body
        assert answer.headers["Content-Type"].startswith("application/sdp")
        assert answer.headers["Location"].startswith(f"/api/v1/rooms/{room}/whip/")
        assert answer.body.startswith("v=0")
        for viewer in viewers:
            assert (await viewer.watch(media_client, room)).status == 201  # anonymous: a public room
        await until(lambda: all(v.frames >= 10 and v.audio_frames >= 10 for v in viewers), 10, "both viewers decode")
        counts = [v.frames for v in viewers]
        await until(lambda: all(v.frames > c + 10 for v, c in zip(viewers, counts, strict=True)), 5, "frames grow")
        assert {size for v in viewers for size in v.sizes} == {(320, 240)}
        assert media.transcoders(room) == 0, "same codec: forwarded, not transcoded"
        await until(lambda: state_is(redis_url, room, "live"), 5, "the room's video is live in the hub")

        async with media_client.delete(publisher.location, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200
        await until(lambda: all("video" in v.ended for v in viewers), 5, "viewers' tracks end")
        await until(lambda: media.peer_count == 0, 5, "every server peer connection is closed")
        await until(lambda: state_is(redis_url, room, "ended"), 5, "the room's video ended in the hub")
    finally:
        await publisher.close()
        for viewer in viewers:
            await viewer.close()


def _candidate_addresses(sdp: str) -> set[str]:
    return {line.split(" ")[4] for line in sdp.split("\r\n") if line.startswith("a=candidate:")}


async def test_in_loopback_mode_every_candidate_is_on_loopback(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    publisher, viewer = Publisher(), Viewer()
    try:
        answer = await publisher.publish(media_client, world.ids["room"], world.api.tokens["host"])
        assert answer.status == 201, answer.body
        watched = await viewer.watch(media_client, world.ids["room"])
        for peer, reply in ((publisher, answer), (viewer, watched)):
            assert peer.pc.localDescription is not None
            assert _candidate_addresses(peer.pc.localDescription.sdp) == {"127.0.0.1"}  # the test's own peers
            assert _candidate_addresses(reply.body) == {"127.0.0.1"}, reply.body  # the server's
            assert "c=IN IP4 127.0.0.1" in reply.body
        await until(lambda: viewer.frames >= 5, 10, "media flows over loopback")
    finally:
        await publisher.close()
        await viewer.close()
    await until(lambda: media.peer_count == 0, 8, "all closed")


@pytest.mark.parametrize("media_config", [replace(FAST, ice_announce="192.0.2.7")])
async def test_the_announced_address_stands_for_the_bound_one_in_answers(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    """Behind a 1:1 NAT: candidates bound on 127.0.0.1 are announced as the public address."""
    viewer = Viewer()
    try:
        answer = await viewer.watch(media_client, world.ids["room"])
        assert answer.status == 201, answer.body
        assert _candidate_addresses(answer.body) == {"192.0.2.7"}, answer.body
        assert "c=IN IP4 192.0.2.7" in answer.body
        assert "127.0.0.1" not in answer.body
        async with media_client.delete(viewer.location) as response:
            assert response.status == 200
    finally:
        await viewer.close()
    await until(lambda: media.peer_count == 0, 5, "closed")


async def test_h264_is_forwarded_and_a_late_viewer_gets_a_picture(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    room, token = world.ids["room"], world.api.tokens["host"]
    publisher, early, late = Publisher(), Viewer(), Viewer()
    try:
        assert (await publisher.publish(media_client, room, token, video="video/H264")).status == 201
        assert (await early.watch(media_client, room)).status == 201
        await until(lambda: early.frames >= 30, 10, "the first viewer decodes H.264")
        # aiortc's encoder makes keyframes only when asked: the late viewer's picture depends on its keyframe
        # request reaching the publisher.
        assert (await late.watch(media_client, room)).status == 201
        # Without the keyframe request forwarded it never gets one; how fast it does is the video benchmark's.
        await until(lambda: late.frames >= 1, 5, "the late viewer decodes a picture")
        assert late.first_frame_after is not None
        assert media.transcoders(room) == 0
    finally:
        for peer in (publisher, early, late):
            await peer.close()


async def test_a_viewer_without_the_hosts_codec_gets_one_shared_transcode(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    room, token = world.ids["room"], world.api.tokens["host"]
    publisher, viewers = Publisher(), [Viewer(), Viewer()]
    try:
        assert (await publisher.publish(media_client, room, token, video="video/H264")).status == 201
        for viewer in viewers:
            assert (await viewer.watch(media_client, room, video="video/VP8")).status == 201
            assert "VP8" in viewer.pc.remoteDescription.sdp
            assert "H264" not in viewer.pc.remoteDescription.sdp
        await until(lambda: all(v.frames >= 10 for v in viewers), 10, "VP8 viewers decode the H.264 host")
        assert media.transcoders(room) == 1, "one encoder for both viewers, not one each"
    finally:
        await publisher.close()
        for viewer in viewers:
            await viewer.close()


async def test_refusals_leave_no_peer_connection_behind(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    room, host, other = world.ids["room"], world.api.tokens["host"], world.api.tokens["other_host"]
    whip = f"/api/v1/rooms/{room}/whip"
    offer = Publisher()
    offer.pc.addTransceiver("video", direction="sendonly")
    await offer.pc.setLocalDescription(await offer.pc.createOffer())
    sdp = offer.pc.localDescription.sdp
    await offer.close()

    async def problem(path: str, body: str, token: str | None, status: int, content_type: str = "application/sdp"
                      ) -> dict[str, Any]:  # fmt: skip
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with media_client.post(path, data=body.encode(), headers=headers) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            assert response.status == status, payload
            assert response.content_type == "application/problem+json"
            assert payload["status"] == status
            assert payload["detail"]
            return payload

    bad = await problem(whip, "v=0\r\nthis is not sdp\r\n", host, 400)
    assert "SDP" in bad["detail"]
    assert "v=0" in (await problem(whip, "hello", host, 400))["detail"]
    recvonly = sdp.replace("a=sendonly", "a=recvonly")
    assert "sendonly" in (await problem(whip, recvonly, host, 400))["detail"]
    await problem(whip, sdp, None, 401)
    await problem(whip, sdp, host[:-4] + "AAAA", 401)
    await problem(whip, sdp, other, 403)
    await problem(whip, sdp, world.api.tokens["viewer"], 403)
    await problem(f"/api/v1/rooms/{world.ids['private_room']}/whip", sdp, other, 404)
    await problem(whip, sdp, host, 415, content_type="application/json")
    assert media.peer_count == 0

    first, second = Publisher(), Publisher()
    try:
        assert (await first.publish(media_client, room, host)).status == 201
        conflict = await second.publish(media_client, room, host)
        assert conflict.status == 409, conflict.body
        assert "already has a publisher" in conflict.body
        assert media.peer_count == 1
        viewer_offer = sdp.replace("a=sendonly", "a=recvonly")
        await problem(f"/api/v1/rooms/{world.ids['private_room']}/whep", viewer_offer, None, 404)
        await problem(f"/api/v1/rooms/{room}/whep", sdp, None, 400)  # a viewer must receive
        assert media.peer_count == 1
        async with media_client.delete(first.location, headers={"Authorization": f"Bearer {host}"}) as response:
            assert response.status == 200
        assert media.peer_count == 0
    finally:
        await first.close()
        await second.close()


async def test_private_room_playback_needs_a_token_of_someone_who_may_see_it(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    private = world.ids["private_room"]
    for who, status in ((None, 404), ("viewer", 404), ("other_staff", 404), ("staff", 201), ("host", 201)):
        viewer = Viewer()
        try:
            token = None if who is None else world.api.tokens[who]
            answer = await viewer.watch(media_client, private, token)
            assert answer.status == status, (who, answer.body)
            if status == 201:
                async with media_client.delete(viewer.location) as response:
                    assert response.status == 200
        finally:
            await viewer.close()
    await until(lambda: media.peer_count == 0, 5, "no viewer connection left")


async def test_watching_needs_the_room_live(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    """other_room (other_host's, public) is scheduled: nobody but its host (and admins) may watch it yet."""
    room = world.ids["other_room"]
    for who, status in ((None, 409), ("viewer", 409), ("host", 409), ("other_host", 201), ("admin", 201)):
        viewer = Viewer()
        try:
            answer = await viewer.watch(media_client, room, None if who is None else world.api.tokens[who])
            assert answer.status == status, (who, answer.body)
            if status == 409:
                assert "not live yet" in answer.body, answer.body
            else:
                async with media_client.delete(viewer.location) as response:
                    assert response.status == 200
        finally:
            await viewer.close()
    await until(lambda: media.peer_count == 0, 5, "refusals leave no peer connection behind")
    await world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="other_host")
    viewer = Viewer()
    try:
        assert (await viewer.watch(media_client, room)).status == 201  # anonymous, now that it is live
        async with media_client.delete(viewer.location) as response:
            assert response.status == 200
    finally:
        await viewer.close()
    await until(lambda: media.peer_count == 0, 5, "no viewer connection left")


async def test_options_patch_and_delete_follow_whip(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    room, token = world.ids["room"], world.api.tokens["host"]
    async with media_client.options(f"/api/v1/rooms/{room}/whip") as response:
        assert response.status == 204
        assert response.headers["Accept-Post"] == "application/sdp"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
    publisher = Publisher()
    try:
        assert (await publisher.publish(media_client, room, token)).status == 201
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/trickle-ice-sdpfrag"}
        remote_ufrag = next(
            line.split(":", 1)[1] for line in publisher.pc.localDescription.sdp.splitlines()
            if line.startswith("a=ice-ufrag:")
        )  # fmt: skip
        trickle = f"a=ice-ufrag:{remote_ufrag}\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
        async with media_client.patch(publisher.location, data=trickle, headers=auth) as response:
            assert response.status == 204, await response.text()
        restart = "a=ice-ufrag:fresh\r\na=ice-pwd:0123456789012345678901\r\n"
        async with media_client.patch(publisher.location, data=restart, headers=auth) as response:
            assert response.status == 422
            assert "ICE restart" in (await response.json(content_type=None))["detail"]
        async with media_client.delete(publisher.location) as response:
            assert response.status == 401  # ending publishing takes the host's token too
        async with media_client.delete(
            publisher.location, headers={"Authorization": f"Bearer {world.api.tokens['other_host']}"}
        ) as response:
            assert response.status == 403
        async with media_client.delete(publisher.location, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200
        async with media_client.delete(publisher.location, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 404
    finally:
        await publisher.close()
    await until(lambda: media.peer_count == 0, 5, "closed")


async def test_viewers_that_vanish_without_delete_are_cleaned_up(
    media_client: TestClient[Any, Any], world: World, media: MediaService
) -> None:
    room, token = world.ids["room"], world.api.tokens["host"]
    publisher, stays, vanishes, never = Publisher(), Viewer(), Viewer(), Viewer()
    try:
        assert (await publisher.publish(media_client, room, token)).status == 201
        await until(lambda: media.task_count > 0, 2, "watchdogs run")
        for viewer in (stays, vanishes):
            assert (await viewer.watch(media_client, room)).status == 201
        await until(lambda: stays.frames >= 5 and vanishes.frames >= 5, 10, "both viewers watch")
        assert media.peer_count == 3
        tasks_with_two = media.task_count
        await vanishes.vanish()  # no DELETE, no DTLS close: the server only stops hearing receiver reports
        await until(lambda: media.peer_count == 2, 8, "the vanished viewer's connection is closed")
        await until(lambda: media.task_count < tasks_with_two, 2, "its watchdog ended")
        # An offer whose peer never connects is closed after the connect timeout (5 s here).
        never.pc.addTransceiver("video", direction="recvonly")
        await never.pc.setLocalDescription(await never.pc.createOffer())
        answer = await post_sdp(media_client, f"/api/v1/rooms/{room}/whep", never.pc.localDescription.sdp)
        assert answer.status == 201
        assert media.peer_count == 3
        await until(lambda: media.peer_count == 2, 8, "the never-connected viewer is closed")
        frames = stays.frames
        await until(lambda: stays.frames > frames + 5, 5, "the remaining viewer still watches")
    finally:
        for peer in (publisher, stays, vanishes, never):
            await peer.close()
    await until(lambda: media.peer_count == 0, 8, "all closed")


async def test_a_dropped_host_shows_reconnecting_and_the_room_resumes(
    media_client: TestClient[Any, Any], world: World, media: MediaService, redis_url: str
) -> None:
    room, token = world.ids["room"], world.api.tokens["host"]
    first, second, viewer = Publisher(), Publisher(), Viewer()
    try:
        assert (await first.publish(media_client, room, token)).status == 201
        assert (await viewer.watch(media_client, room)).status == 201
        await until(lambda: viewer.frames >= 5, 10, "the viewer watches")
        await first.vanish()
        await until(lambda: state_is(redis_url, room, "reconnecting"), 6, "the hub shows the host reconnecting")
        assert media.peer_count == 1, "the viewer stays connected"
        assert (await second.publish(media_client, room, token)).status == 201, "the dropped host is gone"
        frames = viewer.frames
        await until(lambda: viewer.frames > frames + 10, 10, "the viewer's picture resumes")
        await until(lambda: state_is(redis_url, room, "live"), 5, "the hub shows the video live again")
        assert not viewer.ended
    finally:
        for peer in (first, second, viewer):
            await peer.close()
    await until(lambda: media.peer_count == 0, 8, "all closed")


async def test_ending_the_room_ends_its_sessions(
    media_client: TestClient[Any, Any], world: World, media: MediaService, redis_url: str
) -> None:
    room, token = world.ids["room"], world.api.tokens["host"]
    publisher, viewer = Publisher(), Viewer()
    try:
        assert (await publisher.publish(media_client, room, token)).status == 201
        assert (await viewer.watch(media_client, room)).status == 201
        await until(lambda: viewer.frames >= 5, 10, "the viewer watches")
        await world.api.ok("POST", f"/api/v1/rooms/{room}/end", who="host")
        await until(lambda: "video" in viewer.ended, 5, "the viewer's track ends")
        await until(lambda: media.peer_count == 0, 5, "every session of the room is closed")
        await until(lambda: state_is(redis_url, room, "ended"), 5, "the video ended")
        again = Publisher()
        try:
            assert (await again.publish(media_client, room, token)).status == 409
        finally:
            await again.close()
    finally:
        await publisher.close()
        await viewer.close()
    await asyncio.sleep(0)
