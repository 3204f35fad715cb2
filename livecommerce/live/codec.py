"""How the live layer reads what Redis hands back: text, seqs (stream ids) and msgpack payloads.

One copy of each, shared by the room store, the bus and the live rooms: a seq compared in one place the
same way everywhere (as the pair of integers it names, never as text, so "9-0" < "10-0").
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

__all__ = ["pack", "seq_key", "text", "unpack"]

SEQ_PATTERN: Final = r"(\d{1,20})-(\d{1,20})"  # a Redis stream id, "<ms>-<n>": the grammar of every seq
_SEQ = re.compile(SEQ_PATTERN)
_MAX = 2**64 - 1  # Redis's own bound on either part of a stream id


def text(value: object) -> str:
    """A Redis reply as text, whether the client decoded it or not (an integer reply as its digits)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def seq_key(seq: bytes | str) -> tuple[int, int] | None:
    """A seq ("<ms>-<n>") as the pair it orders by; None when it is not one Redis could have written."""
    match = _SEQ.fullmatch(text(seq))
    if match is None:
        return None
    ms, n = int(match[1]), int(match[2])
    return (ms, n) if ms < _MAX and n < _MAX else None


def pack(payload: dict[str, Any]) -> bytes:
    """A payload as msgpack (a map, never pickle): how payloads rest in Redis and travel on the bus."""
    if not isinstance(payload, dict):
        raise TypeError(f"a payload is a dict, not {type(payload).__name__}")
    packed: bytes = msgpack.packb(payload, use_bin_type=True)
    return packed


def unpack(raw: bytes) -> Any:
    """What `raw` holds, or None when it is not msgpack."""
    try:
        return msgpack.unpackb(raw, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
