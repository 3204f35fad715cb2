"""Access follows the account: a verified token names a user, and the user's row says what they may do now.

A token is signed proof of *who* calls; the role, brand and status it was issued with may have changed since.
`Accounts.principal` turns a verified token into the `Principal` of the account as it is now, refusing a
suspended or deleted account (401 `account_suspended` / `account_deleted`) and a user that no longer exists.

Each process caches accounts for at most `fresh_seconds` (1 s), so a change reaches every request within a
second even if no one says so. When an admin changes an account, `announce` runs after the commit: it drops
the local entry and publishes the user id on the Redis channel ``livecommerce:accounts``. Every web process
listens (`run`), drops its entry at once and tells its subscribers (the hub, which re-authorises or
disconnects that user's open sockets). Delivery is at most once; while the listener is disconnected changes
are missed, so after a reconnect it tells subscribers "anything may have changed" (`None`) and they check
every account they hold. Reconnects use a capped exponential backoff with jitter, as the room bus does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce.aio import raise_if_cancelled
from livecommerce.auth import Principal
from livecommerce.errors import ClientError, ServiceUnavailable, Unauthorized
from livecommerce.models import AccountStatus, Role, User
from livecommerce.recent import RecentCache

__all__ = ["ACCOUNTS", "CHANNEL", "Account", "AccountDeleted", "AccountSuspended", "Accounts", "OnChange"]

log = logging.getLogger(__name__)

CHANNEL: Final = "livecommerce:accounts"
_CHUNK: Final = 500  # ids per IN (...) list when re-checking many accounts

# Called with the user ids that changed, or None when changes may have been missed (check every account).
OnChange = Callable[[frozenset[int] | None], None]


class AccountSuspended(Unauthorized):
    code = "account_suspended"
    title = "Account suspended"


class AccountDeleted(Unauthorized):
    code = "account_deleted"
    title = "Account deleted"


_GONE = "the account this token names no longer exists; sign in again"


@dataclass(frozen=True, slots=True)
class Account:
    """What access depends on, as the users table holds it now."""

    id: int
    role: Role
    brand_id: int | None
    status: AccountStatus
    display_name: str

    @classmethod
    def of(cls, user: User) -> Account:
        return cls(user.id, user.role, user.brand_id, user.status, user.display_name)

    @property
    def principal(self) -> Principal:
        return Principal(user_id=self.id, role=self.role, brand_id=self.brand_id)

    def refusal(self) -> ClientError | None:
        """Why this account may not act at all (None: it is active)."""
        if self.status is AccountStatus.SUSPENDED:
            return AccountSuspended("this account is suspended; ask an administrator to reinstate it")
        if self.status is AccountStatus.DELETED:
            return AccountDeleted("this account has been deleted; sign in with another account")
        return None


class Accounts:
    """Current accounts by user id, for one process: cached briefly, dropped when Redis says they changed."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        *,
        fresh_seconds: float = 1.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        poll_interval: float = 1.0,
        keep_seconds: float = 300.0,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._fresh_seconds = fresh_seconds
        # Kept past `fresh_seconds` only while the database cannot be read (no account can change then), so
        # signed-in buyers keep buying through an outage; bounded like the rooms and offers they buy from.
        self._cache: RecentCache[int, Account | None] = RecentCache(
            fresh_seconds, fresh_seconds, keep_seconds=max(fresh_seconds, keep_seconds), name="account"
        )
        self._origin = secrets.token_hex(6)  # our own announcements are heard here already
        self._subscribers: list[OnChange] = []
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._poll_interval = poll_interval
        self._healed = False

    # --- reading ----------------------------------------------------------------------------------------------

    async def get(self, user_id: int, *, fresh: bool = False) -> Account | None:
        """The account as it is now (at most `fresh_seconds` old unless `fresh`); None: no such user."""
        return await self._cache.get(user_id, lambda: self._load(user_id), fresh=fresh)

    async def principal(self, token: Principal) -> Principal:
        """The caller a verified token names, with the role and brand of the account now; refuses an account
        that is suspended, deleted or gone. Anonymous stays anonymous."""
        if token.user_id is None:
            return token
        return (await self.active(token.user_id)).principal

    async def active(self, user_id: int) -> Account:
        """The account of `user_id` if it may act; otherwise the refusal (401) a person can act on."""
        account = await self.get(user_id)
        if account is None:
            raise Unauthorized(_GONE)
        refusal = account.refusal()
        if refusal is not None:
            raise refusal
        return account

    async def many(self, user_ids: Iterable[int]) -> dict[int, Account]:
        """Fresh accounts for many users in a few queries (absent: no such user); drops their cache entries."""
        ids = sorted(set(user_ids))
        found: dict[int, Account] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            try:
                async with self._sessions() as session:
                    rows = await session.scalars(select(User).where(User.id.in_(chunk)))
                    found.update({user.id: Account.of(user) for user in rows})
            except (SQLAlchemyError, OSError) as exc:
                raise _unavailable(exc) from None
            for user_id in chunk:
                self._cache.drop(user_id)
        return found

    async def _load(self, user_id: int) -> Account | None:
        try:
            async with self._sessions() as session:
                user = await session.get(User, user_id)
                return None if user is None else Account.of(user)
        except (SQLAlchemyError, OSError) as exc:
            raise _unavailable(exc) from None

    # --- changes ----------------------------------------------------------------------------------------------

    def subscribe(self, callback: OnChange) -> None:
        """Call `callback` on the event loop for every change heard (it must not block)."""
        self._subscribers.append(callback)

    async def announce(self, user_id: int) -> None:
        """After a committed change to `user_id`: forget it here and tell every process (this one included)."""
        self._cache.drop(user_id)
        self._notify(frozenset({user_id}))
        try:
            await self._redis.publish(CHANNEL, f"{self._origin}:{user_id}")
        except (RedisError, OSError) as exc:
            # Other processes' listeners lose Redis too, and re-check every account when they reconnect;
            # meanwhile their cache entries expire within `fresh_seconds`.
            log.error(
                "announcing the change to account %d failed (%s); other processes notice within %.0f s (REST) "
                "or when their listener reconnects (sockets)", user_id, exc, self._fresh_seconds,
            )  # fmt: skip

    async def run(self) -> None:
        """Listen on ``livecommerce:accounts`` until cancelled, reconnecting with a capped backoff."""
        failures = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._connect(pubsub)
                if failures:
                    log.warning("account change listener reconnected after %d attempt(s)", failures)
                    self._notify(None)  # changes published meanwhile were lost
                failures = 0
                while True:
                    if self._healed:
                        self._healed = False
                        log.warning("account change listener's connection dropped and the Redis client re-made it")
                        self._notify(None)
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._poll_interval)
                    raise_if_cancelled()
                    if message is not None and message.get("type") == "message":
                        self._heard(message["data"])
            except (RedisError, OSError) as exc:
                failures += 1
                delay = min(self._max_backoff, self._min_backoff * 2 ** min(failures - 1, 30))
                delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
                log.warning("account change listener lost Redis (%s); reconnecting in %.2f s",
                            str(exc) or type(exc).__name__, delay)  # fmt: skip
            finally:
                await self._disconnect(pubsub)
            raise_if_cancelled()
            await asyncio.sleep(delay)

    async def _connect(self, pubsub: PubSub) -> None:
        await pubsub.connect()  # type: ignore[no-untyped-call]
        assert pubsub.connection is not None
        pubsub.connection.register_connect_callback(self._reconnected)
        await pubsub.subscribe(CHANNEL)

    async def _disconnect(self, pubsub: PubSub) -> None:
        if pubsub.connection is not None:
            pubsub.connection.deregister_connect_callback(self._reconnected)
        try:
            await pubsub.aclose()
        except (RedisError, OSError) as exc:
            log.debug("closing the account change listener failed: %s", exc)

    def _reconnected(self, connection: AbstractConnection) -> None:
        self._healed = True

    def _heard(self, data: object) -> None:
        """A message is `<origin>:<user id>`; our own were handled when announced."""
        origin, _, text = (data.decode(errors="replace") if isinstance(data, bytes) else str(data)).rpartition(":")
        if origin == self._origin:
            return
        try:
            user_id = int(text)
        except ValueError:
            log.warning("ignoring a malformed message on %s: %r", CHANNEL, data)
            return
        self._cache.drop(user_id)
        self._notify(frozenset({user_id}))

    def _notify(self, user_ids: frozenset[int] | None) -> None:
        for callback in self._subscribers:
            try:
                callback(user_ids)
            except Exception:
                log.exception("an account change subscriber failed")


ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    log.warning("reading an account failed: %s", exc)
    return ServiceUnavailable("the account database does not answer; retry in a few seconds")
