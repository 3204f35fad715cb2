"""Payment providers: the interface checkout and the worker use, and the test-mode provider that ships.

A provider charges a card under an idempotency key (livecommerce uses the hold id): the same key never
charges twice, whichever process asks and however often, so a retried checkout, two tabs paying one hold, or
the worker reconciling a payment that timed out can never take the money twice. A declined attempt consumes
nothing: the buyer may try another card under the same key.

A charge is refunded in full by its key (`refund`: a hold released after it was charged), or in parts, each
under a refund key of its own (`refund_part`, what `commerce.refunds` uses for ``refund:<id>``), never more
than was charged. A partly refunded charge stays ``charged`` (its paid order stands, as the charge audit
expects); once every unit is given back it is ``refunded``.

`TestModeProvider` is explicit test mode — no money moves. Its ledger lives in Redis (hash
``livecommerce:testpay:charges``, key → JSON), written by one small script (`lua/testpay_record.lua`), so
every web process and the worker see the same charges, as they would with an external provider. Test cards
(spaces and dashes are ignored):

====================  ===============================================
card number           outcome
====================  ===============================================
4242 4242 4242 4242   approved
4000 0000 0000 0002   declined: ``card_declined``
4000 0000 0000 9995   declined: ``insufficient_funds``
any other number      approved if it passes the Luhn check, else `InvalidCard`
====================  ===============================================

`charges` pages through the whole ledger (the worker's charge audit checks every charge has its order).
It answers after a configurable delay (`LIVECOMMERCE_PAYMENT_DELAY_MS`), to rehearse a slow provider.
A real provider plugs in by implementing `PaymentProvider`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Final, Protocol

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from livecommerce.clock import now_ms
from livecommerce.commerce.pools import HoldOutcome, HoldReply, Inventory, PoolId
from livecommerce.errors import ClientError
from livecommerce.scripts import script

__all__ = [
    "TEST_CARDS",
    "Charge",
    "ChargeStatus",
    "InvalidCard",
    "PaymentDeclined",
    "PaymentProvider",
    "RefundRefused",
    "TestModeProvider",
    "refund_owed",
    "retry_owed_refunds",
    "settle_by_provider",
]

log = logging.getLogger(__name__)

LEDGER: Final = "livecommerce:testpay:charges"
REFUNDS_OWED: Final = "livecommerce:payments:refunds_owed"  # charge keys to refund until the provider confirms
APPROVED: Final = "4242424242424242"
DECLINED: Final = "4000000000000002"
INSUFFICIENT_FUNDS: Final = "4000000000009995"
TEST_CARDS: Final = {APPROVED: None, DECLINED: "card_declined", INSUFFICIENT_FUNDS: "insufficient_funds"}
_MAX_KEY = 64


class ChargeStatus(enum.StrEnum):
    CHARGED = "charged"
    DECLINED = "declined"
    REFUNDED = "refunded"


@dataclass(frozen=True, slots=True)
class Charge:
    """The outcome a provider recorded for one idempotency key."""

    key: str
    ref: str  # the provider's reference (what `complete_payment` records); "" for a decline
    amount_minor: int
    currency: str
    status: ChargeStatus
    decline_reason: str | None = None  # "card_declined", "insufficient_funds", … when declined
    charged_at_ms: int | None = None  # when the provider recorded it (None: a record older than this field)
    refunded_minor: int = 0  # given back so far (partial refunds); the whole amount once refunded

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Charge:
        d: dict[str, Any] = orjson.loads(raw)
        return cls(
            key=d["key"],
            ref=d["ref"],
            amount_minor=int(d["amount_minor"]),
            currency=d["currency"],
            status=ChargeStatus(d["status"]),
            decline_reason=d.get("decline_reason"),
            charged_at_ms=None if d.get("charged_at_ms") is None else int(d["charged_at_ms"]),
            refunded_minor=int(d.get("refunded_minor") or 0),
        )


_DECLINE_DETAIL: Final = {
    "card_declined": "your card was declined; try another card",
    "insufficient_funds": "insufficient funds on this card; try another card",
}


class PaymentDeclined(ClientError):
    """The provider refused the card. `reason` is the provider's code; the detail says what to do."""

    status = 402
    code = "payment_declined"
    title = "Payment declined"

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or _DECLINE_DETAIL.get(reason, "your card was declined; try another card"))
        self.reason = reason


class RefundRefused(ClientError):
    """The provider will not give this much back on the charge (more than is left, or it is not charged)."""

    status = 409
    code = "refund_refused"
    title = "The payment provider refused the refund"


class InvalidCard(ClientError):
    """The card number cannot be a card (wrong length, not digits, or failing the Luhn check)."""

    status = 422
    code = "invalid_card"
    title = "The card number is not valid"


class PaymentProvider(Protocol):
    """What checkout and the worker need from a payment provider.

    `charge` is idempotent per `key`: while a key is charged (or refunded) every call returns that first
    charge — possibly with status ``refunded`` if it was refunded since: check `status` — and never charges
    again. A declined attempt raises `PaymentDeclined` and leaves the key free for another card; a malformed
    card number raises `InvalidCard`. `lookup` returns what the provider recorded for a key (None: it never
    saw it). `refund` refunds a charged key and returns its record (None: unknown key). `refund_part` gives
    `amount_minor` of a charge back under `refund_key`, once per refund key (a retry returns the record
    unchanged), and raises `RefundRefused` for more than is left (charged minus refunded) or a charge that is
    not charged; it returns the record (None: unknown charge key). `charges` returns one
    page of every recorded outcome, in no particular order, and the cursor of the next page (None: the last);
    a record may appear on two pages.
    """

    async def charge(self, key: str, amount_minor: int, currency: str, card_number: str) -> Charge: ...

    async def lookup(self, key: str) -> Charge | None: ...

    async def refund(self, key: str) -> Charge | None: ...

    async def refund_part(self, key: str, refund_key: str, amount_minor: int) -> Charge | None: ...

    async def charges(self, cursor: str | None, limit: int) -> tuple[list[Charge], str | None]: ...


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card_digits(card_number: str) -> str:
    """The digits of a card number (spaces and dashes dropped), or `InvalidCard`."""
    digits = card_number.replace(" ", "").replace("-", "")
    if not (digits.isascii() and digits.isdigit() and 12 <= len(digits) <= 19):
        raise InvalidCard("a card number is 12 to 19 digits; check it and try again")
    if not _luhn(digits):
        raise InvalidCard("that card number is not valid (a digit is wrong?); check it and try again")
    return digits


def _check_key(key: str) -> None:
    if not key or len(key) > _MAX_KEY:
        raise ValueError(f"a charge key is 1 to {_MAX_KEY} characters, got {key!r}")


class TestModeProvider:
    """The shipped provider: explicit test mode, no money moves, the ledger in Redis (see the module doc)."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, redis: Redis, delay_s: float = 0.0) -> None:
        if delay_s < 0:
            raise ValueError("delay_s must not be negative")
        self._redis = redis
        self.delay_s = delay_s
        self._record: AsyncScript = script(redis, "testpay_record.lua")

    async def charge(self, key: str, amount_minor: int, currency: str, card_number: str) -> Charge:
        _check_key(key)
        if amount_minor < 0:
            raise ValueError("amount_minor must not be negative")
        if not (len(currency) == 3 and currency.isascii() and currency.isupper()):
            raise ValueError(f"currency must be an ISO 4217 code such as USD, got {currency!r}")
        digits = card_digits(card_number)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        reason = TEST_CARDS.get(digits)
        now = now_ms()
        if reason is None:
            attempt = Charge(
                key, "tp_" + secrets.token_hex(12), amount_minor, currency, ChargeStatus.CHARGED, None, now
            )
        else:
            attempt = Charge(key, "", amount_minor, currency, ChargeStatus.DECLINED, reason, now)
        stands = Charge.from_json(await self._record(keys=[LEDGER], args=["charge", key, attempt.to_json()]))
        if (stands.amount_minor, stands.currency) != (amount_minor, currency):
            raise ValueError(
                f"charge key {key!r} was used for {stands.amount_minor} {stands.currency}, "
                f"not {amount_minor} {currency}"
            )
        if stands.status is ChargeStatus.DECLINED:
            raise PaymentDeclined(stands.decline_reason or "card_declined")
        return stands

    async def lookup(self, key: str) -> Charge | None:
        raw = await self._redis.hget(LEDGER, key)
        return None if raw is None else Charge.from_json(raw)

    async def refund(self, key: str) -> Charge | None:
        _check_key(key)
        raw = await self._record(keys=[LEDGER], args=["refund", key])
        return None if raw is None else Charge.from_json(raw)

    async def refund_part(self, key: str, refund_key: str, amount_minor: int) -> Charge | None:
        _check_key(key)
        _check_key(refund_key)
        if amount_minor < 1:
            raise ValueError("amount_minor must be at least 1")
        try:
            raw = await self._record(keys=[LEDGER], args=["refund_part", key, refund_key, amount_minor])
        except ResponseError as exc:
            if str(exc).startswith("REFUSED "):
                raise RefundRefused(f"charge {key}: {str(exc).removeprefix('REFUSED ')}") from None
            raise
        return None if raw is None else Charge.from_json(raw)

    async def charges(self, cursor: str | None, limit: int) -> tuple[list[Charge], str | None]:
        following, page = await self._redis.hscan(LEDGER, int(cursor or 0), count=limit)
        assert isinstance(page, dict)
        return [Charge.from_json(raw) for raw in page.values()], (None if int(following) == 0 else str(following))


async def refund_owed(redis: Redis, provider: PaymentProvider, key: str) -> None:
    """Refund the charge `key`, durably: it is written down as owed before the provider is asked and crossed
    off only after it answered, so a failure in between leaves it for `retry_owed_refunds` (the sweeper)."""
    await redis.sadd(REFUNDS_OWED, key)
    await provider.refund(key)
    await redis.srem(REFUNDS_OWED, key)


async def retry_owed_refunds(redis: Redis, provider: PaymentProvider, batch: int = 100) -> int:
    """Ask the provider again for refunds still owed (refunds are idempotent per key); returns how many."""
    keys: list[bytes] = await redis.srandmember(REFUNDS_OWED, batch)  # type: ignore[assignment]
    for raw in keys:
        key = raw.decode()
        await provider.refund(key)
        await redis.srem(REFUNDS_OWED, key)
    return len(keys)


async def settle_by_provider(
    inventory: Inventory, provider: PaymentProvider, pool: PoolId, hold_id: str, *, expire: bool
) -> HoldReply:
    """Settle a hold left "paying" by what the provider recorded for its id (the charge key): charged → paid
    (refunded instead if the hold was released meanwhile); no charge → expired when `expire` (the sweeper, past
    the payment deadline), else left as it is (status "paying": checkout may then charge the key itself).

    The sweeper calls it past the deadline, and a checkout retry at once: the hub that began the payment may
    have died between the charge and recording it."""
    charge = await provider.lookup(hold_id)
    if charge is not None and charge.status is ChargeStatus.CHARGED:
        done = await inventory.complete_payment(pool, hold_id, charge.ref)
        if done.status in (HoldOutcome.OK, HoldOutcome.PAID):
            log.info("hold %s: the provider had charged it (%s); paid", hold_id, charge.ref)
            return HoldReply(HoldOutcome.PAID, done.hold)
        await refund_owed(inventory.redis, provider, hold_id)
        log.warning("hold %s was %s when its charge was found; refunded", hold_id, done.status)
        return done
    if not expire:
        return HoldReply(HoldOutcome.PAYING, None)
    expired = await inventory.expire(pool, hold_id)
    log.info("hold %s: no charge at the provider; %s", hold_id, expired.status)
    return expired
