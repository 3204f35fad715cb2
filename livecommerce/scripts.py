"""The one loader of our Lua: read a file of `livecommerce/lua/`, compose its shared parts, register it.

A line `-- #include NAME.lua` (alone on its line) is replaced by that file's text, so code two scripts need
(the GCRA limiter, `gcra.lua`) is written once and each script still runs as one atomic EVAL. Redis gives no
other way to share Lua: an EVAL script cannot call another, and a function library cannot FCALL another
function (nor an EVAL script a function's local code). An included file must not include another.

`script` registers an EVAL script (redis-py's `AsyncScript` runs it by EVALSHA and loads it again on
NOSCRIPT, so a Redis restart or SCRIPT FLUSH is survived); `lua_source` gives the composed text, for a
function library (`FUNCTION LOAD`) or a test.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

__all__ = ["FunctionLibrary", "lua_source", "missing_function", "script"]

log = logging.getLogger(__name__)

_RELOAD_ATTEMPTS: Final = 3  # flushed again while we reload (a storm of FUNCTION FLUSH): tried a few times
_INCLUDE: Final = re.compile(r"^-- #include ([a-z_]+\.lua)$", re.MULTILINE)


def _read(name: str) -> str:
    return resources.files("livecommerce").joinpath(f"lua/{name}").read_text()


@cache
def lua_source(name: str) -> str:
    """The text of `lua/NAME`, with each `-- #include OTHER.lua` line replaced by that file's text."""

    def included(match: re.Match[str]) -> str:
        part = _read(match.group(1))
        if _INCLUDE.search(part):
            raise ValueError(f"lua/{match.group(1)} (included by {name}) must not include another file")
        return part.rstrip("\n")

    return _INCLUDE.sub(included, _read(name))


def script(redis: Redis, name: str) -> AsyncScript:
    """Register the EVAL script `lua/NAME` (composed) with this client."""
    return redis.register_script(lua_source(name))


def missing_function(exc: BaseException) -> bool:
    """Redis answered that a function is not loaded (restarted without it, or FUNCTION FLUSH)."""
    return "function not found" in str(exc).lower()


class FunctionLibrary:
    """A function library `lua/NAME` (composed), loaded by `load` and again by `call` whenever Redis lost it. A
    missing function ran nothing, so calling again cannot apply anything twice. `what` names it in the log."""

    def __init__(self, redis: Redis, name: str, what: str) -> None:
        self._redis = redis
        self._code = lua_source(name)
        self._what = what

    async def load(self) -> None:
        await self._redis.function_load(self._code, replace=True)

    async def call(self, function: str, keys: Sequence[str], *args: Any) -> Any:
        for attempt in range(_RELOAD_ATTEMPTS):
            try:
                return await self._redis.fcall(function, len(keys), *keys, *args)
            except ResponseError as exc:
                if not missing_function(exc) or attempt == _RELOAD_ATTEMPTS - 1:
                    raise
            log.warning("the %s were missing from Redis (restarted or flushed?); loading them again", self._what)
            await self.load()
        raise AssertionError("unreachable")
