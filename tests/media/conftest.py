"""The media folder's fixtures (defined in tests/support/media.py): the app with short media timeouts, ICE on
127.0.0.1, and the seeded world with its rooms live."""

from tests.support.media import loopback_ice, media, media_client, media_config, world

__all__ = ["loopback_ice", "media", "media_client", "media_config", "world"]
