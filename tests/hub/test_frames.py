"""The wire bytes: the same Socket.IO text python-socketio would send, in valid RFC 6455 server frames."""

from __future__ import annotations

import orjson
import pytest
from socketio import packet as sio_packet

from livecommerce.hub.frames import encode_events, socketio_event, socketio_event_raw, websocket_text_frame


def parse_frames(data: bytes) -> list[bytes]:
    """A strict reader of unmasked server frames: each must be a final, uncompressed text frame."""
    out = []
    while data:
        assert data[0] == 0x81, f"not FIN + text without RSV bits: {data[0]:#x}"
        assert data[1] & 0x80 == 0, "server frames are never masked"
        length, offset = data[1], 2
        if length == 126:
            length, offset = int.from_bytes(data[2:4], "big"), 4
            assert length >= 126, "16-bit form used for a length that fits in 7 bits"
        elif length == 127:
            length, offset = int.from_bytes(data[2:10], "big"), 10
            assert length >= 1 << 16, "64-bit form used for a length that fits in 16 bits"
        assert len(data) >= offset + length, "truncated frame"
        out.append(data[offset : offset + length])
        data = data[offset + length :]
    return out


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_lengths_round_trip(size: int) -> None:
    data = b"x" * size
    frame = websocket_text_frame(data)
    assert parse_frames(frame) == [data]
    assert len(frame) == size + (2 if size < 126 else 4 if size < 65536 else 10)


def test_event_text_matches_python_socketio() -> None:
    payload = {"room_id": 7, "text": "héllo \u2603", "nested": [1, None, True], "seq": "1-2"}
    ours = socketio_event("chat", payload)
    theirs = "4" + sio_packet.Packet(sio_packet.EVENT, data=["chat", payload]).encode()
    assert orjson.loads(ours[2:]) == orjson.loads(theirs[2:])
    assert ours[:2] == theirs[:2].encode() == b"42"
    assert ours.decode("utf-8")  # valid UTF-8, as a text frame requires


def test_raw_payload_is_spliced_verbatim() -> None:
    assert socketio_event_raw("e", b'{"a":1}') == b'42["e",{"a":1}]' == socketio_event("e", {"a": 1})
    assert socketio_event_raw('quo"te', b"[]") == b'42["quo\\"te",[]]'


def test_encode_events_is_one_frame_per_event_in_order() -> None:
    events: list[tuple[str, object]] = [("a", {"n": 1}), ("b", {"big": "y" * 300}), ("c", {"n": 3})]
    packets = parse_frames(encode_events(events))
    assert [orjson.loads(p[2:]) for p in packets] == [[e, p] for e, p in events]
    assert encode_events([]) == b""


def test_unencodable_payload_raises() -> None:
    with pytest.raises(TypeError):
        socketio_event("x", {1: "non-string key"})
    with pytest.raises(TypeError):
        socketio_event("x", {"b": b"bytes"})
