"""The suite's shared fixtures, registered from tests/support (defined there, once): a private real Redis, real
databases (SQLite and PostgreSQL), the app on loopback, two more app instances (`pair`), real processes.

Every database-backed test runs twice, on SQLite and on PostgreSQL (see tests/support/databases.py). A folder's
own conftest.py plugs the fixtures only that folder needs.
"""

from __future__ import annotations

import pytest
import uvloop

# Before anything imports them: a failing assert in a support module (the pool audit, `pair`) shows its values.
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.redis_process",
    "tests.support.databases",
    "tests.support.application",
    "tests.support.sockets",
    "tests.support.processes",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "durable_redis: `private_redis` is append-only, fsynced on every write")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Tests run on uvloop, as the server does."""
    return {"uvloop": uvloop.new_event_loop}
