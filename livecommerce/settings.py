"""One typed settings object, read from `LIVECOMMERCE_*` environment variables and CLI flags.

Every setting is declared once in `FIELDS`; the environment names, the CLI flags and the README's
configuration table all come from that declaration, so they cannot drift apart. Values are validated at
start-up: a bad value or a misspelled `LIVECOMMERCE_*` variable raises `ConfigError` with one line that says
what to fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from livecommerce.errors import ConfigError

__all__ = ["ENV_PREFIX", "FIELDS", "Settings", "add_arguments", "load_settings"]

ENV_PREFIX = "LIVECOMMERCE_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration of one livecommerce process. Frozen: nothing changes it after start-up."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".livecommerce")
    redis_url: str | None = None
    database_url: str | None = None
    secret_key: str | None = None
    token_ttl: int = 12 * 3600
    max_body_bytes: int = 64 * 1024
    rate_limit_writes: int = 120
    rate_limit_reads: int = 1200
    log_level: str = "INFO"
    demo: bool = False
    payment_delay_ms: int = 0
    worker_claim_after_ms: int = 30_000
    max_connections: int = 20_000
    max_connections_per_address: int = 1_000
    socket_output_budget: int = 1024 * 1024
    http_header_timeout: int = 20
    http_body_timeout: int = 30
    media_ice_address: str | None = None
    media_ice_announce: str | None = None
    commission_lock_days: int = 30

    @property
    def embedded_redis(self) -> bool:
        """True when no Redis URL is given and the process runs a private Redis of its own."""
        return self.redis_url is None

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy async URL: the configured one, or a SQLite file in the data directory."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'livecommerce.db').resolve()}"


@dataclass(frozen=True, slots=True)
class Field:
    """The declaration of one setting: its environment name, its flag, how to parse it, and its help."""

    name: str
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _port(text: str) -> int:
    return _int_in(1, 65535)(text)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value

    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _redis_url(text: str) -> str:
    scheme = urlsplit(text).scheme
    if scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(f"expected a redis://, rediss:// or unix:// URL, got {text!r}")
    return text


def _database_url(text: str) -> str:
    """Accept the usual spellings and return the async driver's URL."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ValueError(f"expected a URL such as postgresql://user@host/db or sqlite:///path, got {text!r}")
    base = scheme.split("+", 1)[0]
    if base in {"postgresql", "postgres"}:
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"expected a postgresql:// or sqlite:// URL, got scheme {scheme!r}")


def _secret(text: str) -> str:
    if len(text) < 32:
        raise ValueError(
            "must be at least 32 characters; generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return text


def _ip(text: str) -> str:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ValueError(f"expected an IP address such as 10.0.0.5 or 127.0.0.1, got {text!r}") from None
    if address.is_unspecified:
        raise ValueError(f"expected one address, not {text!r} (which means every one)")
    return str(address)


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {text!r}")
    return level


FIELDS: tuple[Field, ...] = (
    Field("host", str, "Address the HTTP and websocket server listens on."),
    Field("port", _port, "TCP port of the HTTP and websocket server."),
    Field("data_dir", Path, "Directory for the SQLite file, the embedded Redis and the generated secret."),
    Field("redis_url", _redis_url, "Redis to use. Unset: a private Redis is started in the data directory."),
    Field(
        "database_url",
        _database_url,
        "postgresql:// or sqlite:// URL. Unset: a SQLite file in the data directory.",
    ),
    Field(
        "secret_key",
        _secret,
        "Key that signs bearer tokens (32+ characters). Unset: generated once into the data directory, with a warning.",
    ),
    Field("token_ttl", _int_in(60, 30 * 24 * 3600), "Lifetime of issued bearer tokens, in seconds."),
    Field("max_body_bytes", _int_in(1024, 16 * 1024 * 1024), "Largest accepted request body, in bytes."),
    Field(
        "rate_limit_writes",
        _int_in(0, 1_000_000),
        "Changes (POST, PATCH, DELETE) one caller may make per minute; 0 turns the limit off.",
    ),
    Field("rate_limit_reads", _int_in(0, 1_000_000), "Reads one caller may make per minute; 0 turns the limit off."),
    Field("log_level", _log_level, "DEBUG, INFO, WARNING or ERROR."),
    Field("demo", _bool, "Seed demo data and enable the development login route. Never in production."),
    Field(
        "payment_delay_ms",
        _int_in(0, 60_000),
        "How long the test-mode payment provider takes to answer a charge, in milliseconds.",
    ),
    Field(
        "worker_claim_after_ms",
        _int_in(100, 3_600_000),
        "How long an outbox entry read by a worker that stopped answering waits before another worker takes it "
        "over, in milliseconds.",
    ),
    Field(
        "max_connections",
        _int_in(0, 10_000_000),
        "Live (Socket.IO) connections one process takes; past it a handshake gets 503 with Retry-After. 0: no cap.",
    ),
    Field(
        "max_connections_per_address",
        _int_in(0, 10_000_000),
        "Live connections one process takes from one client address (the TCP peer; X-Forwarded-For is not "
        "trusted); past it a handshake gets 429 with Retry-After. 0: no cap.",
    ),
    Field(
        "socket_output_budget",
        _int_in(4096, 1024 * 1024 * 1024),
        "Bytes waiting to be sent to one live connection (broadcasts and replies) past which it is disconnected; "
        "the client resumes with `since`.",
    ),
    Field(
        "http_header_timeout",
        _int_in(1, 3600),
        "Seconds a connection may take to send a request's headers (and may stay idle between requests).",
    ),
    Field("http_body_timeout", _int_in(1, 3600), "Seconds a client may take to send a request's body."),
    Field(
        "media_ice_address",
        _ip,
        "The one address WebRTC (WHIP/WHEP) binds its ICE candidates to; 127.0.0.1 keeps media on loopback "
        "(tests, benchmarks). Unset: every address of the machine but loopback.",
    ),
    Field(
        "media_ice_announce",
        _ip,
        "The address announced in WebRTC answers for the bound one, behind a 1:1 NAT (the public address); "
        "needs LIVECOMMERCE_MEDIA_ICE_ADDRESS. Unset: the bound address.",
    ),
    Field(
        "commission_lock_days",
        _int_in(0, 365),
        "Days before a cut in a commission rate reaches creators already selling the product (a raise applies "
        "at once).",
    ),
)
_BY_ENV = {field.env: field for field in FIELDS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting. Flags default to None so that unset flags fall back to the environment."""
    for field in FIELDS:
        if field.parse is _bool:
            parser.add_argument(
                field.flag, dest=field.name, action="store_const", const="true", default=None, help=field.help
            )
        else:
            parser.add_argument(field.flag, dest=field.name, default=None, metavar=field.name.upper(), help=field.help)


def load_settings(environ: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None) -> Settings:
    """Build settings from the environment and flags (flags win), or raise `ConfigError` with one clear line."""
    environ = os.environ if environ is None else environ
    flags = flags or {}
    unknown = sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in _BY_ENV)
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(_BY_ENV), n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; known variables: {', '.join(_BY_ENV)}"
        raise ConfigError(f"unknown environment variable {name}{hint}")
    values: dict[str, Any] = {}
    for field in FIELDS:
        raw, source = flags.get(field.name), field.flag
        if raw is None:
            raw, source = environ.get(field.env), field.env
        if raw is None:
            continue
        try:
            values[field.name] = field.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if "media_ice_announce" in values and "media_ice_address" not in values:
        raise ConfigError(
            "LIVECOMMERCE_MEDIA_ICE_ANNOUNCE needs LIVECOMMERCE_MEDIA_ICE_ADDRESS (the address it stands for)"
        )
    return Settings(**values)


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy with some values changed (for tests and the CLI)."""
    return dataclasses.replace(settings, **changes)
