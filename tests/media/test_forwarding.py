"""The aiortc internals forwarding relies on, checked against the installed aiortc with real peers.

If an aiortc upgrade moves the receiver's decoder queue, the sender's keyframe hook or the PLI sender, these
tests fail here (and `check_internals` fails the server's start-up) instead of video silently decoding per
viewer or never reaching anyone.
"""

from __future__ import annotations

import asyncio
import fractions
from importlib.metadata import version
from typing import Any

import av
import pytest
from aiortc import RTCRtpCodecParameters, RTCSessionDescription
from av.video.frame import VideoFrame

from livecommerce.media import forwarding as fw
from tests.support.peers import MovingPicture, new_pc, prefer
from tests.support.waits import until

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264", clockRate=90000, payloadType=99,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f", "level-asymmetry-allowed": "1"},
)  # fmt: skip


def test_the_installed_aiortc_is_the_pinned_one_and_has_every_internal_used() -> None:
    assert version("aiortc") == fw.AIORTC_VERSION
    fw.check_internals()


def _encode(encoder: str, frames: int) -> list[tuple[bytes, bool]]:
    context: Any = av.CodecContext.create(encoder, "w")
    context.width, context.height, context.pix_fmt = 160, 120, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    if encoder == "libx264":
        context.options = {"tune": "zerolatency"}
    out = []
    for n in range(frames):
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        frame.planes[0].update(bytes([n * 7 % 256]) * (160 * 120))
        frame.pts = n
        out += [(bytes(packet), bool(packet.is_keyframe)) for packet in context.encode(frame)]
    out += [(bytes(packet), bool(packet.is_keyframe)) for packet in context.encode(None)]
    return out


@pytest.mark.parametrize(("encoder", "codec"), [("libvpx", VP8), ("libx264", H264)])
def test_keyframes_are_recognised_as_the_encoder_marks_them(encoder: str, codec: RTCRtpCodecParameters) -> None:
    packets = _encode(encoder, 12)
    assert packets[0][1], "an encoder starts with a keyframe"
    assert any(not key for _, key in packets)
    for data, key in packets:
        assert fw.is_keyframe(codec, data) == key


async def test_the_tap_takes_encoded_frames_without_decoding_until_asked() -> None:
    sender, receiver = new_pc(), new_pc()
    frames: list[tuple[str, bool]] = []
    try:
        sender.addTrack(MovingPicture(160, 120))
        prefer(sender, "video", "video/VP8")
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        (transceiver,) = receiver.getTransceivers()
        tap = fw.tap(
            transceiver.receiver, lambda codec, frame: frames.append((codec.name, fw.is_keyframe(codec, frame.data)))
        )
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(RTCSessionDescription(sdp=receiver.localDescription.sdp, type="answer"))
        await until(lambda: len(frames) >= 10, 10, "encoded frames reach the tap")
        assert frames[0] == ("VP8", True)
        # Nothing was decoded: the decoded track has no picture waiting.
        track = tap.track
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(track.recv(), 0.3)
        tap.decode = True
        picture = await asyncio.wait_for(track.recv(), 5)  # decoding starts once asked (from the next keyframe)
        assert isinstance(picture, VideoFrame)

        # A PLI sent through the receiver reaches the sender's keyframe hook.
        asked: list[int] = []
        fw.on_keyframe_request(sender.getSenders()[0], lambda: asked.append(1))
        assert await fw.request_keyframe(transceiver.receiver)
        await until(lambda: bool(asked), 5, "the PLI reaches the sender")
    finally:
        await sender.close()
        await receiver.close()


async def test_a_viewer_behind_skips_to_the_next_keyframe_and_asks_for_one() -> None:
    asked: list[int] = []
    track = fw.PacketTrack("video", "video/vp8", limit=3, want_keyframe=lambda: asked.append(1))

    def packet(n: int) -> fw.Packet:
        p = fw.new_packet(bytes([n]))
        p.pts, p.time_base = n, fractions.Fraction(1, 90000)
        return p

    track.push(packet(0), keyframe=False)
    assert track.backlog == 0, "a new viewer starts at a keyframe"
    track.push(packet(1), keyframe=True)
    for n in range(2, 4):
        track.push(packet(n), keyframe=False)
    assert track.backlog == 3
    track.push(packet(4), keyframe=False)  # one more than the bound: the backlog goes, a keyframe is wanted
    assert track.backlog == 0
    assert asked == [1]
    track.push(packet(5), keyframe=False)
    assert track.backlog == 0
    track.push(packet(6), keyframe=True)
    assert [int((await track.recv()).pts or 0)] == [6]
    track.finish()
    with pytest.raises(fw.MediaStreamError):
        await track.recv()


async def test_audio_queues_drop_the_oldest() -> None:
    track = fw.PacketTrack("audio", "audio/opus", limit=2, want_keyframe=lambda: None)
    for n in range(4):
        p = fw.new_packet(bytes([n]))
        p.pts, p.time_base = n, fractions.Fraction(1, 48000)
        track.push(p, keyframe=True)
    assert [(await track.recv()).pts for _ in range(2)] == [2, 3]
    assert track.skipped == 2


async def test_keyframe_requests_are_rate_limited_and_never_lost() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    gate = fw.KeyframeGate(lambda: sent.append(loop.time()), interval=0.2)
    for _ in range(10):
        gate.request()
    assert len(sent) == 1
    await until(lambda: len(sent) == 2, 1, "the coalesced request is sent at the end of the interval")
    assert sent[1] - sent[0] >= 0.19
    gate.close()
