"""raise_if_cancelled: a loop whose cancellation was swallowed (Python 3.11 asyncio.timeout race) still ends."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from livecommerce.aio import raise_if_cancelled


async def test_a_swallowed_cancellation_is_honoured() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            # What the 3.11 race amounts to: the cancel is turned into a timeout and handled.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)
            raise_if_cancelled()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert rounds == 1


async def test_nothing_happens_when_not_cancelled() -> None:
    raise_if_cancelled()
