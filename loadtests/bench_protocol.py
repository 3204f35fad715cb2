"""The fan-out benchmark's wire contract, in one place: the timed payload, the server-side emitter, and the
HTTP control routes every target server exposes.

Measured event (Socket.IO v5 over Engine.IO v4, default namespace)::

    42["pin",{"run":R,"seq":N,"t0":T,...}]

``run`` numbers one ``POST /bench/start`` call, ``seq`` counts that run's events from 0, and ``t0`` is
``time.time_ns()`` in the server process at the moment the emit is called. Viewers run on the same machine and
read the same clock, so ``receive time - t0`` is the event's latency to that viewer. A target may also send a
list of such objects as the event's argument (several events batched in one frame), or carry the object as the
``bench`` member of its own payload (``{"room_id": ..., "bench": {"run","seq","t0"}}``); viewers accept all
three, under whatever event name the target uses (``ViewerConfig.event``).

Viewers join a room with an acknowledged event and wait for the ack before they count as connected::

    421["join",{"room_id":ROOM}]      ->      431[...]

Control routes (plain HTTP on the same port as the websockets; JSON answers):

``GET /bench/health``
    ``{"ok": true, "viewers": <connected sockets>, "pid": <server pid>}``
``POST /bench/start?room=ROOM&rate=10&seconds=20&pad=0&burst=1``
    Start emitting ``rate`` events per second for ``seconds`` into ``room`` from a timer inside the server (no
    host client needed). ``pad`` adds that many bytes of filler to each payload. ``burst`` (optional) makes
    each tick emit that many events; a target that can, writes them to each viewer at once (the reference
    server does; it is how the harness loads the generator harder than the server). Answers
    ``{"run": R, "planned": N}``.
``GET /bench/status?run=R``
    ``{"run", "planned", "emitted", "done", "lag_p99_ms", "lag_max_ms", "emit_p99_ms", "emit_max_ms"}``.
    ``lag`` is how late the timer fired against its schedule; ``emit`` is how long the emit call took (for
    python-socketio: until every recipient's queue holds the packet). ``done`` is true once every emit call of
    the run has returned.

A target that implements this contract can be measured by ``run_hub_bench.py`` unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EVENT",
    "JOIN_EVENT",
    "BenchClient",
    "BenchRuns",
    "RunStatus",
]

EVENT = "pin"
JOIN_EVENT = "join"

EmitFn = Callable[[dict[str, Any]], Awaitable[None] | None]
EmitBatchFn = Callable[[list[dict[str, Any]]], None]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class RunStatus:
    """One emitting run's progress, as ``GET /bench/status`` reports it."""

    run: int
    planned: int
    emitted: int = 0
    done: bool = False
    lags_s: list[float] = field(default_factory=list)
    emit_s: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "planned": self.planned,
            "emitted": self.emitted,
            "done": self.done,
            "lag_p99_ms": round(_percentile(self.lags_s, 0.99) * 1000, 3),
            "lag_max_ms": round(max(self.lags_s, default=0.0) * 1000, 3),
            "emit_p99_ms": round(_percentile(self.emit_s, 0.99) * 1000, 3),
            "emit_max_ms": round(max(self.emit_s, default=0.0) * 1000, 3),
        }


class BenchRuns:
    """The server side of ``/bench/start``: timed emit loops, one per run.

    ``emit`` is called with each payload; if it returns an awaitable, it runs as its own task so that a slow
    emit never delays the next tick (a host's pin updates keep arriving whatever the server's backlog).
    """

    def __init__(self) -> None:
        self._runs: dict[int, RunStatus] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_run = 1

    def start(
        self,
        emit: EmitFn,
        *,
        rate: float,
        seconds: float,
        pad: int = 0,
        burst: int = 1,
        emit_batch: EmitBatchFn | None = None,
    ) -> RunStatus:
        """Start a run of ``rate`` ticks per second for ``seconds``; each tick emits ``burst`` events.

        With ``burst > 1`` and an ``emit_batch``, a tick's events go out together (one write per viewer);
        without one, ``emit`` is called once per event.
        """
        if not 0 < rate <= 10_000 or not 0 < seconds <= 3600 or not 0 <= pad <= 1_000_000 or not 1 <= burst <= 1000:
            raise ValueError("rate must be in (0, 10000], seconds in (0, 3600], pad in [0, 1e6], burst in [1, 1000]")
        ticks = max(1, round(rate * seconds))
        status = RunStatus(run=self._next_run, planned=ticks * burst)
        self._next_run += 1
        self._runs[status.run] = status
        filler = "x" * pad if pad else None
        self._spawn(self._emit_loop(status, emit, emit_batch, rate, ticks, burst, filler))
        return status

    def status(self, run: int) -> RunStatus | None:
        return self._runs.get(run)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _timed_emit(self, status: RunStatus, awaitable: Awaitable[None], started: float) -> None:
        await awaitable
        status.emit_s.append(time.perf_counter() - started)

    async def _emit_loop(
        self,
        status: RunStatus,
        emit: EmitFn,
        emit_batch: EmitBatchFn | None,
        rate: float,
        ticks: int,
        burst: int,
        filler: str | None,
    ) -> None:
        pending: list[asyncio.Task[None]] = []
        begin = time.perf_counter()
        seq = 0
        for tick in range(ticks):
            target = begin + tick / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            status.lags_s.append(max(0.0, now - target))
            payloads: list[dict[str, Any]] = []
            for _ in range(burst):
                payload: dict[str, Any] = {"run": status.run, "seq": seq, "t0": time.time_ns()}
                if filler is not None:
                    payload["pad"] = filler
                payloads.append(payload)
                seq += 1
            if emit_batch is not None and burst > 1:
                emit_batch(payloads)
                status.emit_s.append(time.perf_counter() - now)
            else:
                for payload in payloads:
                    result = emit(payload)
                    if inspect.isawaitable(result):
                        pending.append(self._spawn(self._timed_emit(status, result, now)))
                    else:
                        status.emit_s.append(time.perf_counter() - now)
            status.emitted += burst
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        status.done = True


class BenchClient:
    """The orchestrator's side of the control routes. Talks only to 127.0.0.1 and ignores proxy settings."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.base = f"http://{host}:{port}"
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, timeout: float | None = None, **query: Any) -> dict[str, Any]:
        url = f"{self.base}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310
        with self._opener.open(request, timeout=timeout or self.timeout) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/bench/health")

    def start(self, room: str | int, rate: float, seconds: float, pad: int = 0, burst: int = 1) -> dict[str, Any]:
        query: dict[str, Any] = {"room": room, "rate": rate, "seconds": seconds, "pad": pad}
        if burst != 1:
            query["burst"] = burst
        return self._call("POST", "/bench/start", **query)

    def status(self, run: int, timeout: float | None = None) -> dict[str, Any]:
        return self._call("GET", "/bench/status", timeout, run=run)

    def wait_healthy(self, deadline: float, alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
        """Poll ``/bench/health`` until it answers or ``deadline`` (``time.monotonic()``) passes."""
        last: Exception | None = None
        while time.monotonic() < deadline and alive():
            try:
                return self.health()
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        raise TimeoutError(f"server at {self.base} did not become healthy: {last!r}")

    def wait_done(self, run: int, deadline: float) -> dict[str, Any]:
        """Poll ``/bench/status`` until the run has emitted everything or ``deadline`` passes.

        A saturated server may answer slowly: failed polls are retried until the deadline, and the last answer
        is returned even if the run is not done.
        """
        status: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            try:
                status = self.status(run, timeout=max(0.5, min(self.timeout, deadline - time.monotonic())))
            except OSError:
                time.sleep(0.5)
                continue
            if status["done"]:
                break
            time.sleep(0.2)
        if status is None:
            raise TimeoutError(f"{self.base} never answered /bench/status for run {run}")
        return status


# --------------------------------------------------------------------------------------------------------------
# The control routes and the serve loop, shared by the Socket.IO targets


def mount_routes(
    app: Any,
    runs: BenchRuns,
    emitter: Callable[[str], EmitFn],
    viewers: Callable[[], int],
    extra_health: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Add ``/bench/health``, ``/bench/start`` and ``/bench/status`` to an aiohttp app.

    ``emitter(room)`` returns the function that emits one timed payload into that room.
    """
    import os

    from aiohttp import web

    async def health(_request: web.Request) -> web.Response:
        body = {"ok": True, "viewers": viewers(), "pid": os.getpid(), **(extra_health() if extra_health else {})}
        return web.json_response(body)

    async def start(request: web.Request) -> web.Response:
        query = request.query
        try:
            status = runs.start(
                emitter(query.get("room", "bench")),
                rate=float(query.get("rate", "10")),
                seconds=float(query.get("seconds", "10")),
                pad=int(query.get("pad", "0")),
                burst=int(query.get("burst", "1")),
            )
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"run": status.run, "planned": status.planned})

    async def status(request: web.Request) -> web.Response:
        found = runs.status(int(request.query.get("run", "0")))
        if found is None:
            return web.json_response({"error": "no such run"}, status=404)
        return web.json_response(found.as_json())

    async def close_runs(_app: web.Application) -> None:
        await runs.close()

    app.router.add_get("/bench/health", health)
    app.router.add_post("/bench/start", start)
    app.router.add_get("/bench/status", status)
    app.on_shutdown.append(close_runs)


async def serve_until_stopped(
    app: Any, host: str, port: int, max_seconds: float, name: str, backlog: int = 4096
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT or ``max_seconds``, whichever comes first (runs stop by themselves)."""
    import signal

    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    import os

    print(f"{name} pid={os.getpid()} listening on http://{host}:{port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except TimeoutError:
        print(f"{name}: --max-seconds {max_seconds} reached, stopping", flush=True)
    await runner.cleanup()
