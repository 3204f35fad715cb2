"""A fast Socket.IO buyer load generator: N signed-in buyers over a few processes, each tapping Buy.

Each buyer is one websocket connection speaking Engine.IO v4 / Socket.IO v5 directly on a bare asyncio protocol
(no python-socketio client, no task or future per message), like `socketio_viewers.py`'s raw client:

    GET /socket.io/?EIO=4&transport=websocket  ->  0{...}          (Engine.IO open)
    40{"token":"<bearer>"}                      ->  40{"sid":...}   (Socket.IO connect, signed in)
    420["join",{"room_id":R}]                   ->  430[{"ok":true,...}]
    42<n>["buy",{"room_id":R,"product_id":P,"quantity":1,"key":"b<attempt>"}]
                                                ->  43<n>[{"ok":true,"data":{"hold":{...},"replayed":false}}]
                                                 or 43<n>[{"ok":false,"error":{"code":"sold_out",...}}]

Everything else the server pushes (stock counters, viewer counts, the pin) is counted and dropped; pings (`2`)
are answered (`3`). Client frames are masked with an all-zero key (RFC 6455 requires a mask, not a random one;
a loopback generator need not defend against proxy cache poisoning), so sending costs no per-byte Python work.

The burst is closed-loop with a bounded window: every process keeps at most `window` buys outstanding over its
buyers, a buyer never has two of its own taps in flight (a person waits for the answer before tapping again),
and each tap is timed from its write to its acknowledgement (`time.perf_counter_ns`, in the generator).
Attempts are given in order as a list of buyer indices; each goes to the process that owns the buyer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import resource
import struct
import time
from array import array
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil
import uvloop

__all__ = ["BurstReport", "BuyerFleet", "ConnectReport", "FleetConfig", "emit_once"]

_ZERO_MASK = b"\x00\x00\x00\x00"


def _frame(text: bytes) -> bytes:
    """A client text frame with an all-zero masking key (the payload goes out unchanged)."""
    size = len(text)
    if size < 126:
        return bytes((0x81, 0x80 | size)) + _ZERO_MASK + text
    return struct.pack("!BBH", 0x81, 0x80 | 126, size) + _ZERO_MASK + text


@dataclass(frozen=True)
class FleetConfig:
    """What every buyer does. Picklable: it crosses into the generator processes."""

    ports: tuple[int, ...]  # buyer i connects to ports[i % len(ports)] (several hub processes)
    room_id: int
    product_id: int
    host: str = "127.0.0.1"
    connect_concurrency: int = 64  # handshakes in flight per process
    connect_timeout: float = 30.0
    event: str = "buy"  # or "claim_voucher" (of `voucher_id`): what a tap sends
    voucher_id: int = 0
    retry_every: int = 0  # every Nth tap resends the buyer's previous key (a retry: answered `replayed`); 0: none


@dataclass
class ConnectReport:
    requested: int = 0
    connected: int = 0
    failed: int = 0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class BurstReport:
    attempts: int = 0
    answered: int = 0
    unanswered: int = 0
    wall_s: float = 0.0  # first write to last acknowledgement, over all processes
    first_ns: int = 0
    last_ns: int = 0
    successes: int = 0  # new holds (not replayed)
    replayed: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    pushed_frames: int = 0  # server events received during the burst (stock counters...)
    disconnected: int = 0
    generator_cpu_s: float = 0.0
    units_by_buyer: dict[int, int] = field(default_factory=dict)  # from the acks: units each buyer got
    hold_ids: int = 0  # distinct hold ids acknowledged

    @property
    def rate(self) -> float:
        return self.answered / self.wall_s if self.wall_s else 0.0


# --------------------------------------------------------------------------------------------------------------
# One connection


class _Buyer(asyncio.Protocol):
    """One buyer's websocket. The handshake resolves `ready`; after it, acks go to the process's callback."""

    __slots__ = (
        "ack_id",
        "attempt",
        "buf",
        "busy",
        "index",
        "key",
        "owner",
        "pending",
        "ready",
        "sent_ns",
        "state",
        "transport",
        "waiters",
    )  # fmt: skip

    def __init__(self, owner: _Process, index: int) -> None:
        self.owner = owner
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = "upgrade"  # upgrade -> open -> connect -> join -> ready
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ack_id = 0
        self.busy = False
        self.pending: deque[int] = deque()
        self.sent_ns = 0
        self.attempt = -1
        self.key = -1  # the attempt number the last tap's idempotency key was made of
        self.waiters: dict[int, asyncio.Future[Any]] = {}  # acks awaited by coroutines (the host's pin)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during the handshake in state {self.state}: {exc!r}"))
        elif not self.owner.closing:
            self.owner.on_lost(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.state == "upgrade":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status + b" ":
                self._fail(f"upgrade refused: {status.decode(errors='replace')}")
                return
            self.state = "open"
        while len(buf) >= 2:
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
            end = offset + size
            if len(buf) < end:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[offset:end])
            del buf[:end]
            if opcode == 0x1:
                self._on_text(payload)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + _ZERO_MASK + payload)
            elif opcode == 0x8:
                self.close()
                return

    def _fail(self, error: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(error))
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\x88\x82" + _ZERO_MASK + b"\x03\xe8")
            self.transport.close()

    def send(self, text: bytes) -> None:
        if self.transport is not None:
            self.transport.write(_frame(text))

    def _on_text(self, text: bytes) -> None:
        head = text[:2]
        if head == b"43":
            self._on_ack(text)
        elif head == b"42":
            self.owner.pushed += 1
        elif text == b"2":
            self.send(b"3")
        elif self.state == "open" and text[:1] == b"0":
            self.state = "connect"
            self.send(b"40" + orjson.dumps({"token": self.owner.tokens[self.index]}))
        elif self.state == "connect" and head == b"40":
            self.state = "join"
            self.ack_id += 1
            join = orjson.dumps(["join", {"room_id": self.owner.room_id}])
            self.send(b"42" + str(self.ack_id).encode() + join)
        elif head == b"44":
            self._fail(f"connect refused: {text[:200].decode(errors='replace')}")
        elif text[:1] == b"1":
            self.close()

    def _on_ack(self, text: bytes) -> None:
        cut = 2
        while cut < len(text) and 48 <= text[cut] <= 57:
            cut += 1
        ack = int(text[2:cut])
        body = orjson.loads(text[cut:])[0]
        waiter = self.waiters.pop(ack, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(body)
            return
        if self.state == "join":
            if body.get("ok"):
                self.state = "ready"
                if not self.ready.done():
                    self.ready.set_result(None)
            else:
                self._fail(f"join refused: {body.get('error')}")
            return
        self.owner.on_ack(self, body)

    def emit(self, event: str, payload: dict[str, Any]) -> asyncio.Future[Any]:
        """Send an event with an ack id; the future gets the acknowledgement's first argument."""
        self.ack_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters[self.ack_id] = future
        self.send(b"42" + str(self.ack_id).encode() + orjson.dumps([event, payload]))
        return future


def _upgrade_request(host: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def emit_once(
    port: int,
    token: str,
    room_id: int,
    event: str,
    payload: dict[str, Any],
    timeout: float = 10,  # noqa: ASYNC109
) -> Any:
    """Connect as `token`, join `room_id`, send one event and return its ack (the host's pin)."""
    process = _Process(FleetConfig((port,), room_id, 0, connect_timeout=timeout), [0], [token], [0])
    report = await process.connect()
    buyer = process.buyers[0]
    if buyer is None:
        raise ConnectionError(f"could not connect and join: {report['errors']}")
    try:
        async with asyncio.timeout(timeout):
            return await buyer.emit(event, payload)
    finally:
        await process.close()


# --------------------------------------------------------------------------------------------------------------
# One generator process


class _Process:
    def __init__(self, config: FleetConfig, indices: list[int], tokens: list[str], buyer_ids: list[int]) -> None:
        self.config = config
        self.room_id = config.room_id
        self.indices = indices  # global buyer indices owned here
        self.tokens = tokens
        self.buyer_ids = buyer_ids
        self.buyers: list[_Buyer | None] = [None] * len(indices)
        self.closing = False
        self.pushed = 0
        self.disconnected = 0
        # burst state
        self.attempts: list[int] = []  # local buyer positions, in order
        self.cursor = 0
        self.window = 0
        self.in_flight = 0
        self.answered = 0
        self.latencies = array("q")
        self.codes: Counter[str] = Counter()
        self.successes = 0
        self.replayed = 0
        self.units: Counter[int] = Counter()
        self.holds: set[str] = set()
        self.first_ns = 0
        self.last_ns = 0
        self.done: asyncio.Future[None] | None = None
        self.buy_prefix = b""

    async def connect(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.config.connect_concurrency)
        errors: list[str] = []
        started = time.perf_counter()

        async def one(position: int) -> None:
            index = self.indices[position]
            port = self.config.ports[index % len(self.config.ports)]
            for attempt in range(3):
                async with gate:
                    try:
                        _, buyer = await loop.create_connection(lambda: _Buyer(self, position), self.config.host, port)
                        assert buyer.transport is not None
                        buyer.transport.write(_upgrade_request(self.config.host, port))
                        async with asyncio.timeout(self.config.connect_timeout):
                            await buyer.ready
                        self.buyers[position] = buyer
                        return
                    except (OSError, TimeoutError, ConnectionError) as exc:
                        if attempt == 2 and len(errors) < 5:
                            errors.append(f"{type(exc).__name__}: {exc}"[:200])
                        with contextlib.suppress(UnboundLocalError):
                            buyer.close()
                await asyncio.sleep(0.2 * (attempt + 1))

        await asyncio.gather(*(one(position) for position in range(len(self.indices))))
        connected = sum(1 for b in self.buyers if b is not None)
        return {
            "connected": connected, "failed": len(self.indices) - connected,
            "wall_s": time.perf_counter() - started, "errors": errors,
        }  # fmt: skip

    # the burst

    async def burst(self, attempts: list[int], window: int, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        self.attempts = attempts
        self.window = max(1, window)
        # `key`, the deprecated alias of `idempotency_key`: hubs before 2026-12-03 (`--previous`) know only it.
        self.buy_prefix = b'["buy",{"room_id":%d,"product_id":%d,"quantity":1,"key":"b' % (
            self.room_id, self.config.product_id,
        )  # fmt: skip
        if self.config.event == "claim_voucher":
            self.buy_prefix = b'["claim_voucher",{"room_id":%d,"voucher_id":%d,"idempotency_key":"b' % (
                self.room_id, self.config.voucher_id,
            )  # fmt: skip
        self.done = asyncio.get_running_loop().create_future()
        self.pushed = 0
        cpu0 = time.process_time()
        self.first_ns = time.perf_counter_ns()
        self._fill()
        if self.answered < len(attempts):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.done
        return {
            "attempts": len(attempts), "answered": self.answered, "latencies": self.latencies.tobytes(),
            "codes": dict(self.codes), "successes": self.successes, "replayed": self.replayed,
            "first_ns": self.first_ns, "last_ns": self.last_ns, "pushed": self.pushed,
            "disconnected": self.disconnected, "cpu_s": time.process_time() - cpu0,
            "units": {self.buyer_ids[p]: n for p, n in self.units.items()}, "holds": len(self.holds),
        }  # fmt: skip

    def _fill(self) -> None:
        attempts = self.attempts
        while self.in_flight < self.window and self.cursor < len(attempts):
            n = self.cursor
            self.cursor += 1
            buyer = self.buyers[attempts[n]]
            if buyer is None or buyer.transport is None:
                self._answer("not_connected", 0)
                continue
            if buyer.busy:
                buyer.pending.append(n)
                continue
            self._send(buyer, n)

    def _send(self, buyer: _Buyer, n: int) -> None:
        buyer.busy = True
        buyer.ack_id += 1
        buyer.attempt = n
        every = self.config.retry_every
        buyer.key = buyer.key if every and n % every == 0 and buyer.key >= 0 else n
        self.in_flight += 1
        text = b'42%d%s%d-%d"}]' % (buyer.ack_id, self.buy_prefix, os.getpid(), buyer.key)
        buyer.sent_ns = time.perf_counter_ns()
        buyer.send(text)

    def on_ack(self, buyer: _Buyer, body: dict[str, Any]) -> None:
        now = time.perf_counter_ns()
        if not buyer.busy:
            return
        self.latencies.append(now - buyer.sent_ns)
        buyer.busy = False
        self.in_flight -= 1
        if body.get("ok"):
            data = body.get("data") or {}
            if data.get("replayed"):
                self.replayed += 1
            else:
                self.successes += 1
                hold = data.get("hold") or data.get("claim") or {}  # a claim counts as 1
                self.units[buyer.index] += int(hold.get("quantity", 1))
                self.holds.add(str(hold.get("id")))
            self.codes["ok"] += 1
        else:
            self.codes[str((body.get("error") or {}).get("code"))] += 1
        self._answer(None, now)
        if buyer.pending:
            self._send(buyer, buyer.pending.popleft())
        self._fill()

    def _answer(self, code: str | None, now: int) -> None:
        if code is not None:
            self.codes[code] += 1
        self.answered += 1
        self.last_ns = now or time.perf_counter_ns()
        if self.answered >= len(self.attempts) and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def on_lost(self, buyer: _Buyer) -> None:
        self.disconnected += 1
        if buyer.busy:
            buyer.busy = False
            self.in_flight -= 1
            self._answer("disconnected", 0)
        while buyer.pending:
            buyer.pending.popleft()
            self._answer("disconnected", 0)
        if self.done is not None:
            self._fill()

    async def close(self) -> None:
        self.closing = True
        for buyer in self.buyers:
            if buyer is not None:
                buyer.close()
        await asyncio.sleep(0.2)

    async def run(self, conn: multiprocessing.connection.Connection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            ready = asyncio.Event()
            loop.add_reader(conn.fileno(), ready.set)
            try:
                await ready.wait()
            finally:
                loop.remove_reader(conn.fileno())
                os.set_blocking(conn.fileno(), True)  # the loop made it non-blocking; answers may exceed a pipe
            command = conn.recv()
            if command[0] == "connect":
                conn.send(("connect", await self.connect()))
            elif command[0] == "burst":
                conn.send(("burst", await self.burst(command[1], command[2], command[3])))
            elif command[0] == "close":
                await self.close()
                conn.send(("closed", None))
                return


def _process_main(
    config: FleetConfig, indices: list[int], tokens: list[str], buyer_ids: list[int], cpus: list[int] | None,
    conn: multiprocessing.connection.Connection,
) -> None:  # fmt: skip
    if cpus:
        os.sched_setaffinity(0, cpus)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if len(indices) + 64 > hard:
        raise SystemExit(f"need {len(indices)} sockets but the fd limit is {hard}")
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_Process(config, indices, tokens, buyer_ids).run(conn))


# --------------------------------------------------------------------------------------------------------------
# In the parent


class BuyerFleet:
    """Buyers over `processes` generator processes (buyer i in process i % processes). A context manager."""

    def __init__(
        self, config: FleetConfig, tokens: Sequence[str], buyer_ids: Sequence[int], processes: int = 1,
        cpus: Sequence[int] | None = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.tokens = list(tokens)
        self.buyer_ids = list(buyer_ids)
        self.processes = max(1, processes)
        self.cpus = list(cpus) if cpus else None
        self._children: list[tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]] = []

    def __enter__(self) -> BuyerFleet:
        context = multiprocessing.get_context("spawn")
        for p in range(self.processes):
            indices = list(range(p, len(self.tokens), self.processes))
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_process_main, name=f"buyers-{p}", daemon=True,
                args=(self.config, indices, [self.tokens[i] for i in indices], [self.buyer_ids[i] for i in indices],
                      self.cpus, child_end),
            )  # fmt: skip
            process.start()
            child_end.close()
            self._children.append((process, parent_end))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._children if process.pid is not None]

    def _ask(self, commands: list[tuple[Any, ...]], timeout: float) -> list[Any]:
        for (_, conn), command in zip(self._children, commands, strict=True):
            conn.send(command)
        deadline = time.monotonic() + timeout
        answers = []
        for process, conn in self._children:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(
                    f"generator process {process.name} did not answer {commands[0][0]!r} in {timeout:.0f} s"
                )
            answers.append(conn.recv()[1])
        return answers

    def connect(self, timeout: float) -> ConnectReport:
        answers = self._ask([("connect",)] * self.processes, timeout)
        return ConnectReport(
            requested=len(self.tokens), connected=sum(a["connected"] for a in answers),
            failed=sum(a["failed"] for a in answers), wall_s=max(a["wall_s"] for a in answers),
            errors=[e for a in answers for e in a["errors"]][:5],
        )  # fmt: skip

    def burst(self, attempts: Sequence[int], window: int, timeout: float) -> BurstReport:
        """Fire `attempts` (buyer indices, in order) with at most `window` in flight over all processes."""
        per: list[list[int]] = [[] for _ in range(self.processes)]
        for index in attempts:
            per[index % self.processes].append(index // self.processes)
        share = max(1, window // self.processes)
        answers = self._ask([("burst", per[p], share, timeout) for p in range(self.processes)], timeout + 30)
        report = BurstReport(attempts=len(attempts))
        codes: Counter[str] = Counter()
        latencies = array("q")
        for a in answers:
            report.answered += a["answered"]
            report.successes += a["successes"]
            report.replayed += a["replayed"]
            report.pushed_frames += a["pushed"]
            report.disconnected += a["disconnected"]
            report.generator_cpu_s += a["cpu_s"]
            report.hold_ids += a["holds"]
            codes.update(a["codes"])
            chunk = array("q")
            chunk.frombytes(a["latencies"])
            latencies.extend(chunk)
            for buyer, units in a["units"].items():
                report.units_by_buyer[buyer] = report.units_by_buyer.get(buyer, 0) + units
        report.unanswered = report.attempts - report.answered
        # perf_counter_ns is system-wide (CLOCK_MONOTONIC) on Linux: comparable across processes
        report.first_ns = min(a["first_ns"] for a in answers)
        report.last_ns = max(a["last_ns"] for a in answers)
        report.wall_s = (report.last_ns - report.first_ns) / 1e9
        codes.pop("ok", None)
        report.refusals = dict(codes.most_common())
        report.latencies_ns = sorted(latencies)
        return report

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
        return total

    def close(self) -> None:
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
