"""redis-servers of the tests' own: the session's shared one, and private ones a test may kill and start again.

Fault injection (CLIENT KILL, a restart, a crash) runs against a `private_redis`, never the session's Redis.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from livecommerce.embedded_redis import find_redis_server
from tests.support.ports import free_port

__all__ = ["RedisProcess", "private_redis", "redis", "redis_server", "redis_url", "wait_for_redis"]


def wait_for_redis(url: str, process: subprocess.Popen[bytes] | None = None, within: float = 10.0) -> None:
    """PING until Redis answers (it says LOADING while it reads an append-only file), every wait bounded."""
    client = sync_redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    deadline = time.monotonic() + within
    try:
        while True:
            try:
                client.ping()
                return
            except (sync_redis.ConnectionError, sync_redis.TimeoutError):
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {process.returncode}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    finally:
        client.close()


class RedisProcess:
    """A redis-server on a fixed loopback port and directory that can be stopped and started again.

    `durable`: append-only with an fsync per write (data and functions survive a restart, as in production);
    otherwise a restart comes back empty: no data, no scripts.
    """

    def __init__(self, directory: Path, port: int | None = None, *, durable: bool = False) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None
        command = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--dir", str(self.directory)]
        if self.durable:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
            command += ["--logfile", str(self.directory / "redis.log")]
        else:
            command += ["--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(self.url, self.process)
        self.starts += 1

    def stop(self, how: signal.Signals = signal.SIGKILL) -> None:
        """Send `how` (a crash by default) and wait for the process to end."""
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(how)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> RedisProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server for the whole session, on a free loopback port; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="lc-redis-") as workdir, RedisProcess(Path(workdir)) as server:
        yield server.url


@pytest.fixture
async def redis_url(redis_server: str) -> str:
    """The session Redis, flushed before each test."""
    client = Redis.from_url(redis_server)
    await client.flushall()
    await client.aclose()
    return redis_server


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the suite's Redis (flushed before each test). Room for the bursts of the conservation
    tests: redis-py's default pool holds 100 connections."""
    client = Redis.from_url(redis_url, max_connections=1000)
    yield client
    await client.aclose()


@pytest.fixture
def private_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own; `@pytest.mark.durable_redis` makes it append-only (`durable`)."""
    server = RedisProcess(tmp_path, durable=request.node.get_closest_marker("durable_redis") is not None)
    server.start()
    try:
        yield server
    finally:
        server.stop()
