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

import re
from functools import cache
from importlib import resources
from typing import Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["lua_source", "script"]

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
