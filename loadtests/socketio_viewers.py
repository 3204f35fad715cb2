"""A fast Socket.IO viewer load generator: N websocket viewers spread over a few local processes.

Each viewer speaks Engine.IO v4 / Socket.IO v5 directly (no python-socketio client, which is too slow at 10k):
it reads the ``0{...}`` open packet, sends ``40`` (or ``40{"token":...}``), waits for the ``40{...}`` connect
ack, optionally joins a room with an acknowledged ``421["join",{"room_id":R}]`` and waits for ``431[...]``,
then answers pings (``2`` → ``3``) and records every measured event (``42["pin",{"run","seq","t0"}]``, see
``bench_protocol.py``): receive time minus ``t0``, per event and per viewer.

Two interchangeable websocket clients share that handshake and the event parsing:

* ``raw`` (default): a bare asyncio protocol; frames are parsed in ``data_received`` and recorded there.
  Measured on one core of this 2-vCPU machine (docs/benchmarks.md): ~11 µs of generator CPU per delivery
  when each read brings one frame — about half of it the kernel's receive path (perf), ~3.5 µs Python — so
  one core absorbs ~90k deliveries/s; ~5 µs and ~200k/s when a read brings 10 frames.
* ``aiohttp``: ``aiohttp.ClientSession.ws_connect`` with a reader task per viewer; a task wake-up and a
  future per message make it ~13 µs per delivery at saturation (~75k deliveries/s on one core, and its
  latencies inflate well before: p99 2.4 s where the raw client saw 0.2 s). Kept as a cross-check: both give
  the same baseline figures, where neither is saturated.

Per-message deflate is never offered (``compress=0``; the raw client sends no extension header). Connections
are opened with a bounded number in flight per process and retried a few times, so 10k connects do not
overrun the server's listen backlog.

Library use (``run_hub_bench.py``)::

    with ViewerFleet(config, viewers=5000, cpus=[1]) as fleet:
        connect = fleet.connect(timeout=120)
        ...                                  # start a run on the server, wait until it has emitted
        delivery = fleet.drain(run, emitted, timeout=20)

Standalone, against any server that implements the ``/bench/*`` routes::

    .venv/bin/python loadtests/socketio_viewers.py --port 8765 --viewers 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import hashlib
import inspect
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol

import aiohttp
import orjson
import psutil
import uvloop
from bench_protocol import EVENT, JOIN_EVENT, BenchClient

__all__ = ["ConnectReport", "DeliveryReport", "ViewerConfig", "ViewerFleet", "percentile"]

# Latency histogram: bucket b holds latencies in [exp(b / _BUCKETS_PER_E), exp((b + 1) / _BUCKETS_PER_E)) ns,
# i.e. about 5% wide, so a delivery percentile read from it is within 5%.
_BUCKETS_PER_E = 20
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); ``inf`` values sort last. 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ViewerConfig:
    """What every viewer does. Picklable: it crosses into the viewer processes."""

    port: int
    host: str = "127.0.0.1"
    path: str = "/socket.io/"
    room: str | int | None = "bench"
    token: str | None = None
    namespace: str = "/"
    event: str = EVENT
    concurrency: int = 100
    connect_timeout: float = 30.0
    connect_retries: int = 2
    max_msg_size: int = 4 * 1024 * 1024
    client: Literal["raw", "aiohttp"] = "raw"

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}?EIO=4&transport=websocket"

    @property
    def nsp_prefix(self) -> str:
        """What follows the packet type for this namespace: nothing for "/", ``/name,`` otherwise."""
        return "" if self.namespace == "/" else f"{self.namespace},"


@dataclass
class ConnectReport:
    """How connecting went, over all viewer processes."""

    requested: int = 0
    connected: int = 0
    failed: int = 0
    wall_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_max_ms: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class DeliveryReport:
    """What the viewers received of one run, merged over all viewer processes."""

    run: int
    emitted: int
    viewers: int  # viewers that connected (those dropped since count as losing what they missed)
    expected: int  # emitted x viewers
    received: int
    lost: int
    viewers_short: int  # viewers that missed at least one event
    disconnected: int  # viewers whose connection ended since connecting
    complete_events: int  # events every viewer got
    drained: bool  # every viewer got every event before the timeout
    drain_wait_s: float  # how long the drain waited after the server had emitted everything
    last_p50_s: float  # time until the last viewer got the event, over events; inf if some viewer never did
    last_p99_s: float
    last_max_s: float
    first_p50_s: float  # time until the first viewer got it
    delivery_p50_s: float  # over every single delivery
    delivery_p99_s: float
    last_receive_ns: int  # wall clock of the run's last delivery
    complete_p50_s: float = 0.0  # time to the last viewer over only the events every viewer got
    complete_p99_s: float = 0.0


# --------------------------------------------------------------------------------------------------------------
# Inside a viewer process


class _ProtocolError(Exception):
    """The server said something a Socket.IO v5 server would not."""


class _Viewer:
    __slots__ = ("alive", "counts", "handle")

    def __init__(self) -> None:
        self.handle: _Handle | None = None  # set once connected and joined
        self.counts: dict[int, int] = {}
        self.alive = False


class _Handle(Protocol):
    """What the process needs of a connected viewer, whichever client implements it."""

    def close(self) -> Any: ...


class _Recorder:
    """Per-process delivery bookkeeping. ``runs[run][seq] = [count, min_ns, max_ns]``."""

    __slots__ = ("event", "event_prefix", "hist", "last_ns", "runs")

    def __init__(self, event: str, event_prefix: str) -> None:
        self.event = event
        self.event_prefix = event_prefix
        self.runs: dict[int, dict[int, list[int]]] = {}
        self.hist: dict[int, dict[int, int]] = {}
        self.last_ns: dict[int, int] = {}

    def on_event_packet(self, viewer: _Viewer, data: str, now: int) -> None:
        """``data`` is a ``42...`` packet received at ``now``: record it if it is the measured event."""
        body = data[len(self.event_prefix) :]
        if body[:1] != "[":  # an event that asks for an ack: 42<id>[...]
            body = body.lstrip("0123456789")
        try:
            packet = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if len(packet) < 2 or packet[0] != self.event:
            return
        argument = packet[1]
        if isinstance(argument, list):  # several events batched into one packet
            for item in argument:
                self.record(viewer, item, now)
        else:
            self.record(viewer, argument, now)

    def record(self, viewer: _Viewer, item: Any, now: int) -> None:
        """Record one measured event: ``item`` is ``{"run","seq","t0"}``, or carries it as ``item["bench"]``."""
        try:
            run = item["run"]
            seq = item["seq"]
            latency = now - item["t0"]
        except (TypeError, KeyError):
            nested = item.get("bench") if isinstance(item, dict) else None
            if isinstance(nested, dict) and "bench" not in nested:
                self.record(viewer, nested, now)
            return
        seqs = self.runs.get(run)
        if seqs is None:
            seqs = self.runs[run] = {}
            self.hist[run] = {}
        cell = seqs.get(seq)
        if cell is None:
            seqs[seq] = [1, latency, latency]
        else:
            cell[0] += 1
            if latency < cell[1]:
                cell[1] = latency
            elif latency > cell[2]:
                cell[2] = latency
        bucket = int(math.log(latency) * _BUCKETS_PER_E) if latency > 1 else 0
        hist = self.hist[run]
        hist[bucket] = hist.get(bucket, 0) + 1
        self.last_ns[run] = now
        counts = viewer.counts
        counts[run] = counts.get(run, 0) + 1


def _masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One client-to-server websocket frame (clients must mask). Only small control/handshake frames go up."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes((0x80 | opcode, 0x80 | size)) if size < 126 else struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    return head + mask + bytes(byte ^ mask[index & 3] for index, byte in enumerate(payload))


class _RawConnection(asyncio.Protocol):
    """A websocket client on a bare asyncio protocol: the ``--client raw`` hot path.

    After the HTTP upgrade, frames are parsed in ``data_received`` and handed straight to the recorder: no
    task, future or queue per message, which is what costs the aiohttp client most of its time per message.
    During the handshake, text packets go to a queue the connecting coroutine reads.
    """

    def __init__(self, process: _ViewerProcess, viewer: _Viewer, key: bytes) -> None:
        self.process = process
        self.viewer = viewer
        self.accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())  # noqa: S324 (RFC 6455)
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.handshake: asyncio.Queue[str | None] | None = asyncio.Queue()
        self.error: str | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.handshake is not None:
            self.error = self.error or f"connection lost during the handshake ({exc!r})"
            self.handshake.put_nowait(None)
        elif self.viewer.alive:
            self.viewer.alive = False
            if not self.process.closing:
                self.process.disconnected += 1

    def data_received(self, data: bytes) -> None:
        if not self.buffer and self.upgraded:
            # the common case: one whole small text frame
            size = len(data)
            if size >= 2 and data[0] == 0x81 and data[1] < 126 and size == data[1] + 2:
                self._on_text(data[2:].decode(), time.time_ns())
                return
        self.buffer += data
        if not self.upgraded and not self._upgrade():
            return
        self._read_frames(time.time_ns())

    # the handshake

    def _upgrade(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            return self._fail(f"upgrade refused: {status.decode(errors='replace')}")
        if self.accept not in head:
            return self._fail("invalid Sec-WebSocket-Accept")
        self.upgraded = True
        return True

    def _fail(self, error: str) -> bool:
        self.error = error
        if self.transport is not None:
            self.transport.close()
        return False

    async def receive_text(self) -> str:
        assert self.handshake is not None
        text = await self.handshake.get()
        if text is None:
            raise _ProtocolError(self.error or "connection closed")
        return text

    async def send_text(self, text: str) -> None:
        if self.transport is None:
            raise _ProtocolError(self.error or "connection closed")
        self.transport.write(_masked_frame(text.encode()))

    def connected(self) -> None:
        """The handshake is over: from now on text goes to the recorder."""
        self.handshake = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_masked_frame(b"\x03\xe8", 0x8))
            self.transport.close()

    # frames

    def _read_frames(self, now: int) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            size = buf[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buf) < 4:
                    return
                size = struct.unpack_from("!H", buf, 2)[0]
                offset = 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size = struct.unpack_from("!Q", buf, 2)[0]
                offset = 10
            if buf[1] & 0x80 or size > self.process.config.max_msg_size:
                self._fail("masked or oversized frame from the server")
                return
            if len(buf) < offset + size:
                return
            payload = bytes(buf[offset : offset + size])
            del buf[: offset + size]
            if opcode == 0x1:
                self._on_text(payload.decode(), now)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(_masked_frame(payload, 0xA))
            elif opcode == 0x8:
                self.close()
                return
            # continuation frames: servers under test send whole frames; a fragmented message is dropped

    def _on_text(self, text: str, now: int) -> None:
        if self.handshake is not None:
            self.handshake.put_nowait(text)
        elif text.startswith(self.process.recorder.event_prefix):
            self.process.recorder.on_event_packet(self.viewer, text, now)
        elif text == "2" and self.transport is not None:
            self.transport.write(_masked_frame(b"3"))
        elif text[:1] == "1":  # Engine.IO close
            self.close()


class _ViewerProcess:
    """The viewers of one process, driven by commands from the parent over a pipe."""

    def __init__(self, config: ViewerConfig, count: int, conn: multiprocessing.connection.Connection) -> None:
        self.config = config
        self.conn = conn
        self.viewers = [_Viewer() for _ in range(count)]
        self.recorder = _Recorder(config.event, f"42{config.nsp_prefix}")
        self.disconnected = 0
        self.closing = False
        self.readers: set[asyncio.Task[None]] = set()
        self.connect_packet = "40" + config.nsp_prefix + (json.dumps({"token": config.token}) if config.token else "")
        join = json.dumps([JOIN_EVENT, {"room_id": config.room}], separators=(",", ":"))
        self.join_packet = f"42{config.nsp_prefix}1{join}"
        self.join_ack = f"43{config.nsp_prefix}1"
        self.upgrade_request = (
            f"GET {config.path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: {config.host}:{config.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        )
        self.session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
            self.session = session
            commands: asyncio.Queue[Any] = asyncio.Queue()
            loop = asyncio.get_running_loop()
            loop.add_reader(self.conn.fileno(), self._on_command_ready, commands)
            try:
                await self._serve(commands)
            finally:
                loop.remove_reader(self.conn.fileno())
                await self._close_all()

    def _on_command_ready(self, commands: asyncio.Queue[Any]) -> None:
        try:
            commands.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            commands.put_nowait(("close",))

    async def _serve(self, commands: asyncio.Queue[Any]) -> None:
        while True:
            command = await commands.get()
            kind = command[0]
            if kind == "connect":
                self.conn.send(("connected", await self._connect_all()))
                gc.freeze()  # the viewers are long-lived: keep the collector from walking them on every pass
            elif kind == "drain":
                _, run, emitted, wait_s = command
                self.conn.send(("drained", await self._drain(run, emitted, wait_s)))
            elif kind == "close":
                return

    # connecting

    async def _connect_all(self) -> dict[str, Any]:
        config = self.config
        gate = asyncio.Semaphore(max(1, config.concurrency))
        latencies: list[float] = []
        errors: list[str] = []
        connect_one = self._connect_raw if config.client == "raw" else self._connect_aiohttp

        async def connect(viewer: _Viewer) -> None:
            for attempt in range(config.connect_retries + 1):
                async with gate:
                    started = time.perf_counter()
                    try:
                        async with asyncio.timeout(config.connect_timeout):
                            await connect_one(viewer)
                    except (OSError, TimeoutError, aiohttp.ClientError, _ProtocolError) as exc:
                        if len(errors) < 5:
                            errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    else:
                        latencies.append(time.perf_counter() - started)
                        return
                await asyncio.sleep(0.2 * (attempt + 1))

        started = time.perf_counter()
        await asyncio.gather(*(connect(viewer) for viewer in self.viewers))
        wall = time.perf_counter() - started
        return {
            "connected": len(latencies),
            "failed": len(self.viewers) - len(latencies),
            "wall_s": wall,
            "latencies": latencies,
            "errors": errors,
        }

    async def _handshake(self, receive: Callable[[], Awaitable[str]], send: Callable[[str], Awaitable[None]]) -> None:
        """Engine.IO open, Socket.IO connect, and the acknowledged join, over either client."""

        async def await_packet(prefix: str, refuse: str | None = None) -> str:
            while True:
                text = await receive()
                if text.startswith(prefix):
                    return text[len(prefix) :]
                if text == "2":
                    await send("3")
                elif refuse is not None and text.startswith(refuse):
                    raise _ProtocolError(f"connection refused: {text[:200]}")
                # anything else (an early broadcast) is ignored until the viewer counts as connected

        opening = await receive()
        if not opening.startswith("0"):
            raise _ProtocolError(f"expected the Engine.IO open packet, got {opening[:80]!r}")
        await send(self.connect_packet)
        await await_packet("40" + self.config.nsp_prefix, refuse="44")
        if self.config.room is not None:
            await send(self.join_packet)
            answer = await await_packet(self.join_ack)
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, IndexError, AttributeError):
                if orjson.loads(answer)[0].get("ok") is False:  # the acknowledgement's {"ok": false, "error": ...}
                    raise _ProtocolError(f"join refused: {answer[:200]}")

    async def _connect_raw(self, viewer: _Viewer) -> None:
        config = self.config
        key = base64.b64encode(os.urandom(16))
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _RawConnection(self, viewer, key), config.host, config.port
        )
        try:
            assert connection.transport is not None
            connection.transport.write(f"{self.upgrade_request}Sec-WebSocket-Key: {key.decode()}\r\n\r\n".encode())
            await self._handshake(connection.receive_text, connection.send_text)
        except BaseException:
            connection.close()
            raise
        connection.connected()
        viewer.handle = connection
        viewer.alive = True

    async def _connect_aiohttp(self, viewer: _Viewer) -> None:
        assert self.session is not None
        ws = await self.session.ws_connect(
            self.config.url,
            compress=0,
            autoping=True,
            max_msg_size=self.config.max_msg_size,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
        )

        async def receive() -> str:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise _ProtocolError(f"connection ended during the handshake ({message.type.name})")
            text: str = message.data
            return text

        try:
            await self._handshake(receive, ws.send_str)
        except BaseException:
            await ws.close()
            raise
        viewer.handle = ws
        viewer.alive = True
        task = asyncio.get_running_loop().create_task(self._read_aiohttp(viewer, ws))
        self.readers.add(task)
        task.add_done_callback(self.readers.discard)

    # receiving (the raw client receives in _RawConnection.data_received)

    async def _read_aiohttp(self, viewer: _Viewer, ws: aiohttp.ClientWebSocketResponse) -> None:
        on_event_packet = self.recorder.on_event_packet
        event_prefix = self.recorder.event_prefix
        text_type = aiohttp.WSMsgType.TEXT
        time_ns = time.time_ns
        try:
            async for message in ws:
                if message.type is not text_type:
                    if message.type is aiohttp.WSMsgType.ERROR:
                        break
                    continue
                data: str = message.data
                if data.startswith(event_prefix):
                    on_event_packet(viewer, data, time_ns())
                elif data == "2":
                    await ws.send_str("3")
                elif data[:1] == "1":  # Engine.IO close
                    break
        except (aiohttp.ClientError, OSError):
            pass
        finally:
            viewer.alive = False
            if not self.closing:
                self.disconnected += 1

    async def _drain(self, run: int, emitted: int, wait_s: float) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = started + wait_s
        while True:
            short = sum(1 for viewer in self.viewers if viewer.alive and viewer.counts.get(run, 0) < emitted)
            if short == 0 or time.perf_counter() >= deadline:
                break
            await asyncio.sleep(0.05)
        return {
            "seqs": self.recorder.runs.get(run, {}),
            "hist": self.recorder.hist.get(run, {}),
            "counts": [viewer.counts.get(run, 0) for viewer in self.viewers if viewer.handle is not None],
            "disconnected": self.disconnected,
            "waited_s": time.perf_counter() - started,
            "last_ns": self.recorder.last_ns.get(run, 0),
        }

    async def _close_all(self) -> None:
        self.closing = True
        for task in list(self.readers):
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        closes = []
        for viewer in self.viewers:
            if viewer.handle is not None:
                result = viewer.handle.close()
                if inspect.isawaitable(result):
                    closes.append(result)
        if closes:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.gather(*closes, return_exceptions=True)
        await asyncio.sleep(0.1)  # let the raw transports flush their close frames


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if needed + 64 > hard:
        raise SystemExit(f"need {needed} sockets in one process but the hard fd limit is {hard}")


def _process_main(
    config: ViewerConfig, count: int, cpus: list[int] | None, conn: multiprocessing.connection.Connection
) -> None:
    """Entry point of one viewer process."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    _raise_fd_limit(count)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_ViewerProcess(config, count, conn).run())


# --------------------------------------------------------------------------------------------------------------
# In the parent


class ViewerFleet:
    """Parent-side handle on the viewer processes. Use as a context manager: the processes always end."""

    def __init__(
        self,
        config: ViewerConfig,
        viewers: int,
        processes: int | None = None,
        cpus: Iterable[int] | None = None,
    ) -> None:
        self.config = config
        self.viewers = viewers
        self.cpus = sorted(cpus) if cpus is not None else None
        if processes is None:
            processes = len(self.cpus) if self.cpus else 1
        self.processes = max(1, min(processes, viewers))
        self._children: list[tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]] = []
        self._connected = 0

    def __enter__(self) -> ViewerFleet:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._children if process.pid is not None]

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        base, extra = divmod(self.viewers, self.processes)
        for index in range(self.processes):
            count = base + (1 if index < extra else 0)
            cpus = [self.cpus[index % len(self.cpus)]] if self.cpus else None
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_process_main, args=(self.config, count, cpus, child_end), name=f"viewers-{index}", daemon=True
            )
            process.start()
            child_end.close()
            self._children.append((process, parent_end))

    def _ask(self, command: tuple[Any, ...], timeout: float) -> list[Any]:
        for _, conn in self._children:
            conn.send(command)
        deadline = time.monotonic() + timeout
        answers = []
        for process, conn in self._children:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"viewer process {process.name} did not answer {command[0]!r} in {timeout:.0f} s")
            answers.append(conn.recv()[1])
        return answers

    def connect(self, timeout: float) -> ConnectReport:
        """Open every viewer (bounded in flight, retried); returns when all processes are done trying."""
        answers = self._ask(("connect",), timeout)
        latencies = [latency for answer in answers for latency in answer["latencies"]]
        self._connected = sum(answer["connected"] for answer in answers)
        return ConnectReport(
            requested=self.viewers,
            connected=self._connected,
            failed=sum(answer["failed"] for answer in answers),
            wall_s=max(answer["wall_s"] for answer in answers),
            latency_p50_ms=percentile(latencies, 0.50) * 1000,
            latency_p99_ms=percentile(latencies, 0.99) * 1000,
            latency_max_ms=max(latencies, default=0.0) * 1000,
            errors=[error for answer in answers for error in answer["errors"]][:5],
        )

    def drain(self, run: int, emitted: int, timeout: float) -> DeliveryReport:
        """Wait until every live viewer has all ``emitted`` events of ``run`` (or ``timeout``), then merge."""
        answers = self._ask(("drain", run, emitted, timeout), timeout + 30)
        seqs: dict[int, list[int]] = {}
        hist: dict[int, int] = {}
        counts: list[int] = []
        for answer in answers:
            for seq, (count, low, high) in answer["seqs"].items():
                cell = seqs.get(seq)
                if cell is None:
                    seqs[seq] = [count, low, high]
                else:
                    cell[0] += count
                    cell[1] = min(cell[1], low)
                    cell[2] = max(cell[2], high)
            for bucket, count in answer["hist"].items():
                hist[bucket] = hist.get(bucket, 0) + count
            counts.extend(answer["counts"])
        viewers = len(counts)
        # events the server emitted after it reported ``emitted`` (a lagging timer) are not counted
        received = sum(cell[0] for seq, cell in seqs.items() if seq < emitted)
        last: list[float] = []
        first: list[float] = []
        for seq in range(emitted):
            cell = seqs.get(seq)
            if cell is None:
                last.append(math.inf)
                continue
            first.append(cell[1] / 1e9)
            last.append(cell[2] / 1e9 if cell[0] >= viewers else math.inf)
        return DeliveryReport(
            run=run,
            emitted=emitted,
            viewers=viewers,
            expected=emitted * viewers,
            received=received,
            lost=emitted * viewers - received,
            viewers_short=sum(1 for count in counts if count < emitted),  # approximate if events came late
            disconnected=sum(answer["disconnected"] for answer in answers),
            complete_events=sum(1 for value in last if value != math.inf),
            drained=received == emitted * viewers,
            drain_wait_s=max(answer["waited_s"] for answer in answers),
            last_p50_s=percentile(last, 0.50),
            last_p99_s=percentile(last, 0.99),
            last_max_s=max(last, default=0.0),
            first_p50_s=percentile(first, 0.50),
            delivery_p50_s=_hist_percentile(hist, 0.50),
            delivery_p99_s=_hist_percentile(hist, 0.99),
            last_receive_ns=max(answer["last_ns"] for answer in answers),
            complete_p50_s=percentile([value for value in last if value != math.inf], 0.50),
            complete_p99_s=percentile([value for value in last if value != math.inf], 0.99),
        )

    def cpu_seconds(self) -> float:
        """User + system CPU the viewer processes have used so far."""
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
        return total

    def close(self) -> None:
        """Ask the processes to close their sockets and exit; terminate, then kill, any that do not."""
        for _, conn in self._children:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("close",))
        deadline = time.monotonic() + 10
        for process, _ in self._children:
            process.join(max(0.1, deadline - time.monotonic()))
        for process, _ in self._children:
            if process.is_alive():
                process.terminate()
                process.join(2)
            if process.is_alive():
                process.kill()
                process.join(2)
        for _, conn in self._children:
            conn.close()
        self._children.clear()


def _hist_percentile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return 0.0
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return math.exp((bucket + 0.5) / _BUCKETS_PER_E) / 1e9
    return math.inf  # pragma: no cover


# --------------------------------------------------------------------------------------------------------------
# Standalone use


def _room_arg(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Connect N Socket.IO viewers, trigger a timed run, report.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=None, help="viewer processes (default: one per CPU)")
    parser.add_argument("--cpus", default=None, help="CPUs for the viewers, e.g. 1 or 1-3 (default: any)")
    parser.add_argument("--room", type=_room_arg, default="bench")
    parser.add_argument("--token", default=None, help='sent as 40{"token": ...}')
    parser.add_argument("--rate", type=float, default=10.0, help="events per second asked of the server")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the server emits")
    parser.add_argument("--drain-timeout", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=100, help="connects in flight, over all processes")
    parser.add_argument("--no-trigger", action="store_true", help="only connect, hold for --seconds, disconnect")
    parser.add_argument("--client", choices=["raw", "aiohttp"], default="raw", help="viewer websocket client")
    args = parser.parse_args(argv)
    cpus = _parse_cpus(args.cpus) if args.cpus else None
    processes = args.processes or (len(cpus) if cpus else 1)
    config = ViewerConfig(
        port=args.port,
        room=args.room,
        token=args.token,
        concurrency=max(1, args.concurrency // processes),
        client=args.client,
    )
    with ViewerFleet(config, args.viewers, processes=processes, cpus=cpus) as fleet:
        connect = fleet.connect(timeout=max(60.0, args.viewers / 50))
        print(json.dumps({"connect": asdict(connect)}), flush=True)
        if args.no_trigger:
            time.sleep(args.seconds)
            return 0
        control = BenchClient(args.port)
        started = control.start(args.room, args.rate, args.seconds)
        time.sleep(args.seconds)
        status = control.wait_done(started["run"], time.monotonic() + args.seconds + 30)
        report = fleet.drain(started["run"], status["emitted"], args.drain_timeout)
        print(json.dumps({"server": status, "delivery": asdict(report)}, default=str), flush=True)
    return 0


def _parse_cpus(text: str) -> list[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return sorted(cpus)


if __name__ == "__main__":
    sys.exit(main())
