"""The commerce folder's fixtures (defined in tests/support/shop.py): a seeded `shop` and the pool functions
loaded (`inventory`). `redis` and `pair` come from the root conftest."""

from tests.support.shop import inventory, shop

__all__ = ["inventory", "shop"]
