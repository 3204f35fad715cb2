"""Every Lua script is read by one loader, which composes shared parts: the GCRA is written once."""

from __future__ import annotations

import re
from importlib import resources

from livecommerce.scripts import lua_source

_LUA = resources.files("livecommerce").joinpath("lua")
_NAMES = sorted(entry.name for entry in _LUA.iterdir() if entry.name.endswith(".lua"))


def test_the_gcra_is_written_once_and_composed_into_both_limiters() -> None:
    raw = {name: _LUA.joinpath(name).read_text() for name in _NAMES}
    written = [name for name, text in raw.items() if "(burst - 1) * interval" in text]
    assert written == ["gcra.lua"], "the algorithm lives in gcra.lua only"
    for name in ("rate_limit.lua", "chat_post.lua"):
        assert "-- #include gcra.lua" in raw[name]
        composed = lua_source(name)
        assert re.search(r"^-- #include", composed, re.MULTILINE) is None, "every include line replaced"
        assert "local function gcra_step(" in composed, name
        assert composed.index("local function gcra_step(") < composed.index("next_tat = gcra_step("), "defined first"


def test_scripts_without_includes_are_read_as_they_are() -> None:
    for name in _NAMES:
        text = _LUA.joinpath(name).read_text()
        if re.search(r"^-- #include", text, re.MULTILINE) is None:
            assert lua_source(name) == text, name
