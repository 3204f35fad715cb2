"""Users, their roles and their account status. Brand staff belong to exactly one brand; other roles to none.

Admins change roles, suspend (and reinstate) and delete accounts. A delete never removes the row: the person
is anonymised in place (email ``deleted-<id>@invalid``, name "Deleted user", role viewer) so their orders,
rooms and sales keep a valid reference, and the email becomes free for a new account. Deleting is final.

Locking out by accident is refused (409): an admin may not demote, suspend or delete their own account (ask
another admin), and the last active admin can never be demoted, suspended or deleted, by anyone (the
operator's `livecommerce create-user` can always make another). Callers announce each change after commit
(`accounts.Accounts.announce`), so every process applies it at once.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.access import require
from livecommerce.accounts import Account
from livecommerce.auth import Principal
from livecommerce.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from livecommerce.models import AccountStatus, Brand, Role, User, utcnow

__all__ = [
    "DELETED_NAME",
    "change_role",
    "create_user",
    "current_user",
    "delete_user",
    "deleted_email",
    "get_user",
    "reinstate_user",
    "suspend_user",
    "user_by_email",
    "user_for_token",
]

DELETED_NAME = "Deleted user"


def deleted_email(user_id: int) -> str:
    """The anonymised email of a deleted account (`.invalid` can never receive mail, RFC 2606)."""
    return f"deleted-{user_id}@invalid"


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


async def user_for_token(session: AsyncSession, who: Principal, user_id: int) -> User:
    """The user an admin issues a token for (operators' way to hand out access without passwords)."""
    require(who, who.is_admin, "issue tokens", "admins")
    user = await get_user(session, user_id)
    refusal = Account.of(user).refusal()
    if refusal is not None:
        raise Conflict(f"user {user_id} is {user.status.value}; a token for it would be refused")
    return user


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
    await _check_role(session, role, brand_id)
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


async def _check_role(session: AsyncSession, role: Role, brand_id: int | None) -> None:
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


async def _target(session: AsyncSession, who: Principal, user_id: int, verb: str) -> User:
    """The user an admin may `verb` (e.g. "suspend"): anyone but themselves; its row locked on PostgreSQL."""
    require(who, who.is_admin, f"{verb} users", "admins")
    if who.user_id == user_id:
        raise Conflict(f"you cannot {verb} your own account; ask another admin")
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


async def _keep_an_admin(session: AsyncSession, user: User, action: str) -> None:
    """Refuse taking the last active admin away. The active admins' rows are locked (PostgreSQL), so two
    admins demoting each other at once cannot both succeed."""
    if not (user.role is Role.ADMIN and user.status is AccountStatus.ACTIVE):
        return
    admins = (
        await session.scalars(
            select(User.id).where(User.role == Role.ADMIN, User.status == AccountStatus.ACTIVE).with_for_update()
        )
    ).all()
    if not set(admins) - {user.id}:
        raise Conflict(f"user {user.id} is the last active admin; make another admin before you {action}")


async def change_role(session: AsyncSession, who: Principal, user_id: int, *, role: Role, brand_id: int | None) -> User:
    """Give a user another role (brand staff: of `brand_id`). Takes effect at once on open sessions."""
    user = await _target(session, who, user_id, "change the role of")
    if user.status is AccountStatus.DELETED:
        raise Conflict(f"user {user_id} is deleted; a deleted account keeps no role")
    await _check_role(session, role, brand_id)
    if role is not Role.ADMIN:
        await _keep_an_admin(session, user, "demote them")
    user.role, user.brand_id = role, brand_id
    await session.flush()
    return user


async def suspend_user(session: AsyncSession, who: Principal, user_id: int) -> User:
    """Stop an account from doing anything (its tokens are refused, its sockets closed) until reinstated."""
    user = await _target(session, who, user_id, "suspend")
    if user.status is AccountStatus.DELETED:
        raise Conflict(f"user {user_id} is deleted; there is nothing to suspend")
    await _keep_an_admin(session, user, "suspend them")
    user.status = AccountStatus.SUSPENDED
    await session.flush()
    return user


async def reinstate_user(session: AsyncSession, who: Principal, user_id: int) -> User:
    """Lift a suspension (a no-op for an active account). A deleted account cannot come back."""
    user = await _target(session, who, user_id, "reinstate")
    if user.status is AccountStatus.DELETED:
        raise Conflict(f"user {user_id} is deleted for good; create a new account instead")
    user.status = AccountStatus.ACTIVE
    await session.flush()
    return user


async def delete_user(session: AsyncSession, who: Principal, user_id: int) -> User:
    """Delete an account: anonymise the person, keep the row (orders, rooms and sales refer to it).
    Deleting a deleted account changes nothing."""
    user = await _target(session, who, user_id, "delete")
    if user.status is AccountStatus.DELETED:
        return user
    await _keep_an_admin(session, user, "delete them")
    _anonymise(user)
    await session.flush()
    return user


def _anonymise(user: User) -> None:
    """Make `user` a deleted account: no personal data left, no role to act with."""
    user.email = deleted_email(user.id)
    user.display_name = DELETED_NAME
    user.role, user.brand_id = Role.VIEWER, None
    user.status = AccountStatus.DELETED
    user.deleted_at = utcnow()
