"""Which failures are a dependency being down (a 503 with Retry-After) and which are faults (a 500)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from livecommerce.database import create_engine
from livecommerce.errors import ServiceUnavailable
from livecommerce.outage import dependency_down, unavailable
from tests.support.ports import free_port


async def _raised(awaitable: object) -> BaseException:
    try:
        await awaitable  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - the exception is what the test looks at
        return exc
    raise AssertionError("it did not fail")


async def test_a_database_nobody_listens_on_is_the_database_being_down() -> None:
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")

    async def query() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        exc = await _raised(query())
    finally:
        await engine.dispose()
    assert dependency_down(exc) == "database", repr(exc)
    error = unavailable(exc)
    assert isinstance(error, ServiceUnavailable)
    assert (error.status, error.code, error.retryable) == (503, "unavailable", True)
    assert error.headers == {"Retry-After": "5"}
    assert "the database is not answering" in error.detail
    assert "retry in 5 s" in error.detail
    assert error.to_problem()["retry_after"] == 5


async def test_a_redis_nobody_listens_on_is_redis_being_down() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        exc = await _raised(client.ping())
    finally:
        await client.aclose()
    assert dependency_down(exc) == "Redis", repr(exc)


@pytest.mark.parametrize(
    "fault",
    [
        IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint")),
        ValueError("a bug"),
        FileNotFoundError("no such file"),
        KeyError("missing"),
    ],
)
def test_faults_stay_faults(fault: Exception) -> None:
    assert dependency_down(fault) is None
    assert unavailable(fault) is None


def test_a_refused_connection_from_elsewhere_is_still_unavailable() -> None:
    assert dependency_down(ConnectionRefusedError(111, "Connection refused")) == "a service"
    error = unavailable(TimeoutError())
    assert error is not None
    assert error.detail.startswith("a service this server needs is not answering right now; retry in 5 s")
