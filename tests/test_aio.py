"""raise_if_cancelled: a loop whose cancellation was swallowed (Python 3.11 asyncio.timeout race) still ends."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from livecommerce.aio import cancel_and_wait, raise_if_cancelled


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


async def test_cancel_and_wait_never_waits_for_ever(caplog: pytest.LogCaptureFixture) -> None:
    stopped = asyncio.Event()

    async def obedient() -> None:
        await asyncio.sleep(10)

    async def stubborn() -> None:  # swallows its first cancellation, as the 3.11 race can
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        try:
            await asyncio.sleep(10)
        finally:
            stopped.set()

    tasks = [asyncio.create_task(obedient(), name="obedient"), asyncio.create_task(stubborn(), name="stubborn")]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks, grace=0.2)
    assert tasks[0].cancelled()
    assert not tasks[1].done()
    assert "stubborn did not stop" in caplog.text
    tasks[1].cancel()  # clean up: its second cancellation is not swallowed
    await stopped.wait()
