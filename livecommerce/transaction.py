"""What a domain service needs of the request's database transaction: its session, and hooks around its end.

Redis is not in the SQL transaction, so a service that must keep Redis in step with SQL says when: undo a
change it made in Redis if the transaction rolls back (`on_rollback`), or make a change, or tell live viewers,
only once it has committed (`on_commit`). The REST `api.routing.Call` implements it; a test or a script can
implement it with a plain session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Hook", "Transaction"]

Hook = Callable[[], Awaitable[object]]


class Transaction(Protocol):
    """One database transaction in progress, with hooks that run after it ends (a failing hook is logged)."""

    @property
    def session(self) -> AsyncSession: ...

    def on_commit(self, hook: Hook) -> None:
        """Run `hook` once the transaction has committed; not if it rolls back."""

    def on_rollback(self, hook: Hook) -> None:
        """Run `hook` if the transaction rolls back (undo a change made outside it, e.g. in Redis)."""
