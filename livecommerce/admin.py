"""Operator commands that touch only the database: migrate, create a user, print a user's token."""

from __future__ import annotations

import sys

from livecommerce import users
from livecommerce.app import resolve_secret
from livecommerce.auth import TokenSigner
from livecommerce.database import current_revision, open_database, session_factory
from livecommerce.errors import NotFound
from livecommerce.models import Role
from livecommerce.settings import Settings

__all__ = ["create_user", "migrate_only", "print_token"]


async def migrate_only(settings: Settings) -> None:
    engine = await open_database(settings.effective_database_url)
    try:
        print(f"database schema at revision {await current_revision(engine)}")  # noqa: T201
    finally:
        await engine.dispose()


async def create_user(settings: Settings, email: str, name: str, role: Role, brand_id: int | None) -> None:
    engine = await open_database(settings.effective_database_url)
    try:
        async with session_factory(engine).begin() as session:
            user = await users.create_user(session, None, email=email, display_name=name, role=role, brand_id=brand_id)
        print(f"created user {user.id} <{user.email}> with role {user.role.value}")  # noqa: T201
    finally:
        await engine.dispose()


async def print_token(settings: Settings, email: str) -> None:
    engine = await open_database(settings.effective_database_url)
    try:
        async with session_factory(engine)() as session:
            user = await users.user_by_email(session, email)
        if user is None:
            raise NotFound(f"no user with email {email}; create one with `livecommerce create-user`")
        signer = TokenSigner(resolve_secret(settings), settings.token_ttl)
        sys.stdout.write(signer.issue(user.id, user.role, user.brand_id) + "\n")
    finally:
        await engine.dispose()
