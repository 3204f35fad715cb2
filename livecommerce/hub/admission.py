"""How many live connections a web process takes: at most `max_total`, and `max_per_address` from one address.

A connection is an Engine.IO session (one Socket.IO client). It is counted from its handshake — the
`/socket.io/` request without a `sid` — until engineio reports its disconnect, so a client that upgrades from
long-polling to a websocket counts once. A handshake past a cap is refused before engineio allocates
anything: HTTP 503 `unavailable` when the process is full, 429 `rate_limited` when the address has too many,
both problem JSON with `Retry-After`; Socket.IO clients see a `connect_error` and retry with their backoff.

The address is the peer of the TCP connection (`request.remote`), never `X-Forwarded-For`: behind a proxy
every client has the proxy's address, so raise or turn off (`0`) the per-address cap there. Caps are per
process; the refusal counts are what an operator reads in `/health`.
"""

from __future__ import annotations

from dataclasses import dataclass

from livecommerce.errors import ServiceUnavailable, TooManyRequests

__all__ = ["Admission", "AdmissionStats"]

_RETRY_FULL_S = 5
_RETRY_ADDRESS_S = 10


@dataclass
class AdmissionStats:
    refused_full: int = 0  # handshakes refused because the process had `max_total` connections
    refused_address: int = 0  # ... because their address had `max_per_address`


class Admission:
    """Counts open connections per address; `0` turns a cap off."""

    def __init__(self, *, max_total: int, max_per_address: int) -> None:
        if max_total < 0 or max_per_address < 0:
            raise ValueError("caps must be >= 0 (0 turns a cap off)")
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.stats = AdmissionStats()
        self.open = 0
        self._by_address: dict[str, int] = {}
        self._sessions: dict[str, str] = {}  # engineio sid -> address

    def admit(self, address: str) -> None:
        """Take a place for a new connection from `address`, or raise the refusal the client gets."""
        if self.max_total and self.open >= self.max_total:
            self.stats.refused_full += 1
            raise ServiceUnavailable(
                f"this server is at its limit of {self.max_total} live connections; "
                f"retry in {_RETRY_FULL_S} s (another server may have room)",
                retry_after=_RETRY_FULL_S,
            )
        held = self._by_address.get(address, 0)
        if self.max_per_address and held >= self.max_per_address:
            self.stats.refused_address += 1
            raise TooManyRequests(
                f"too many live connections from your address (the limit is {self.max_per_address}); "
                f"close some, or retry in {_RETRY_ADDRESS_S} s",
                retry_after=_RETRY_ADDRESS_S,
            )
        self.open += 1
        self._by_address[address] = held + 1

    def release(self, address: str) -> None:
        """Give back a place taken by `admit` that no session came to hold."""
        self.open -= 1
        held = self._by_address.get(address, 0) - 1
        if held > 0:
            self._by_address[address] = held
        else:
            self._by_address.pop(address, None)

    def bind(self, eio_sid: str, address: str) -> None:
        """The place taken for `address` is now held by session `eio_sid`, until `unbind`."""
        self._sessions[eio_sid] = address

    def unbind(self, eio_sid: str) -> None:
        address = self._sessions.pop(eio_sid, None)
        if address is not None:
            self.release(address)

    def from_address(self, address: str) -> int:
        return self._by_address.get(address, 0)
