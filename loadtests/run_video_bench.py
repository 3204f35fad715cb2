"""Video fan-out benchmark: forwarding (livecommerce.media) versus aiortc's stock MediaRelay re-encode path.

One publisher streams a pre-encoded VP8 clip (30 fps, a keyframe every second, ~1.5 Mbit/s, so the publisher
costs almost nothing) over WHIP to a server pinned to CPU 0; N viewers on CPU 1 watch over WHEP. Viewers count
frames at the RTP level without decoding (the decoding of N streams would measure the generator). Reported
per run: server CPU (cores) over the window and per viewer, frames per second each viewer received, the
first-frame time (WHEP POST to the first keyframe reassembled) and the bitrate the publisher sent.

    .venv/bin/python loadtests/run_video_bench.py                          # appends to docs/benchmarks.md
    .venv/bin/python loadtests/run_video_bench.py --forward 10,20 --relay 1,2 --sizes 640x480 --no-write

Everything talks to 127.0.0.1 only (ICE candidates are gathered on loopback). Every process is bounded in
time (`--seconds`, `--max-seconds`) and every process it starts is stopped when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import fractions
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VIDEO_TB = fractions.Fraction(1, 90000)
ROOM = 1


def _loopback_ice() -> None:
    """The media setting's loopback-only mode (LIVECOMMERCE_MEDIA_ICE_ADDRESS=127.0.0.1), for every peer here."""
    from livecommerce.media import ice

    ice.bind("127.0.0.1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the server under test ----------------------------------------------------------------------------------------


async def _serve(mode: str, port: int, redis_url: str) -> None:
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay
    from redis.asyncio import Redis

    from livecommerce.live.rooms import LiveRooms
    from livecommerce.media.sessions import MediaConfig, MediaService, parse_offer

    _loopback_ice()
    redis = Redis.from_url(redis_url)
    service = MediaService(
        LiveRooms(redis, "video-bench"), redis, MediaConfig(max_viewers_per_room=10_000, ice_address="127.0.0.1")
    )
    await service.start()
    relay = MediaRelay()
    relay_source: dict[str, Any] = {}
    pcs: list[RTCPeerConnection] = []

    async def answer_of(pc: RTCPeerConnection, sdp: str) -> str:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def whip(request: web.Request) -> web.Response:
        sdp = await request.text()
        if mode == "forward":
            _, answer = await service.publish(ROOM, parse_offer(sdp, role="publisher"), None)
        else:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs.append(pc)
            pc.on("track", lambda track: relay_source.__setitem__(track.kind, track))
            answer = await answer_of(pc, sdp)
        return web.Response(status=201, text=answer, content_type="application/sdp")

    async def whep(request: web.Request) -> web.Response:
        sdp = await request.text()
        if mode == "forward":
            _, answer = await service.view(ROOM, parse_offer(sdp, role="viewer"))
        else:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs.append(pc)
            pc.addTrack(relay.subscribe(relay_source["video"], buffered=False))
            answer = await answer_of(pc, sdp)
        return web.Response(status=201, text=answer, content_type="application/sdp")

    async def cpu(_request: web.Request) -> web.Response:
        times = os.times()
        return web.json_response({"cpu": times.user + times.system, "peers": service.peer_count})

    app = web.Application()
    app.router.add_post("/whip", whip)
    app.router.add_post("/whep", whep)
    app.router.add_get("/cpu", cpu)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.close()
    for pc in pcs:
        await pc.close()
    await runner.cleanup()
    await redis.aclose()


# --- the publisher and the viewers --------------------------------------------------------------------------------


def _clip(width: int, height: int, bitrate: int, frames: int = 60) -> list[tuple[bytes, bool]]:
    """A VP8 clip with moving noise (so the encoder spends its bitrate), a keyframe every 30 frames."""
    import av
    from av.video.frame import VideoFrame

    context: Any = av.CodecContext.create("libvpx", "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    context.bit_rate = bitrate
    context.gop_size = 30
    context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "minrate": str(bitrate),
                       "maxrate": str(bitrate), "bufsize": str(bitrate)}  # fmt: skip
    out: list[tuple[bytes, bool]] = []
    band = height // 10
    for n in range(frames):
        frame = VideoFrame(width=width, height=height, format="yuv420p")
        luma = bytearray(b"\x40" * (width * height))
        top = (n * 8) % (height - band)
        luma[top * width : (top + band) * width] = os.urandom(band * width)
        frame.planes[0].update(bytes(luma))
        chroma = bytes([128]) * (width * height // 4)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = n
        frame.pict_type = av.video.frame.PictureType.I if n % 30 == 0 else av.video.frame.PictureType.NONE
        out += [(bytes(p), bool(p.is_keyframe)) for p in context.encode(frame)]
    return out


async def _clients(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
    from av.packet import Packet

    from livecommerce.media import forwarding as fw

    _loopback_ice()
    width, height = (int(x) for x in args.size.split("x"))
    clip = _clip(width, height, args.bitrate)
    sent_bytes = [0]

    class ClipTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.start = time.monotonic()

        async def recv(self) -> Packet:  # type: ignore[type-arg]
            due = self.start + self.n / 30
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            data, _ = clip[self.n % len(clip)]
            packet = Packet(data)
            packet.pts, packet.time_base = self.n * 3000, VIDEO_TB
            self.n += 1
            sent_bytes[0] += len(data)
            return packet

    def new_pc() -> RTCPeerConnection:
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))

    base = f"http://127.0.0.1:{args.port}"
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")]
    async with aiohttp.ClientSession() as http:

        async def post(path: str, sdp: str) -> str:
            async with http.post(base + path, data=sdp, headers={"Content-Type": "application/sdp"}) as response:
                text = await response.text()
                if response.status != 201:
                    raise RuntimeError(f"{path}: {response.status} {text}")
                return text

        async def cpu() -> float:
            async with http.get(base + "/cpu") as response:
                return float((await response.json())["cpu"])

        publisher = new_pc()
        publisher.addTrack(ClipTrack())
        publisher.getTransceivers()[0].setCodecPreferences(vp8)
        await publisher.setLocalDescription(await publisher.createOffer())
        answer = await post("/whip", publisher.localDescription.sdp)
        await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(1.5)  # the publisher connects and streams

        viewers: list[dict[str, Any]] = []
        pcs = [publisher]

        async def viewer() -> None:
            state: dict[str, Any] = {"frames": 0, "first": None}
            pc = new_pc()
            pcs.append(pc)
            transceiver = pc.addTransceiver("video", direction="recvonly")
            transceiver.setCodecPreferences(vp8)
            started = time.monotonic()

            def on_frame(codec: Any, frame: Any) -> None:
                if state["first"] is None:
                    if not fw.is_keyframe(codec, frame.data):
                        return
                    state["first"] = time.monotonic() - started
                state["frames"] += 1

            await pc.setLocalDescription(await pc.createOffer())
            sdp = await post("/whep", pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            fw.tap(transceiver.receiver, on_frame)
            viewers.append(state)

        connect_start = time.monotonic()
        for start in range(0, args.viewers, 10):
            await asyncio.gather(*(viewer() for _ in range(start, min(args.viewers, start + 10))))
        connected_in = time.monotonic() - connect_start
        await asyncio.sleep(2.0)  # settle: every viewer past its first keyframe
        frames0 = [v["frames"] for v in viewers]
        cpu0, t0, bytes0 = await cpu(), time.monotonic(), sent_bytes[0]
        own0 = os.times()
        await asyncio.sleep(args.seconds)
        cpu1, t1, bytes1 = await cpu(), time.monotonic(), sent_bytes[0]
        own1 = os.times()
        window = t1 - t0
        fps = sorted((v["frames"] - f0) / window for v, f0 in zip(viewers, frames0, strict=True))
        firsts = sorted(v["first"] for v in viewers if v["first"] is not None)
        for pc in pcs:
            await pc.close()
    return {
        "viewers": args.viewers,
        "server_cores": (cpu1 - cpu0) / window,
        "generator_cores": (own1.user + own1.system - own0.user - own0.system) / window,
        "fps_min": fps[0] if fps else 0.0,
        "fps_median": fps[len(fps) // 2] if fps else 0.0,
        "first_frame_p50": firsts[len(firsts) // 2] if firsts else None,
        "first_frame_max": firsts[-1] if firsts else None,
        "no_picture": args.viewers - len(firsts),
        "bitrate": (bytes1 - bytes0) * 8 / window,
        "connected_in": connected_in,
    }


# --- the orchestrator ---------------------------------------------------------------------------------------------


def _run_one(
    mode: str, viewers: int, size: str, args: argparse.Namespace, redis_url: str, logs: Path
) -> dict[str, Any]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (logs / f"server-{mode}-{size}-{viewers}.log").open("w")
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, __file__, "serve", "--mode", mode, "--port", str(port),
         "--redis", redis_url],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the {mode} server did not start; see {log.name}")
            time.sleep(0.1)
        budget = args.seconds + 30 + viewers * 0.5
        result = subprocess.run(
            ["taskset", "-c", "1", sys.executable, __file__, "clients", "--port", str(port), "--viewers",
             str(viewers), "--size", size, "--seconds", str(args.seconds), "--bitrate", str(args.bitrate)],
            capture_output=True, text=True, env=env, timeout=budget, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return {"viewers": viewers, "error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))
    except subprocess.TimeoutExpired:
        return {"viewers": viewers, "error": "timed out"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
        log.close()


def _row(mode: str, size: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {mode} | {size} | {r['viewers']} | failed: {r['error']} | | | | | | |"
    per = r["server_cores"] / r["viewers"]
    per_core = r["viewers"] / r["server_cores"] if r["server_cores"] > 0 else float("inf")
    first = "—" if r["first_frame_p50"] is None else f"{r['first_frame_p50']:.2f} s / {r['first_frame_max']:.2f} s"
    return (
        f"| {mode} | {size} | {r['viewers']} | {r['server_cores']:.2f} | {per * 1000:.1f} m | {per_core:.0f} | "
        f"{r['fps_median']:.1f} / {r['fps_min']:.1f} | {first} | {r['no_picture']} | {r['bitrate'] / 1e6:.2f} | "
        f"{r['generator_cores']:.2f} |"
    )


def _orchestrate(args: argparse.Namespace) -> None:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        sys.exit("needs redis-server on PATH")
    logs = Path(tempfile.mkdtemp(prefix="video-bench-"))
    redis_port = _free_port()
    redis = subprocess.Popen(
        [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    try:
        time.sleep(0.3)
        modes = (("forward", args.forward), ("relay", args.relay))
        plan = [
            (mode, size, int(n)) for size in args.sizes.split(",") for mode, counts in modes
            for n in counts.split(",") if n
        ]  # fmt: skip
        for mode, size, n in plan:
            if time.monotonic() - started > args.max_seconds:
                rows.append(_row(mode, size, {"viewers": n, "error": "skipped: --max-seconds reached"}))
                continue
            result = _run_one(mode, n, size, args, redis_url, logs)
            row = _row(mode, size, result)
            print(row, flush=True)
            rows.append(row)
    finally:
        redis.terminate()
        redis.wait(10)
    command = "loadtests/run_video_bench.py " + " ".join(sys.argv[1:])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    import aiortc
    import av

    text = "\n".join([
        "", f"### {date} — forwarding vs MediaRelay", "",
        f"Command: `.venv/bin/python {command.strip()}`", "",
        f"Machine: nproc {os.cpu_count()}; {platform.platform()}; Python {platform.python_version()}; aiortc "
        f"{aiortc.__version__}, PyAV {av.__version__}; load average at start of report {load}.", "",
        f"Run: server on CPU 0, publisher and viewers on CPU 1; a pre-encoded VP8 clip at 30 fps, target "
        f"{args.bitrate / 1e6:.1f} Mbit/s, keyframe every 30 frames; {args.seconds} s window after a 2 s settle.",
        "",
        "| path | size | viewers | server CPU (cores) | CPU per viewer (cores) | viewers per core | fps per viewer "
        "(median / worst) | first frame (p50 / max) | viewers without a picture | publisher Mbit/s | generator CPU "
        "(cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows, "",
    ])  # fmt: skip
    print(text)
    if not args.no_write:
        with (ROOT / "docs" / "benchmarks.md").open("a") as handle:
            handle.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve")
    serve.add_argument("--mode", choices=("forward", "relay"), required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--redis", required=True)
    clients = sub.add_parser("clients")
    clients.add_argument("--port", type=int, required=True)
    clients.add_argument("--viewers", type=int, required=True)
    clients.add_argument("--size", default="640x480")
    clients.add_argument("--seconds", type=float, default=8)
    clients.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--forward", default="10,20,40,80")
    parser.add_argument("--relay", default="1,2,4")
    parser.add_argument("--sizes", default="640x480,1280x720")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.command == "serve":
        import uvloop

        uvloop.run(_serve(args.mode, args.port, args.redis))
    elif args.command == "clients":
        print(json.dumps(asyncio.run(asyncio.wait_for(_clients(args), args.seconds + 25 + args.viewers * 0.5))))
    else:
        _orchestrate(args)


if __name__ == "__main__":
    main()
