"""Settings: environment and flags, validation with one clear line, and the README's table kept true."""

from __future__ import annotations

from pathlib import Path

import pytest

from livecommerce.errors import ConfigError
from livecommerce.settings import FIELDS, Settings, load_settings


def test_defaults_need_no_configuration() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.embedded_redis
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_database_url.endswith("/.livecommerce/livecommerce.db")


def test_environment_and_flags_flags_win() -> None:
    environ = {"LIVECOMMERCE_PORT": "9000", "LIVECOMMERCE_REDIS_URL": "redis://10.0.0.1:6379/0"}
    settings = load_settings(environ=environ, flags={"port": "9001"})
    assert settings.port == 9001
    assert settings.redis_url == "redis://10.0.0.1:6379/0"
    assert not settings.embedded_redis


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:////var/lib/lc.db", "sqlite+aiosqlite:////var/lib/lc.db"),
    ],
)
def test_database_urls_are_normalised_to_async_drivers(given: str, expected: str) -> None:
    assert load_settings(environ={"LIVECOMMERCE_DATABASE_URL": given}).database_url == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LIVECOMMERCE_REDIS_ULR": "redis://x"}, "did you mean LIVECOMMERCE_REDIS_URL?"),
        ({"LIVECOMMERCE_PORT": "abc"}, "LIVECOMMERCE_PORT: expected a whole number, got 'abc'"),
        ({"LIVECOMMERCE_PORT": "70000"}, "expected a number from 1 to 65535"),
        ({"LIVECOMMERCE_REDIS_URL": "http://x"}, "expected a redis://, rediss:// or unix:// URL"),
        ({"LIVECOMMERCE_DATABASE_URL": "mysql://x/y"}, "expected a postgresql:// or sqlite:// URL"),
        ({"LIVECOMMERCE_SECRET_KEY": "short"}, "at least 32 characters"),
        ({"LIVECOMMERCE_DEMO": "perhaps"}, "expected true or false"),
        ({"LIVECOMMERCE_LOG_LEVEL": "LOUD"}, "expected DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_bad_configuration_is_one_clear_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--port: "):
        load_settings(environ={}, flags={"port": "0"})


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for field in FIELDS:
        assert f"`{field.env}`" in readme, f"README's configuration table lacks {field.env}"
        assert f"`{field.flag}`" in readme, f"README's configuration table lacks {field.flag}"


def test_the_media_ice_address_and_its_announced_address() -> None:
    settings = load_settings(
        environ={"LIVECOMMERCE_MEDIA_ICE_ADDRESS": "10.0.0.5", "LIVECOMMERCE_MEDIA_ICE_ANNOUNCE": "203.0.113.9"}
    )
    assert (settings.media_ice_address, settings.media_ice_announce) == ("10.0.0.5", "203.0.113.9")
    assert load_settings(flags={"media_ice_address": "127.0.0.1"}).media_ice_address == "127.0.0.1"
    for value, reason in (("localhost", "expected an IP address"), ("0.0.0.0", "not '0.0.0.0'")):  # noqa: S104 - refused
        with pytest.raises(ConfigError, match=reason):
            load_settings(environ={"LIVECOMMERCE_MEDIA_ICE_ADDRESS": value})
    with pytest.raises(ConfigError, match="needs LIVECOMMERCE_MEDIA_ICE_ADDRESS"):
        load_settings(environ={"LIVECOMMERCE_MEDIA_ICE_ANNOUNCE": "203.0.113.9"})
