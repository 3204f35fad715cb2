"""LIVE video sessions: one publisher and its viewers per room, their peer connections and their lifetimes.

`MediaService` (one per web process, a `cleanup_ctx` of the app) owns every peer connection it creates and
every task it starts, and closes them all at shutdown. Per room a `_VideoRoom` holds the publisher (WHIP),
the viewers (WHEP), the room's video state and, only when some viewer cannot take the publisher's codec, one
shared `Transcoder` per codec.

Video state, announced to the room through the hub (a `video` event, and the `video` state field that a
join's snapshot carries): `live` at the publisher's first frame; `reconnecting` when the publisher's
connection fails, closes or goes silent without a DELETE (viewers stay connected and resume when the host
publishes again within `reconnect_grace`); `ended` when the publisher deletes its session, the grace runs
out or the room ends (every session of the room is closed).

One publisher per room across processes: a Redis lock per room (`livecommerce:{room:ID}:video_publisher`),
kept alive by its process, released when the publisher goes; a crashed process's lock expires by itself.
The media of a room is served by the process its publisher is on: a viewer must reach that process.

A peer connection is closed when its session is deleted, when its connection fails or closes, when it has
not connected within `connect_timeout`, and for viewers when they stop sending RTCP receiver reports for
`viewer_timeout` while media flows (a viewer that vanished without a DELETE).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcpeerconnection import is_codec_compatible
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from livecommerce.errors import ClientError, Conflict, MalformedRequest, NotFound, ServiceUnavailable
from livecommerce.live import events as ev
from livecommerce.live.events import Event
from livecommerce.live.rooms import LiveRooms
from livecommerce.live.store import room_key
from livecommerce.media import forwarding as fw
from livecommerce.media import ice

__all__ = ["VIDEO", "MediaConfig", "MediaService", "VideoState"]

log = logging.getLogger(__name__)

VIDEO: Final = ev.VIDEO  # the room event and state field: {"room_id", "state", "ts"}
VideoState = Literal["live", "reconnecting", "ended"]
Kind = Literal["audio", "video"]
_KINDS: Final[tuple[Kind, ...]] = ("audio", "video")
_FRAME_STEP: Final = {"video": 3000, "audio": 960}  # one frame at 30 fps (90 kHz), 20 ms of Opus (48 kHz)


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Limits and timeouts of the media sessions (seconds unless named otherwise)."""

    keyframe_interval: float = 0.4  # at most one keyframe request to a publisher per interval
    video_queue_frames: int = 60  # a viewer this far behind skips to the next keyframe (~2 s at 30 fps)
    audio_queue_packets: int = 50  # ~1 s of Opus
    connect_timeout: float = 15.0  # a peer that has not connected by then is closed
    viewer_timeout: float = 10.0  # a viewer silent (no RTCP) this long while media flows is closed
    publisher_timeout: float = 5.0  # a publisher sending nothing this long has dropped: "reconnecting"
    reconnect_grace: float = 120.0  # how long viewers wait for a dropped publisher before the video ends
    max_viewers_per_room: int = 1000
    transcode_bitrate: int = 1_500_000
    ice_servers: tuple[str, ...] = ()  # STUN/TURN URLs for the server's candidates; none by default
    lock_ttl: float = 10.0  # the publisher lock's expiry; refreshed every third of it
    ice_address: str | None = None  # the one address ICE binds (process-wide, see media/ice.py); None: every one
    ice_announce: str | None = None  # announced in answers instead of ice_address (1:1 NAT); None: as bound


@dataclass(frozen=True, slots=True)
class Offer:
    """A parsed SDP offer: the media it carries, each kind's offered codecs (in preference order)."""

    sdp: str
    kinds: dict[Kind, list[RTCRtpCodecParameters]]
    directions: dict[Kind, str]


def parse_offer(text: str, *, role: Literal["publisher", "viewer"]) -> Offer:
    """Validate an SDP offer for a publisher (sends media) or a viewer (receives it); 400 saying what is wrong."""
    if not text.strip():
        raise MalformedRequest("the body is empty; send an SDP offer (Content-Type: application/sdp)")
    if not text.lstrip().startswith("v=0"):
        raise MalformedRequest("the body is not an SDP offer: it must start with 'v=0'")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:  # noqa: BLE001 - aiortc's parser raises anything on garbage: all of it is a bad offer
        raise MalformedRequest(f"the SDP offer could not be parsed: {exc or type(exc).__name__}") from None
    kinds: dict[Kind, list[RTCRtpCodecParameters]] = {}
    directions: dict[Kind, str] = {}
    wanted = ("sendonly", "sendrecv") if role == "publisher" else ("recvonly", "sendrecv")
    for media in description.media:
        if media.kind not in _KINDS:
            continue
        kind: Kind = "audio" if media.kind == "audio" else "video"
        if kind in kinds:
            raise MalformedRequest(f"the SDP offer has more than one {kind} section; send one audio and one video")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise MalformedRequest(f"the SDP offer's {kind} section has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
        if not media.dtls or not media.dtls.fingerprints:
            raise MalformedRequest(f"the SDP offer's {kind} section has no DTLS fingerprint")
        if not media.rtcp_mux:
            raise MalformedRequest(f"the SDP offer's {kind} section must use RTCP multiplexing (a=rtcp-mux)")
        if media.direction not in wanted:
            raise MalformedRequest(
                f"the SDP offer's {kind} section is {media.direction}; a {role} must offer {' or '.join(wanted)}"
            )
        kinds[kind] = [codec for codec in media.rtp.codecs if codec.mimeType.lower() != f"{kind}/rtx"]
        directions[kind] = media.direction
    if not kinds:
        raise MalformedRequest("the SDP offer has no audio or video section")
    for kind, codecs in kinds.items():
        if fw.capability_for(kind, _first(codecs, kind)) is None:
            names = ", ".join(sorted({c.mimeType for c in codecs})) or "none"
            supported = "H.264 (baseline, packetization-mode 1) or VP8" if kind == "video" else "Opus"
            raise MalformedRequest(f"the SDP offer's {kind} codecs ({names}) include no {supported}")
    return Offer(text, kinds, directions)


def _first(codecs: list[RTCRtpCodecParameters], kind: str) -> RTCRtpCodecParameters:
    """The first offered codec aiortc can use (a placeholder that matches nothing when there is none)."""
    for codec in codecs:
        if fw.capability_for(kind, codec) is not None:
            return codec
    return RTCRtpCodecParameters(mimeType=f"{kind}/none", clockRate=0)


# --- peers ------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Peer:
    id: str
    room: _VideoRoom
    pc: RTCPeerConnection
    created: float = field(default_factory=time.monotonic)
    closed: bool = False
    watchdog: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Publisher(_Peer):
    user_id: int | None = None
    lock: Lock | None = None
    taps: dict[Kind, fw.Tap] = field(default_factory=dict)
    codecs: dict[Kind, RTCRtpCodecParameters] = field(default_factory=dict)  # what each kind actually carries
    last_frame: float | None = None
    frames: int = 0


@dataclass(eq=False)
class _Viewer(_Peer):
    tracks: dict[Kind, fw.PacketTrack] = field(default_factory=dict)
    codecs: dict[Kind, RTCRtpCodecParameters] = field(default_factory=dict)  # what each kind negotiated
    transceivers: dict[Kind, RTCRtpTransceiver] = field(default_factory=dict)
    last_report: float | None = None


@dataclass(eq=False)
class _Shared:
    """A decode-once, encode-once transcoder and its task."""

    transcoder: fw.Transcoder
    task: asyncio.Task[None] | None = None
    source: fw.Tap | None = None


class _VideoRoom:
    def __init__(self, service: MediaService, room_id: int) -> None:
        self.service = service
        self.id = room_id
        self.publisher: _Publisher | None = None
        self.claimed = False  # a publish is being set up
        self.viewers: dict[str, _Viewer] = {}
        self.state: VideoState | None = None
        self.codecs: dict[Kind, RTCRtpCodecParameters] = {}  # the last publisher's codecs, for new viewers
        self.keyframes = fw.KeyframeGate(self._send_keyframe_request, service.config.keyframe_interval)
        self.shared: dict[str, _Shared] = {}
        self._pts_offset: dict[Kind, int] = {"audio": 0, "video": 0}
        self._last_pts: dict[Kind, int | None] = {"audio": None, "video": None}
        self._grace: asyncio.TimerHandle | None = None

    @property
    def empty(self) -> bool:
        return self.publisher is None and not self.claimed and not self.viewers and self.state != "reconnecting"

    # --- frames from the publisher ----------------------------------------------------------------------------

    def on_frame(self, publisher: _Publisher, kind: Kind, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        if publisher is not self.publisher or publisher.closed:
            return
        publisher.last_frame = time.monotonic()
        publisher.frames += 1
        known = publisher.codecs.get(kind)
        if known is None or fw.codec_key(known) != fw.codec_key(codec):
            publisher.codecs[kind] = self.codecs[kind] = codec
            self.sync_transcoders()
        pts = self._pts(kind, frame.timestamp)
        packet = fw.new_packet(frame.data)
        packet.pts = pts
        packet.time_base = fw.time_base(codec)
        keyframe = fw.is_keyframe(codec, frame.data)
        source = fw.codec_key(codec)
        for viewer in self.viewers.values():
            track = viewer.tracks.get(kind)
            if track is not None and track.codec == source:
                track.push(packet, keyframe)
        if self.state != "live":
            self.set_state("live")

    def _pts(self, kind: Kind, timestamp: int) -> int:
        """One increasing timeline per kind across publishers, so a reconnect does not jump back in time."""
        pts = timestamp + self._pts_offset[kind]
        last = self._last_pts[kind]
        if last is not None and pts <= last:
            self._pts_offset[kind] = last + _FRAME_STEP[kind] - timestamp
            pts = last + _FRAME_STEP[kind]
        self._last_pts[kind] = pts
        return pts

    def emit_transcoded(self, key: str, packet: fw.Packet, keyframe: bool) -> None:
        for viewer in self.viewers.values():
            track = viewer.tracks.get("video")
            if track is not None and track.codec == key:
                track.push(packet, keyframe)

    # --- keyframes --------------------------------------------------------------------------------------------

    def want_keyframe(self, codec: str) -> None:
        shared = self.shared.get(codec)
        if shared is not None:
            shared.transcoder.request_keyframe()
        else:
            self.keyframes.request()

    def _send_keyframe_request(self) -> None:
        publisher = self.publisher
        if publisher is None or publisher.closed or "video" not in publisher.taps:
            return
        self.service.spawn(fw.request_keyframe(publisher.taps["video"].receiver), f"pli-room-{self.id}")

    # --- decode once, encode once -----------------------------------------------------------------------------

    def sync_transcoders(self) -> None:
        """One shared transcoder per video codec some viewer needs and the publisher does not send."""
        publisher = self.publisher
        source = publisher.codecs.get("video") if publisher is not None else None
        tap = publisher.taps.get("video") if publisher is not None else None
        needed: dict[str, RTCRtpCodecParameters] = {}
        if source is not None and tap is not None:
            for viewer in self.viewers.values():
                track = viewer.tracks.get("video")
                if track is not None and track.codec != fw.codec_key(source):
                    needed[track.codec] = viewer.codecs["video"]
        for key in [key for key in self.shared if key not in needed]:
            self._stop_shared(self.shared.pop(key))
        for key, codec in needed.items():
            shared = self.shared.get(key)
            if shared is None:
                transcoder = fw.Transcoder(codec, functools.partial(self.emit_transcoded, key),
                                           self.service.config.transcode_bitrate)  # fmt: skip
                shared = self.shared[key] = _Shared(transcoder)
            if shared.source is not tap and tap is not None:
                self._stop_shared(shared)
                shared.source = tap
                shared.transcoder.request_keyframe()
                shared.task = self.service.spawn(shared.transcoder.run(tap.track), f"transcode-room-{self.id}")
        if tap is not None:
            tap.decode = bool(self.shared)
            if self.shared:
                self.keyframes.request()  # the decoder needs a keyframe to start from

    def _stop_shared(self, shared: _Shared) -> None:
        if shared.task is not None:
            shared.task.cancel()
            shared.task = None
        shared.source = None

    # --- state ------------------------------------------------------------------------------------------------

    def set_state(self, state: VideoState) -> None:
        if state == self.state:
            return
        self.state = state
        self.service.announce(self.id, state)

    def publisher_lost(self) -> None:
        """The publisher dropped without a DELETE: viewers wait for it to come back."""
        self.set_state("reconnecting")
        if self._grace is not None:
            self._grace.cancel()
        self._grace = asyncio.get_running_loop().call_later(
            self.service.config.reconnect_grace, lambda: self.service.spawn(self.end(), f"grace-room-{self.id}")
        )

    def publisher_back(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        for viewer in self.viewers.values():
            for track in viewer.tracks.values():
                track.restart()

    async def end(self) -> None:
        """Close every session of the room and announce the video ended."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        publisher = self.publisher
        if publisher is not None:
            await self.service.close_peer(publisher)
        for viewer in list(self.viewers.values()):
            await self.service.close_peer(viewer)
        for shared in self.shared.values():
            self._stop_shared(shared)
        self.shared.clear()
        self.keyframes.close()
        if self.state is not None:
            self.set_state("ended")
        self.state = None
        self.service.forget_if_empty(self)


# --- the service ------------------------------------------------------------------------------------------------


class MediaService:
    """Every media session of this process. `start` runs the background loops; `close` ends everything."""

    def __init__(self, live: LiveRooms, redis: Redis, config: MediaConfig | None = None) -> None:
        self.config = config or MediaConfig()
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:media:{secrets.token_hex(3)}"
        self._redis = redis
        self._live = live
        live.listen(self._on_room_event)
        self._rooms: dict[int, _VideoRoom] = {}
        self._peers: dict[str, _Peer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []

    # --- lifetime ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        fw.check_internals()
        ice.bind(self.config.ice_address)
        self._loops = [asyncio.create_task(self._keep_locks(), name="media-locks")]

    async def close(self) -> None:
        for room in list(self._rooms.values()):
            await room.end()
        if self._tasks:  # let the last announcements reach Redis
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in [*self._loops, *self._tasks]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task this service owns (cancelled at close); a failure is logged."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media task %s failed", task.get_name(), exc_info=task.exception())

    # --- what tests and the benchmark look at -----------------------------------------------------------------

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    @property
    def task_count(self) -> int:
        return len(self._tasks)

    def transcoders(self, room_id: int) -> int:
        room = self._rooms.get(room_id)
        return 0 if room is None else len(room.shared)

    # --- rooms ------------------------------------------------------------------------------------------------

    def _room(self, room_id: int) -> _VideoRoom:
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _VideoRoom(self, room_id)
            self.spawn(self._live.watch(room_id, "media"), f"media-watch-{room_id}")
        return room

    def forget_if_empty(self, room: _VideoRoom) -> None:
        if room.empty and self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            room.keyframes.close()
            self.spawn(self._live.unwatch(room.id, "media"), f"media-unwatch-{room.id}")

    def announce(self, room_id: int, state: VideoState) -> None:
        self.spawn(self._live.publish(room_id, ev.video(room_id, state)), f"announce-{room_id}")

    def _on_room_event(self, room_id: int, event: Event) -> None:
        if event.event == ev.ROOM_STATUS and event.payload.get("status") == "ended" and room_id in self._rooms:
            self.end_room(room_id)

    def end_room(self, room_id: int) -> None:
        """The room ended: close its sessions (also heard from other processes through the room's bus)."""
        room = self._rooms.get(room_id)
        if room is not None:
            self.spawn(room.end(), f"end-room-{room_id}")

    async def _keep_locks(self) -> None:
        while True:
            await asyncio.sleep(self.config.lock_ttl / 3)
            for room in list(self._rooms.values()):
                publisher = room.publisher
                if publisher is None or publisher.lock is None or publisher.closed:
                    continue
                try:
                    await publisher.lock.reacquire()
                except (LockError, RedisError, OSError) as exc:
                    log.warning("room %d: could not refresh the publisher lock: %s", room.id, exc)

    # --- publishers (WHIP) ------------------------------------------------------------------------------------

    async def publish(self, room_id: int, offer: Offer, user_id: int | None) -> tuple[str, str]:
        """Accept a publisher's offer: (session id, SDP answer). 409 while the room has a live publisher."""
        room = self._room(room_id)
        if room.publisher is not None or room.claimed:
            raise Conflict("this room already has a publisher; DELETE its session first, or wait until it is gone")
        room.claimed = True
        lock = self._redis.lock(
            room_key(room_id, "video_publisher"), timeout=self.config.lock_ttl, blocking=False, thread_local=False
        )
        try:
            try:
                acquired = await lock.acquire(token=f"{self.process_id}:{secrets.token_hex(4)}")
            except (RedisError, OSError) as exc:
                raise ServiceUnavailable(f"the live state store is unavailable ({exc}); retry shortly") from None
            if not acquired:
                raise Conflict("this room already has a publisher on another server; wait until it is gone")
            publisher = _Publisher(id=secrets.token_urlsafe(16), room=room, pc=self._pc(), user_id=user_id, lock=lock)
            try:
                answer = await self._accept_publisher(publisher, offer)
            except BaseException:
                await self.close_peer(publisher)
                raise
        except BaseException:
            room.claimed = False
            with contextlib.suppress(LockError, RedisError, OSError):
                if await lock.owned():
                    await lock.release()
            self.forget_if_empty(room)
            raise
        room.claimed = False
        return publisher.id, answer

    async def _accept_publisher(self, publisher: _Publisher, offer: Offer) -> str:
        room, pc = publisher.room, publisher.pc
        self._peers[publisher.id] = publisher
        await self._negotiate(pc, offer)
        for transceiver in pc.getTransceivers():
            kind: Kind = "audio" if transceiver.kind == "audio" else "video"
            transceiver.direction = "recvonly"
            publisher.taps[kind] = fw.tap(
                transceiver.receiver,
                lambda codec, frame, kind=kind: room.on_frame(publisher, kind, codec, frame),  # type: ignore[misc]
            )
        answer = await self._answer(pc)
        for kind, codecs in offer.kinds.items():
            negotiated = _negotiated(pc, kind)
            if negotiated is not None:
                room.codecs[kind] = negotiated
                publisher.codecs.setdefault(kind, negotiated)
            elif codecs:
                raise MalformedRequest(f"no {kind} codec in common with the offer")
        room.publisher = publisher
        room.publisher_back()
        room.sync_transcoders()
        pc.on("connectionstatechange", lambda: self._on_state(publisher))
        publisher.watchdog = self.spawn(self._watch_publisher(publisher), f"watch-publisher-{room.id}")
        return answer

    async def unpublish(self, room_id: int, session_id: str) -> None:
        """The publisher's DELETE: its session ends, and with it the room's video (viewers are closed)."""
        room = self._rooms.get(room_id)
        if room is None or room.publisher is None or room.publisher.id != session_id:
            raise NotFound("no such publishing session in this room; it may have ended already")
        await room.end()

    async def _watch_publisher(self, publisher: _Publisher) -> None:
        config = self.config
        step = min(0.5, config.publisher_timeout / 4)
        while not publisher.closed:
            await asyncio.sleep(step)
            now = time.monotonic()
            connected = publisher.pc.connectionState == "connected"
            if not connected and now - publisher.created > config.connect_timeout:
                log.info(
                    "room %d: the publisher did not connect within %.0f s", publisher.room.id, config.connect_timeout
                )
                break
            last = publisher.last_frame if publisher.last_frame is not None else publisher.created
            if connected and now - last > config.publisher_timeout:
                log.info("room %d: no media from the publisher for %.1f s", publisher.room.id, now - last)
                break
        self.spawn(self._lose_publisher(publisher), f"lose-publisher-{publisher.room.id}")

    async def _lose_publisher(self, publisher: _Publisher) -> None:
        room = publisher.room
        if publisher.closed or room.publisher is not publisher:
            return
        had_media = publisher.frames > 0 or room.state is not None
        await self.close_peer(publisher)
        if had_media:
            room.publisher_lost()
        elif not room.viewers:
            self.forget_if_empty(room)

    # --- viewers (WHEP) ---------------------------------------------------------------------------------------

    async def view(self, room_id: int, offer: Offer) -> tuple[str, str]:
        """Accept a viewer's offer: (session id, SDP answer)."""
        room = self._rooms.get(room_id)
        if room is not None and len(room.viewers) >= self.config.max_viewers_per_room:
            raise ServiceUnavailable("this room has as many viewers as this server takes; try again later")
        if room is None or room.publisher is None:
            try:
                elsewhere = await self._redis.exists(room_key(room_id, "video_publisher"))
            except (RedisError, OSError) as exc:
                raise ServiceUnavailable(f"the live state store is unavailable ({exc}); retry shortly") from None
            if elsewhere and (room is None or room.publisher is None) and not (room and room.claimed):
                raise Conflict("this room's video is served by another server; send the request there")
        room = self._room(room_id)
        viewer = _Viewer(id=secrets.token_urlsafe(16), room=room, pc=self._pc())
        try:
            answer = await self._accept_viewer(viewer, offer)
        except BaseException:
            await self.close_peer(viewer)
            raise
        return viewer.id, answer

    async def _accept_viewer(self, viewer: _Viewer, offer: Offer) -> str:
        room, pc = viewer.room, viewer.pc
        self._peers[viewer.id] = viewer
        config = self.config
        for kind, codecs in offer.kinds.items():
            codec = _choose(kind, codecs, room.codecs.get(kind))
            capability = fw.capability_for(kind, codec)
            assert capability is not None  # parse_offer checked one exists
            key = fw.codec_key(capability)
            limit = config.video_queue_frames if kind == "video" else config.audio_queue_packets
            track = fw.PacketTrack(kind, key, limit=limit, want_keyframe=lambda key=key: room.want_keyframe(key))  # type: ignore[misc]
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences([capability, *fw.rtx_capability(kind)])
            fw.on_keyframe_request(transceiver.sender, lambda key=key: room.want_keyframe(key))  # type: ignore[misc]
            viewer.tracks[kind] = track
            viewer.transceivers[kind] = transceiver
        await self._negotiate(pc, offer)
        answer = await self._answer(pc)
        for kind in offer.kinds:
            negotiated = _negotiated(pc, kind)
            if negotiated is None:
                raise MalformedRequest(f"no {kind} codec in common with the offer")
            viewer.codecs[kind] = negotiated
            viewer.tracks[kind].codec = fw.codec_key(negotiated)
        room.viewers[viewer.id] = viewer
        room.sync_transcoders()
        if "video" in viewer.tracks:
            room.want_keyframe(viewer.tracks["video"].codec)  # so the new viewer's first picture comes soon
        pc.on("connectionstatechange", lambda: self._on_state(viewer))
        viewer.watchdog = self.spawn(self._watch_viewer(viewer), f"watch-viewer-{room.id}")
        return answer

    async def leave(self, room_id: int, session_id: str) -> None:
        room = self._rooms.get(room_id)
        viewer = room.viewers.get(session_id) if room is not None else None
        if viewer is None:
            raise NotFound("no such viewing session in this room; it may have ended already")
        await self.close_peer(viewer)

    async def _watch_viewer(self, viewer: _Viewer) -> None:
        config = self.config
        step = min(0.5, config.viewer_timeout / 4)
        while not viewer.closed:
            await asyncio.sleep(step)
            now = time.monotonic()
            if viewer.pc.connectionState != "connected":
                if now - viewer.created > config.connect_timeout:
                    log.info("room %d: a viewer did not connect within %.0f s", viewer.room.id, config.connect_timeout)
                    break
                continue
            heard = await _last_report(viewer)
            if heard is not None:
                viewer.last_report = heard
            sent = [track.first_sent for track in viewer.tracks.values() if track.first_sent is not None]
            if not sent:
                continue  # nothing sent yet: a viewer reports only what it receives
            since = max(viewer.last_report or 0.0, min(sent))
            if now - since > config.viewer_timeout:
                log.info("room %d: a viewer sent no receiver report for %.1f s", viewer.room.id, now - since)
                break
        self.spawn(self.close_peer(viewer), f"close-viewer-{viewer.room.id}")

    def session_peer(self, room_id: int, session_id: str, role: str) -> tuple[RTCPeerConnection, list[str], str]:
        """A session's peer connection, its media ids and the remote ICE username fragment (for trickle ICE)."""
        room = self._rooms.get(room_id)
        peer: _Peer | None = None
        if room is not None:
            peer = room.publisher if role == "publisher" else room.viewers.get(session_id)
        if peer is None or peer.id != session_id or peer.closed or peer.pc.remoteDescription is None:
            raise NotFound("no such session in this room; it may have ended already")
        media = aiortc_sdp.SessionDescription.parse(peer.pc.remoteDescription.sdp).media
        mids = [m.rtp.muxId for m in media if m.rtp.muxId]
        ice = media[0].ice if media else None
        return peer.pc, mids, (ice.usernameFragment or "") if ice is not None else ""

    # --- peer connections -------------------------------------------------------------------------------------

    def _pc(self) -> RTCPeerConnection:
        servers = [RTCIceServer(urls=url) for url in self.config.ice_servers]
        return RTCPeerConnection(RTCConfiguration(iceServers=servers))

    async def _negotiate(self, pc: RTCPeerConnection, offer: Offer) -> None:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except ClientError:
            raise
        except Exception as exc:  # noqa: BLE001 - aiortc refuses a bad offer with many exception types
            raise MalformedRequest(f"the SDP offer was refused: {exc or type(exc).__name__}") from None

    async def _answer(self, pc: RTCPeerConnection) -> str:
        await pc.setLocalDescription(await pc.createAnswer())
        description = pc.localDescription
        assert description is not None
        bound, announced = self.config.ice_address, self.config.ice_announce
        if bound is not None and announced is not None:
            return ice.announce(description.sdp, bound, announced)
        return description.sdp

    def _on_state(self, peer: _Peer) -> None:
        if peer.closed or peer.pc.connectionState not in ("failed", "closed"):
            return
        log.info("room %d: a peer connection %s", peer.room.id, peer.pc.connectionState)
        if isinstance(peer, _Publisher):
            self.spawn(self._lose_publisher(peer), f"lose-publisher-{peer.room.id}")
        else:
            self.spawn(self.close_peer(peer), f"close-viewer-{peer.room.id}")

    async def close_peer(self, peer: _Peer) -> None:
        """Close the peer's connection and forget it; idempotent."""
        if peer.closed:
            return
        peer.closed = True
        room = peer.room
        self._peers.pop(peer.id, None)
        if peer.watchdog is not None and peer.watchdog is not asyncio.current_task():
            peer.watchdog.cancel()
        if isinstance(peer, _Viewer):
            room.viewers.pop(peer.id, None)
            for track in peer.tracks.values():
                track.finish()
            room.sync_transcoders()
        elif isinstance(peer, _Publisher):
            if room.publisher is peer:
                room.publisher = None
            room.sync_transcoders()
            if peer.lock is not None:
                with contextlib.suppress(LockError, RedisError, OSError):
                    await peer.lock.release()
        try:
            await peer.pc.close()
        except Exception:
            log.exception("room %d: closing a peer connection failed", room.id)
        self.forget_if_empty(room)


def _choose(
    kind: Kind, offered: list[RTCRtpCodecParameters], source: RTCRtpCodecParameters | None
) -> RTCRtpCodecParameters:
    """The publisher's codec when the viewer offers it (forwarding); else the viewer's first usable one."""
    if source is not None:
        for codec in offered:
            if is_codec_compatible(codec, source):
                return codec
    return _first(offered, kind)


def _negotiated(pc: RTCPeerConnection, kind: str) -> RTCRtpCodecParameters | None:
    """The codec the answer settled on for `kind` (the first of its section)."""
    description = pc.localDescription
    if description is None:
        return None
    for media in aiortc_sdp.SessionDescription.parse(description.sdp).media:
        if media.kind == kind:
            codecs = [c for c in media.rtp.codecs if c.mimeType.lower() != f"{kind}/rtx"]
            return codecs[0] if codecs else None
    return None


async def _last_report(viewer: _Viewer) -> float | None:
    """When the viewer last sent a receiver report for any of our streams (monotonic), if ever."""
    newest = None
    for transceiver in viewer.transceivers.values():
        report = await transceiver.sender.getStats()
        for stats in report.values():
            if getattr(stats, "type", None) == "remote-inbound-rtp":
                stamp = float(stats.timestamp.timestamp())
                newest = stamp if newest is None else max(newest, stamp)
    if newest is None:
        return None
    return time.monotonic() - max(0.0, time.time() - newest)
