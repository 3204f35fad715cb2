"""Real `livecommerce` processes for black-box tests: each started with its own working directory, a free port
and an environment without `LIVECOMMERCE_*` variables except the ones it sets; the `launcher` fixture kills
whatever a test leaves running, including any redis-server working under its directory. Waits poll against a
deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.ports import free_port

__all__ = [
    "DEMO_ADMIN",
    "DEMO_HOST",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Launcher",
    "Proc",
    "cli_env",
    "demo_tokens",
    "http",
    "launcher",
    "redis_servers",
    "start_worker",
]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
DEMO_ADMIN = "admin@demo.livecommerce.dev"
DEMO_HOST = "host@demo.livecommerce.dev"

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy


def cli_env(**settings: str) -> dict[str, str]:
    """This process's environment without any LIVECOMMERCE_* variable, plus `settings`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LIVECOMMERCE_")}
    env.update(settings)
    return env


def http(method: str, url: str, *, body: Any = None, token: str | None = None) -> tuple[int, str, Any]:
    """One request; returns (status, content type, decoded JSON body or None)."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http only
    try:
        with _OPENER.open(request, timeout=5) as response:
            status, content_type, raw = response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        try:
            status, content_type, raw = exc.code, exc.headers.get_content_type(), exc.read()
        finally:
            exc.close()
    return status, content_type, json.loads(raw) if raw else None


def redis_servers(under: Path) -> list[int]:
    """Pids of running redis-servers that work in, or name, a directory under `under`.

    Redis rewrites its process title (to `redis-server 127.0.0.1:PORT` on TCP), so the working directory,
    which Redis sets to its --dir, is checked as well as the command line.
    """
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(process.cmdline())
            if "redis" in cmdline and (str(under) in cmdline or Path(process.cwd()).is_relative_to(under)):
                found.append(int(process.pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@dataclass
class Proc:
    """A started livecommerce (or redis-server) process; its output goes to <cwd>/<name>.out and .err."""

    popen: subprocess.Popen[bytes]
    cwd: Path
    name: str
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return (self.cwd / f"{self.name}.out").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.cwd / f"{self.name}.err").read_text(errors="replace")

    def check_running(self, waiting_for: str) -> None:
        if self.popen.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.popen.returncode} before {waiting_for}:\n{self.stderr}")

    def wait_ready(self, timeout: float = START_TIMEOUT, interval: float = 0.05) -> dict[str, Any]:
        """Poll GET /ready every `interval` seconds until it answers 200; return its body."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_running("it was ready")
            try:
                status, _, body = http("GET", self.base + "/ready")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status, body = 0, None
            if status == 200:
                assert isinstance(body, dict)
                return body
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready after {timeout} s (last: {status} {body}):\n{self.stderr}")
            time.sleep(interval)

    def wait_output(self, marker: str, timeout: float = START_TIMEOUT) -> str:
        """Poll stdout until it contains `marker`; return all of it."""
        deadline = time.monotonic() + timeout
        while marker not in (out := self.stdout):
            self.check_running(f"printing {marker!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not print {marker!r} within {timeout} s:\n{out}\n{self.stderr}")
            time.sleep(0.05)
        return out

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `signum` and return the exit status."""
        self.popen.send_signal(signum)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running {timeout} s after {signal.Signals(signum).name}:\n{self.stderr}")


@dataclass
class Launcher:
    """Starts processes for one test and kills what is left at the end."""

    root: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, argv: list[str], *, cwd: Path, env: dict[str, str], name: str, port: int = 0) -> Proc:
        cwd.mkdir(parents=True, exist_ok=True)
        with (cwd / f"{name}.out").open("wb") as out, (cwd / f"{name}.err").open("wb") as err:
            popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        proc = Proc(popen, cwd, name, port)
        self.started.append(proc)
        return proc

    def serve(self, *flags: str, cwd: Path, env: dict[str, str], name: str = "serve") -> Proc:
        port = free_port()
        argv = [sys.executable, "-m", "livecommerce.cli", "serve", "--port", str(port), *flags]
        return self.start(argv, cwd=cwd, env=env, name=name, port=port)

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.popen.poll() is None:
                proc.popen.kill()
            proc.popen.wait(STOP_TIMEOUT)
        for pid in redis_servers(self.root):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path.resolve())
    try:
        yield launcher
    finally:
        launcher.kill_all()


def demo_tokens(output: str) -> dict[str, str]:
    """The email -> token table that `serve --demo` prints."""
    return dict(re.findall(r"^\s+\w+\s+(\S+@demo\.livecommerce\.dev)\s+(\S+)$", output, re.MULTILINE))


def start_worker(launcher: Launcher, cwd: Path, redis_url: str, database_url: str, name: str) -> Proc:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LIVECOMMERCE_")}
    env.update(
        LIVECOMMERCE_REDIS_URL=redis_url,
        LIVECOMMERCE_DATABASE_URL=database_url,
        LIVECOMMERCE_WORKER_CLAIM_AFTER_MS="300",
        LIVECOMMERCE_LOG_LEVEL="INFO",
    )
    argv = [sys.executable, "-m", "livecommerce.cli", "worker"]
    return launcher.start(argv, cwd=cwd, env=env, name=name)
