"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

__all__ = ["cancel_and_wait", "raise_if_cancelled"]


log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], grace: float = 10.0) -> None:
    """Cancel `tasks` and wait for them, but never for ever: a task that swallowed its cancellation inside a
    library is logged and left behind, so a shutdown still completes."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=grace)
    for task in stuck:
        log.error("task %s did not stop within %.0f s of being cancelled; leaving it", task.get_name(), grace)


def raise_if_cancelled() -> None:
    """Honour a cancellation that was swallowed.

    Python 3.11's `asyncio.timeout` can swallow a `cancel()` that lands just as its own timeout fires (redis-py
    then answers as for a timeout), leaving a cancelled loop running for ever and the shutdown that awaits it
    hung. The request is still counted on the task, so a loop calls this after each wait.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
