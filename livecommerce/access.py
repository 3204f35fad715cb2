"""Authorisation helpers shared by the domain modules: one way to say "no", with the right status, and the brand
rule (`may_manage_brand`: who manages a brand's catalogue, sales and orders)."""

from __future__ import annotations

from livecommerce.auth import Principal
from livecommerce.errors import Forbidden, Unauthorized

__all__ = ["may_manage_brand", "require"]


def require(who: Principal, allowed: bool, action: str, allowed_roles: str) -> None:
    """Raise 401 for an anonymous caller, 403 for a signed-in one, unless `allowed`.

    `action` completes "to ...", `allowed_roles` names who may, e.g. "the room's host or an admin".
    """
    if allowed:
        return
    if not who.authenticated:
        raise Unauthorized(f"sign in to {action}")
    raise Forbidden(f"only {allowed_roles} may {action}")


def may_manage_brand(who: Principal, brand_id: int) -> bool:
    """A brand's managers: its staff and admins (who edit the brand and its products, sell them in flash sales
    and read its orders)."""
    return who.is_admin or who.staff_of(brand_id)
