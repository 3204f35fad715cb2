"""The socket events are declared once (`@_on` in `hub/service.py`): the table the hub dispatches from is the
one `docs/protocol.md` documents, and the server events it documents are the ones `live/events.py` builds."""

from __future__ import annotations

import re
from pathlib import Path

from livecommerce.hub.service import EVENTS
from livecommerce.live import events as ev

_PAGE = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _table_events(heading: str) -> set[str]:
    """The event names in the first column of the first `| Event |` table after `heading`."""
    text = _PAGE.read_text()
    after = text[text.index(heading) :]
    table = after[after.index("\n| Event |") :].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
    return set(rows)


def test_every_documented_client_event_is_declared_and_nothing_else() -> None:
    documented = _table_events("## Requests and acknowledgements")
    assert documented, "the requests table was not found"
    assert set(EVENTS) == documented


def test_every_documented_server_event_has_its_builder() -> None:
    documented = _table_events("## Server events") | {"video"}  # `video` is documented with the video state
    declared = {value for name, value in vars(ev).items() if name.isupper() and isinstance(value, str)}
    assert declared == ev.SERVER_EVENTS, "a new event constant belongs in LOGGED or SERVER_EVENTS"
    assert documented == ev.SERVER_EVENTS
