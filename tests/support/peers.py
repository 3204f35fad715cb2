"""Real aiortc peers for the media tests: a synthetic publisher over WHIP and counting viewers over WHEP.

Every peer gathers ICE candidates on 127.0.0.1 only (see `loopback_ice` in tests/support/media.py), so media
stays on the loopback interface. Waiting is always polling for a condition with a deadline (`waits.until`).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame


class MovingPicture(VideoStreamTrack):
    """Frames whose content changes every frame (a moving bar), so every frame encodes to real data."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        self._n = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=self.width, height=self.height, format="yuv420p")
        luma = bytearray(self.width * self.height)
        column = (self._n * 8) % self.width
        width = min(16, self.width - column)
        for row in range(0, self.height, 2):
            start = row * self.width + column
            luma[start : start + width] = b"\xff" * width
        frame.planes[0].update(bytes(luma))
        chroma = bytes([128]) * (self.width * self.height // 4)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts, frame.time_base = pts, time_base
        self._n += 1
        return frame


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def prefer(pc: RTCPeerConnection, kind: str, mime: str) -> None:
    """Offer only `mime` (plus retransmission) for `kind` on every transceiver of that kind."""
    codecs = [
        c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() in (mime.lower(), f"{kind}/rtx")
    ]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            transceiver.setCodecPreferences(codecs)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


async def post_sdp(client: TestClient[Any, Any], path: str, sdp: str, token: str | None = None) -> Answer:
    headers = {"Content-Type": "application/sdp"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with client.post(path, data=sdp.encode(), headers=headers) as response:
        return Answer(response.status, dict(response.headers), await response.text())


@dataclass
class Publisher:
    """An aiortc publisher of synthetic video (and silent audio) over WHIP."""

    pc: RTCPeerConnection = field(default_factory=new_pc)
    answer: Answer | None = None

    async def publish(
        self, client: TestClient[Any, Any], room_id: int, token: str | None, *, video: str = "video/VP8",
        audio: bool = True, size: tuple[int, int] = (320, 240),
    ) -> Answer:  # fmt: skip
        self.pc.addTrack(MovingPicture(*size))
        if audio:
            self.pc.addTrack(AudioStreamTrack())
        prefer(self.pc, "video", video)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.answer = await post_sdp(client, f"/api/v1/rooms/{room_id}/whip", self.pc.localDescription.sdp, token)
        if self.answer.status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer.body, type="answer"))
        return self.answer

    @property
    def location(self) -> str:
        assert self.answer is not None
        return self.answer.headers["Location"]

    async def vanish(self) -> None:
        """Go silent without a word to the server: the ICE transport closes, nothing is sent."""
        for transceiver in self.pc.getTransceivers():
            await transceiver.sender.transport.transport.stop()

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Viewer:
    """An aiortc viewer over WHEP that decodes what it receives and counts the pictures."""

    pc: RTCPeerConnection = field(default_factory=new_pc)
    answer: Answer | None = None
    frames: int = 0
    audio_frames: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    first_frame_after: float | None = None
    ended: set[str] = field(default_factory=set)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def watch(
        self, client: TestClient[Any, Any], room_id: int, token: str | None = None, *, video: str | None = None,
        audio: bool = True,
    ) -> Answer:  # fmt: skip
        self.pc.addTransceiver("video", direction="recvonly")
        if audio:
            self.pc.addTransceiver("audio", direction="recvonly")
        if video is not None:
            prefer(self.pc, "video", video)
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        started = time.monotonic()
        self._started = started
        self.answer = await post_sdp(client, f"/api/v1/rooms/{room_id}/whep", self.pc.localDescription.sdp, token)
        if self.answer.status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer.body, type="answer"))
        return self.answer

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                self.ended.add(track.kind)
                return
            if isinstance(frame, VideoFrame):
                if self.first_frame_after is None:
                    self.first_frame_after = time.monotonic() - self._started
                self.frames += 1
                self.sizes.add((frame.width, frame.height))
            else:
                self.audio_frames += 1

    @property
    def location(self) -> str:
        assert self.answer is not None
        return self.answer.headers["Location"]

    async def vanish(self) -> None:
        for transceiver in self.pc.getTransceivers():
            await transceiver.receiver.transport.transport.stop()

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
