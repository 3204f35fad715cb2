"""Waiting in tests is polling a condition against a deadline: a deadline, never a guess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Condition = Callable[[], bool | Awaitable[bool]]


async def until(condition: Condition, within: float = 10.0, what: str = "the condition") -> float:
    """Poll `condition` (plain or async) every 10 ms until it holds; return the seconds it took, or fail
    saying `what` did not hold within `within` seconds."""
    start = time.monotonic()
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"{what} did not hold within {within} s")
        await asyncio.sleep(0.01)


async def eventually(condition: Condition, what: str = "the condition", within: float = 10.0) -> None:
    """`until` with the description first, as the hub tests read: `eventually(check, "the bus to connect")`."""
    await until(condition, within, what)
