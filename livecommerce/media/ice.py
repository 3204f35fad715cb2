"""Which address WebRTC's ICE binds its host candidates to, and which address it announces for them.

Operators behind a 1:1 NAT bind a private address and announce the public one; tests and the video benchmark
bind 127.0.0.1 only, so no media traffic uses another interface of the machine. aiortc 1.16 offers no
per-connection choice (`RTCConfiguration` has only `iceServers` and the transport policy) and aioice 0.13
gathers host candidates on every address `aioice.ice.get_host_addresses` returns (loopback excluded), so
`bind` sets that for the whole process: every peer connection of the process, which here are the server's.
`announce` rewrites the addresses in an SDP answer after gathering.
"""

from __future__ import annotations

import ipaddress
from typing import Final

import aioice.ice

__all__ = ["announce", "bind"]

_GATHER: Final = aioice.ice.get_host_addresses


def bind(address: str | None) -> None:
    """Gather host candidates on `address` only (None: aioice's default, every non-loopback address)."""
    if address is None:
        aioice.ice.get_host_addresses = _GATHER
        return
    v6 = ipaddress.ip_address(address).version == 6

    def only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address] if (use_ipv6 if v6 else use_ipv4) else []

    aioice.ice.get_host_addresses = only


def announce(sdp: str, bound: str, announced: str) -> str:
    """The SDP with `bound` replaced by `announced` in its candidates and connection lines."""
    family = "IP6" if ipaddress.ip_address(announced).version == 6 else "IP4"
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            parts = line.split(" ")
            if len(parts) > 5 and parts[4] == bound:
                parts[4] = announced
            line = " ".join(parts)
        elif line.startswith("c=IN ") and line.split(" ")[-1] == bound:
            line = f"c=IN {family} {announced}"
        lines.append(line)
    return "\r\n".join(lines)
