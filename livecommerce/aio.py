"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio

__all__ = ["raise_if_cancelled"]


def raise_if_cancelled() -> None:
    """Honour a cancellation that was swallowed.

    Python 3.11's `asyncio.timeout` can swallow a `cancel()` that lands just as its own timeout fires (redis-py
    then answers as for a timeout), leaving a cancelled loop running for ever and the shutdown that awaits it
    hung. The request is still counted on the task, so a loop calls this after each wait.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
