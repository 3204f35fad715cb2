"""Users and their roles. Brand staff belong to exactly one brand; other roles to none."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.access import require
from livecommerce.auth import Principal
from livecommerce.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from livecommerce.models import Brand, Role, User, utcnow

__all__ = ["create_user", "current_user", "get_user", "user_by_email", "user_for_token"]


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


async def user_for_token(session: AsyncSession, who: Principal, user_id: int) -> User:
    """The user an admin issues a token for (operators' way to hand out access without passwords)."""
    require(who, who.is_admin, "issue tokens", "admins")
    return await get_user(session, user_id)


async def current_user(session: AsyncSession, who: Principal) -> User:
    require(who, who.authenticated, "see your account", "signed-in users")
    assert who.user_id is not None
    user = await session.get(User, who.user_id)
    if user is None:
        raise Unauthorized("the account this token names no longer exists; sign in again")
    return user


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.lower()))


async def create_user(
    session: AsyncSession,
    who: Principal | None,
    *,
    email: str,
    display_name: str,
    role: Role,
    brand_id: int | None,
) -> User:
    """Create a user. `who=None` is the operator (CLI, demo seeding); otherwise only admins may."""
    if who is not None:
        require(who, who.is_admin, "create users", "admins")
    if (role is Role.BRAND_STAFF) != (brand_id is not None):
        raise InvalidRequest(
            "brand_id is required for brand_staff and must be left out for other roles",
            errors=[{"field": "body.brand_id", "message": "required exactly when role is brand_staff"}],
        )
    if brand_id is not None and await session.get(Brand, brand_id) is None:
        raise InvalidRequest(
            f"no brand with id {brand_id}; create the brand first",
            errors=[{"field": "body.brand_id", "message": "unknown brand"}],
        )
    if await user_by_email(session, email) is not None:
        raise Conflict(f"a user with email {email} already exists")
    email = email.lower()  # stored lower-cased, so lookups compare exactly on every backend
    user = User(email=email, display_name=display_name, role=role, brand_id=brand_id, created_at=utcnow())
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a user with email {email} already exists") from None
    return user
