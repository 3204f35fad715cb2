"""Keyset pagination: pages ordered by id, the cursor is the last id of the page (stable under inserts)."""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["cut_page"]


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


T = TypeVar("T", bound=_HasId)


def cut_page(rows: list[T], limit: int) -> tuple[list[T], int | None]:
    """Given up to `limit + 1` rows, return the page and the cursor of the next one (None on the last page)."""
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
