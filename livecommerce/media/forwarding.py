"""Forwarding encoded media with aiortc: the one module that reaches into aiortc's internals.

aiortc's `RTCRtpReceiver` always decodes: it reassembles each encoded frame in its jitter buffer, then puts
`(codec, frame)` on a private queue that a decoder thread drains. A track handed to an `RTCRtpSender` may
instead yield encoded `av.Packet`s, which the sender only packetizes (no encoder runs). Forwarding joins the
two: `tap` swaps the receiver's decoder queue for one that hands each reassembled frame to a callback on the
event loop (and passes it on to the decoder only while someone needs decoded pictures), and `PacketTrack`
is the per-viewer track of encoded packets. `on_keyframe_request` catches a viewer's PLI/FIR, which the
sender would otherwise answer by flagging an encoder that does not exist, and `request_keyframe` sends a
PLI to the publisher.

Every internal used here is named in `_INTERNALS` and checked by `check_internals()` at start-up and in
`tests/media/test_forwarding.py`, so an aiortc upgrade that moves one fails loudly instead of silently
decoding or dropping video. The aiortc version is pinned in `pyproject.toml` for the same reason.

Where a viewer cannot take the publisher's codec, `Transcoder` decodes once (aiortc's own decoder thread, fed
by the tap) and encodes once per target codec, sharing the packets among every such viewer: never an
encoder per viewer.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import av
from aiortc import RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from av.packet import Packet as _AnyPacket
from av.stream import Stream
from av.video.frame import VideoFrame

if TYPE_CHECKING:
    Packet: TypeAlias = _AnyPacket[Stream]  # an encoded frame, not bound to any container stream
else:
    Packet = _AnyPacket

__all__ = [
    "AIORTC_VERSION",
    "KeyframeGate",
    "MediaStreamError",
    "Packet",
    "PacketTrack",
    "Tap",
    "Transcoder",
    "capability_for",
    "check_internals",
    "codec_key",
    "is_keyframe",
    "new_packet",
    "on_keyframe_request",
    "request_keyframe",
    "rtx_capability",
    "tap",
    "time_base",
]

log = logging.getLogger(__name__)

AIORTC_VERSION: Final = "1.16.0"  # the version these internals were written against (pinned in pyproject)

# The private names used below, by object: if an upgrade removes one, `check_internals` says which.
_INTERNALS: Final = {
    RTCRtpReceiver: ("_RTCRtpReceiver__decoder_queue", "_send_rtcp_pli", "_handle_rtp_packet", "_track"),
    RTCRtpSender: ("_send_keyframe", "_handle_rtcp_packet", "_next_encoded_frame"),
    RemoteStreamTrack: ("_queue",),
}

_H264_IDR, _H264_SPS = 5, 7


class InternalsChanged(RuntimeError):
    """The installed aiortc no longer has what forwarding relies on."""


def check_internals() -> None:
    """Raise `InternalsChanged` naming what is missing, if aiortc's internals moved."""
    import aiortc

    missing = [
        f"{owner.__name__}.{name}" for owner, names in _INTERNALS.items() for name in names
        if name not in _attributes(owner)
    ]  # fmt: skip
    if missing:
        raise InternalsChanged(
            f"aiortc {aiortc.__version__} lacks {', '.join(missing)}; forwarding was written for aiortc "
            f"{AIORTC_VERSION}: pin that version or port livecommerce/media/forwarding.py"
        )


def _attributes(owner: type) -> set[str]:
    """Class attributes, and the instance attributes its constructor sets (names already mangled)."""
    init: Any = vars(owner)["__init__"]
    return set(dir(owner)) | set(init.__code__.co_names)


# --- codecs -----------------------------------------------------------------------------------------------------


def codec_key(codec: RTCRtpCodecParameters | RTCRtpCodecCapability) -> str:
    """A codec's identity for forwarding: mime type, plus the profile and packetization for H.264."""
    mime = codec.mimeType.lower()
    if mime == "video/h264":
        profile = str(codec.parameters.get("profile-level-id", "42e01f")).lower()[:4]
        mode = str(codec.parameters.get("packetization-mode", "0"))
        return f"{mime};{profile};{mode}"
    return mime


def capability_for(kind: str, codec: RTCRtpCodecParameters) -> RTCRtpCodecCapability | None:
    """aiortc's own capability compatible with `codec` (what `setCodecPreferences` accepts), if any."""
    for capability in RTCRtpSender.getCapabilities(kind).codecs:
        if capability.mimeType.lower() == "video/rtx":
            continue
        candidate = RTCRtpCodecParameters(
            mimeType=capability.mimeType,
            clockRate=capability.clockRate,
            channels=capability.channels,
            parameters=dict(capability.parameters),
        )
        if is_codec_compatible(candidate, codec):
            return capability
    return None


def rtx_capability(kind: str) -> list[RTCRtpCodecCapability]:
    """The retransmission capability, so preferences keep NACK retransmissions working."""
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == "video/rtx"]


def time_base(codec: RTCRtpCodecParameters) -> fractions.Fraction:
    """The RTP clock of `codec` as a time base (1/90000 for video, 1/48000 for Opus)."""
    return fractions.Fraction(1, codec.clockRate)


def is_keyframe(codec: RTCRtpCodecParameters, data: bytes) -> bool:
    """Whether a reassembled frame can be decoded on its own (audio frames always can)."""
    mime = codec.mimeType.lower()
    if mime == "video/vp8":
        # RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame, which carries the start code 9d 01 2a.
        return len(data) >= 6 and not data[0] & 0x01 and data[3:6] == b"\x9d\x01\x2a"
    if mime == "video/h264":
        # aiortc's depayloader writes Annex B: each NAL unit after a 00 00 00 01 start code.
        start = data.find(b"\x00\x00\x01")
        while start != -1 and start + 3 < len(data):
            if data[start + 3] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            start = data.find(b"\x00\x00\x01", start + 3)
        return False
    return True


# --- the tap: encoded frames out of a receiver ------------------------------------------------------------------

OnFrame = Callable[[RTCRtpCodecParameters, JitterFrame], None]


class _TapQueue(queue.Queue[Any]):
    """Stands in for the receiver's decoder queue. `put` runs on the event loop (from `_handle_rtp_packet`)."""

    def __init__(self, on_frame: OnFrame) -> None:
        super().__init__()
        self.on_frame = on_frame
        self.decode = False

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopping: let the decoder thread end, which ends the remote track
            super().put(None)
            return
        codec, frame = item
        try:
            self.on_frame(codec, frame)
        except Exception:
            log.exception("forwarding a %s frame failed", codec.mimeType)
        if self.decode:
            super().put(item)


class Tap:
    """The encoded frames of one publisher receiver. Set `decode` while a transcoder needs pictures."""

    def __init__(self, receiver: RTCRtpReceiver, tap_queue: _TapQueue) -> None:
        self.receiver = receiver
        self._queue = tap_queue

    @property
    def decode(self) -> bool:
        return self._queue.decode

    @decode.setter
    def decode(self, value: bool) -> None:
        self._queue.decode = value

    @property
    def track(self) -> MediaStreamTrack:
        """The receiver's decoded track (frames only while `decode` is set)."""
        return self.receiver.track


def tap(receiver: RTCRtpReceiver, on_frame: OnFrame) -> Tap:
    """Take the receiver's encoded frames: call before the connection starts receiving (before ICE completes)."""
    attribute = "_RTCRtpReceiver__decoder_queue"
    current = getattr(receiver, attribute, None)
    if not isinstance(current, queue.Queue):
        raise InternalsChanged(f"RTCRtpReceiver has no {attribute} queue; see livecommerce/media/forwarding.py")
    if current.qsize():
        raise RuntimeError("tap() must run before the receiver has received anything")
    tap_queue = _TapQueue(on_frame)
    setattr(receiver, attribute, tap_queue)
    return Tap(receiver, tap_queue)


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI for the stream this receiver hears most recently; False when it has heard nothing yet."""
    sources = receiver.getSynchronizationSources()
    if not sources:
        return False
    newest = max(sources, key=lambda source: source.timestamp)
    await receiver._send_rtcp_pli(newest.source)
    return True


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` when the viewer behind `sender` asks for a keyframe (PLI or FIR).

    The sender answers a PLI by flagging its encoder for a keyframe; a sender of packets has no encoder, so
    the flag would do nothing. This replaces that one method on this sender instance.
    """
    if not callable(getattr(sender, "_send_keyframe", None)):
        raise InternalsChanged("RTCRtpSender has no _send_keyframe; see livecommerce/media/forwarding.py")
    sender._send_keyframe = callback  # type: ignore[method-assign]


# --- per-viewer tracks of encoded packets -----------------------------------------------------------------------


class KeyframeGate:
    """Rate-limits keyframe requests to `interval` seconds; a request inside the interval is sent at its end."""

    def __init__(self, send: Callable[[], None], interval: float) -> None:
        self._send = send
        self._interval = interval
        self._last = -interval
        self._pending: asyncio.TimerHandle | None = None
        self.sent = 0

    def request(self) -> None:
        now = time.monotonic()
        if self._pending is not None:
            return
        wait = self._last + self._interval - now
        if wait <= 0:
            self._fire()
        else:
            self._pending = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = time.monotonic()
        self.sent += 1
        self._send()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


class PacketTrack(MediaStreamTrack):
    """One viewer's track of encoded packets, fed by `push`, drained by the viewer's `RTCRtpSender`.

    Bounded: a video viewer `limit` frames behind drops its backlog and waits for the next keyframe (asking
    for one through `want_keyframe`); an audio viewer drops its oldest packets. A new video viewer starts at a
    keyframe. `finish` ends the track (the sender stops and tells the viewer with an RTCP BYE).
    """

    def __init__(self, kind: str, codec: str, *, limit: int, want_keyframe: Callable[[], None]) -> None:
        super().__init__()
        self.kind = kind
        self.codec = codec  # codec_key of what this viewer negotiated
        self._limit = limit
        self._queue: deque[Packet] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._want_keyframe = want_keyframe
        self._waiting_for_keyframe = kind == "video"
        self._finished = False
        self.delivered = 0
        self.skipped = 0
        self.first_sent: float | None = None

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def push(self, packet: Packet, keyframe: bool) -> None:
        if self._finished:
            return
        if self.kind == "video":
            if self._waiting_for_keyframe:
                if not keyframe:
                    self.skipped += 1
                    return
                self._waiting_for_keyframe = False
            elif len(self._queue) >= self._limit:
                self.skipped += len(self._queue)
                self._queue.clear()
                if not keyframe:
                    self._waiting_for_keyframe = True
                    self.skipped += 1
                    self._want_keyframe()
                    return
        elif len(self._queue) >= self._limit:
            self._queue.popleft()
            self.skipped += 1
        self._queue.append(packet)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def restart(self) -> None:
        """A new publisher stream: start again at its first keyframe."""
        self._queue.clear()
        self._waiting_for_keyframe = self.kind == "video"

    def finish(self) -> None:
        self._finished = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def recv(self) -> Packet:
        while not self._queue:
            if self._finished or self.readyState != "live":
                raise MediaStreamError
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        if self._finished:
            raise MediaStreamError
        self.delivered += 1
        if self.first_sent is None:
            self.first_sent = time.monotonic()
        return self._queue.popleft()

    def stop(self) -> None:
        self.finish()
        super().stop()


# --- decode once, encode once -----------------------------------------------------------------------------------

_ENCODERS: Final = {"video/vp8": "libvpx", "video/h264": "libx264"}
_VIDEO_TIME_BASE: Final = fractions.Fraction(1, 90000)


class Transcoder:
    """Decodes one publisher track once and encodes it once into `codec`, for every viewer that needs it.

    `attach` binds it to a publisher's tap (turning decoding on); `run` reads decoded frames and calls
    `emit(packet, keyframe)` with each encoded packet. The encoder runs in a worker thread.
    """

    def __init__(self, codec: RTCRtpCodecParameters, emit: Callable[[Packet, bool], None], bitrate: int) -> None:
        mime = codec.mimeType.lower()
        if mime not in _ENCODERS:
            raise ValueError(f"no shared encoder for {codec.mimeType}")
        self.codec = codec
        self._name = _ENCODERS[mime]
        self._emit = emit
        self._bitrate = bitrate
        self._context: Any = None
        self._force_keyframe = True
        self.frames = 0

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    def _open(self, frame: VideoFrame) -> Any:
        context: Any = av.CodecContext.create(self._name, "w")
        context.width, context.height = frame.width, frame.height
        context.pix_fmt = "yuv420p"
        context.bit_rate = self._bitrate
        context.framerate = fractions.Fraction(30, 1)
        context.time_base = fractions.Fraction(1, 30)
        if self._name == "libx264":
            context.profile = "Baseline"
            context.options = {"level": "31", "tune": "zerolatency", "preset": "veryfast"}
        else:
            context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "partitions": "0"}
            context.gop_size = 3000
        return context

    def _encode(self, frame: VideoFrame, force: bool) -> list[tuple[bytes, bool]]:
        if self._context is None or (frame.width, frame.height) != (self._context.width, self._context.height):
            self._context = self._open(frame)
            force = True
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
        frame.pts = self.frames
        frame.time_base = fractions.Fraction(1, 30)
        return [(bytes(packet), bool(packet.is_keyframe)) for packet in self._context.encode(frame)]

    async def run(self, track: MediaStreamTrack) -> None:
        """Encode what `track` decodes until it ends."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, VideoFrame):
                continue
            pts = frame.pts or 0
            force, self._force_keyframe = self._force_keyframe, False
            encoded = await loop.run_in_executor(None, self._encode, frame, force)
            self.frames += 1
            for data, keyframe in encoded:
                packet = _AnyPacket(data)
                packet.pts = pts
                packet.time_base = _VIDEO_TIME_BASE
                self._emit(packet, keyframe)


def new_packet(data: bytes) -> Packet:
    """An encoded frame as the sender takes it (set `pts` and `time_base` before handing it on)."""
    return _AnyPacket(data)
