"""Fixtures shared with the hub tests: two hub instances on one Redis and database (`pair`)."""

from tests.hub.test_hub import pair

__all__ = ["pair"]
