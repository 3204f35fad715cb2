"""Which failures mean a dependency is down, and the 503 a caller gets for them instead of a 500.

A database or Redis that stops answering is not a bug: the caller should hear `unavailable`, when to try
again (`Retry-After`) and that the request may work then, while a genuine fault (a constraint the code
broke, a bad query) stays a 500 with a reference to quote. The REST middleware and the socket hub both ask
`unavailable(exc)`, so the rule lives here once. `Warnings` keeps the log to one line per dependency per
outage rather than one per failed request.
"""

from __future__ import annotations

import logging
import time
from typing import Final

import asyncpg  # type: ignore[import-untyped]
from redis import exceptions as redis_errors
from sqlalchemy import exc as sql_errors

from livecommerce.errors import ServiceUnavailable

__all__ = ["RETRY_AFTER_SECONDS", "Warnings", "dependency_down", "unavailable"]

RETRY_AFTER_SECONDS: Final = 5  # long enough for a restart or failover to finish, short enough to keep buying

_ASYNCPG_DOWN = (
    asyncpg.PostgresConnectionError,  # class 08: connection failure, connection does not exist
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up, terminated by admin
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.InterfaceError,  # the connection is closed
)
_REDIS_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError)


def dependency_down(exc: BaseException) -> str | None:
    """`"database"` or `"Redis"` when `exc` says that dependency cannot be reached (`"a service"` when only
    the socket says so); None for anything else, which is a fault to report."""
    if isinstance(exc, sql_errors.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sql_errors.OperationalError | sql_errors.InterfaceError):
            return "database"
        # SQLAlchemy wraps the driver's error in its own, the asyncpg adapter's in turn: look underneath.
        return "database" if any(isinstance(cause, (*_ASYNCPG_DOWN, OSError)) for cause in _causes(exc)) else None
    if isinstance(exc, (sql_errors.TimeoutError, sql_errors.DisconnectionError, *_ASYNCPG_DOWN)):
        return "database"  # the pool had no connection to give within its timeout, or the server went away
    if isinstance(exc, _REDIS_DOWN):
        return "Redis"
    if isinstance(exc, OSError):  # refused, reset, timed out (TimeoutError is an OSError): whose socket?
        origin = _raised_in(exc)
        if origin is not None:
            return origin
        return "a service" if isinstance(exc, ConnectionError | TimeoutError) else None  # not a missing file
    return None


_LIBRARIES = {"asyncpg": "database", "sqlalchemy": "database", "aiosqlite": "database", "redis": "Redis"}


def _raised_in(exc: BaseException) -> str | None:
    """The dependency whose client library raised `exc`: the innermost library frame of its traceback (a
    refused connection reaches us raw from inside asyncpg's or redis-py's connect)."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        found = _LIBRARIES.get(module.partition(".")[0], found)
        tb = tb.tb_next
    return found


def _causes(exc: BaseException, depth: int = 4) -> list[BaseException]:
    """What `exc` was raised from (its driver error and that error's cause), nearest first."""
    found: list[BaseException] = []
    cause: BaseException | None = getattr(exc, "orig", None) or exc.__cause__
    while cause is not None and len(found) < depth:
        found.append(cause)
        cause = cause.__cause__
    return found


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 for `exc` when it means a dependency is down, else None."""
    dependency = dependency_down(exc)
    if dependency is None:
        return None
    subject = "a service this server needs is" if dependency == "a service" else f"the {dependency} is"
    meanwhile = " (buying and paying in live rooms go on meanwhile)" if dependency == "database" else ""
    return ServiceUnavailable(
        f"{subject} not answering right now; retry in {RETRY_AFTER_SECONDS} s{meanwhile}",
        retry_after=RETRY_AFTER_SECONDS,
    )


class Warnings:
    """Logs a dependency's failure at warning once per outage (then once a minute while it lasts)."""

    def __init__(self, logger: logging.Logger, every_seconds: float = 60.0) -> None:
        self._log = logger
        self._every = every_seconds
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def failed(self, dependency: str, where: str, exc: BaseException) -> None:
        now = time.monotonic()
        last = self._last.get(dependency)
        if last is not None and now - last < self._every:
            self._quiet[dependency] = self._quiet.get(dependency, 0) + 1
            return
        self._last[dependency] = now
        more = self._quiet.pop(dependency, 0)
        self._log.warning(
            "%s unavailable (%s: %s: %s)%s; answering 503 until it is back",
            dependency, where, type(exc).__name__, exc, f"; {more} more failures since the last report" if more else "",
        )  # fmt: skip
