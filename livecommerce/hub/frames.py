"""The bytes the hub writes to a websocket viewer: Socket.IO events inside Engine.IO messages inside frames.

Encoding here, once per broadcast, is what lets the fan-out write the same bytes to every viewer of a room
instead of asking python-socketio to encode and queue per recipient. Only server-to-client text events on
the default namespace `/` are produced; anything else (acks, binary events, other namespaces) stays with
python-socketio.

Socket.IO event packet (Socket.IO protocol v5, namespace `/`, no ack id)::

    2["<event>",<payload JSON>]

Engine.IO v4 message packet: the type digit `4` followed by the data. A Socket.IO event therefore travels
as the text::

    42["pinned",{"room_id":7,"product":null,"ts":1732190000000,"seq":"1732190000000-4"}]

Over the websocket transport each Engine.IO packet is one text frame (RFC 6455, section 5.2). Frames from
server to client are never masked::

    byte 0      0x81                      FIN=1, RSV=0 (no per-message deflate), opcode 0x1 (text)
    byte 1      length  if length < 126   MASK=0, 7-bit payload length
                126, then 2 bytes         16-bit big-endian length (126 ≤ length < 65536)
                127, then 8 bytes         64-bit big-endian length
    then        the payload bytes (the UTF-8 text above)

Several frames may be concatenated and written at once; the client reads them one by one. JSON comes from
orjson: compact, UTF-8, and it refuses what it cannot encode (non-string keys, bytes, NaN becomes null).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

__all__ = ["encode_events", "frames", "socketio_event", "socketio_event_raw", "websocket_text_frame"]

_SHORT = 126  # lengths below this fit in byte 1
_MEDIUM = 1 << 16  # lengths below this take the 16-bit form


def socketio_event(event: str, payload: object) -> bytes:
    """`42["event",payload]`: an Engine.IO message carrying a Socket.IO event on namespace `/`."""
    return b"42" + orjson.dumps([event, payload])


def socketio_event_raw(event: str, payload_json: bytes) -> bytes:
    """As `socketio_event`, with the payload already encoded as JSON (the caller vouches it is valid JSON)."""
    return b"42[" + orjson.dumps(event) + b"," + payload_json + b"]"


def websocket_text_frame(data: bytes) -> bytes:
    """One unmasked, final text frame carrying `data` (which must be UTF-8)."""
    length = len(data)
    if length < _SHORT:
        return bytes((0x81, length)) + data
    if length < _MEDIUM:
        return b"\x81\x7e" + length.to_bytes(2, "big") + data
    return b"\x81\x7f" + length.to_bytes(8, "big") + data


def encode_events(events: Sequence[tuple[str, object]]) -> bytes:
    """One frame per event, concatenated in order: the bytes of one write to a websocket viewer."""
    return frames(socketio_event(event, payload) for event, payload in events)


def frames(packets: Iterable[bytes]) -> bytes:
    """Frame already-encoded Engine.IO packets, concatenated in order."""
    return b"".join(websocket_text_frame(packet) for packet in packets)
