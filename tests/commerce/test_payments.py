"""The test-mode payment provider against a real Redis: one charge per key, whatever the concurrency."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from livecommerce.commerce.payments import (
    LEDGER,
    REFUNDS_OWED,
    Charge,
    ChargeStatus,
    InvalidCard,
    PaymentDeclined,
    TestModeProvider,
    refund_owed,
    retry_owed_refunds,
)
from tests.support.ports import free_port

APPROVED = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"
NO_FUNDS = "4000-0000-0000-9995"


@pytest.fixture
def provider(redis: Redis) -> TestModeProvider:
    return TestModeProvider(redis)


async def test_an_approved_card_is_charged_once_and_seen_by_every_process(
    redis_url: str, redis: Redis, provider: TestModeProvider
) -> None:
    charge = await provider.charge("s1.1", 3998, "USD", APPROVED)
    assert (charge.key, charge.amount_minor, charge.currency, charge.status) == ("s1.1", 3998, "USD", "charged")
    assert charge.ref.startswith("tp_")
    assert charge.decline_reason is None
    other_client = Redis.from_url(redis_url, decode_responses=True)  # another process, another client
    try:
        assert await TestModeProvider(other_client).lookup("s1.1") == charge
    finally:
        await other_client.aclose()
    assert await provider.lookup("s1.2") is None
    assert await provider.charge("s1.1", 3998, "USD", APPROVED) == charge  # a retry: the first outcome


async def test_concurrent_charges_of_one_key_charge_once(redis: Redis, provider: TestModeProvider) -> None:
    providers = [provider, TestModeProvider(redis), TestModeProvider(redis)]
    cards = [APPROVED, "4111 1111 1111 1111", "5555 5555 5555 4444", DECLINED]
    results = await asyncio.gather(
        *(providers[i % 3].charge("p7.42", 500, "EUR", cards[i % 4]) for i in range(20)), return_exceptions=True
    )
    charges = [r for r in results if isinstance(r, Charge)]
    refs = {c.ref for c in charges}
    assert len(refs) == 1, f"one key was charged {len(refs)} times: {refs}"
    # A declined card may lose the race only before the charge stands; after it, it gets the charge.
    assert all(isinstance(r, Charge | PaymentDeclined) for r in results), results
    ledger = await redis.hgetall(LEDGER)
    assert list(ledger) == [b"p7.42"]
    assert Charge.from_json(ledger[b"p7.42"]).ref in refs


async def test_declines_leave_the_key_free_for_another_card(provider: TestModeProvider) -> None:
    with pytest.raises(PaymentDeclined) as declined:
        await provider.charge("s2.1", 100, "USD", DECLINED)
    assert (declined.value.status, declined.value.code) == (402, "payment_declined")
    assert declined.value.reason == "card_declined"
    assert declined.value.detail == "your card was declined; try another card"
    with pytest.raises(PaymentDeclined) as broke:
        await provider.charge("s2.1", 100, "USD", NO_FUNDS)
    assert broke.value.reason == "insufficient_funds"
    assert "insufficient funds" in broke.value.detail
    recorded = await provider.lookup("s2.1")
    assert recorded is not None
    assert (recorded.status, recorded.decline_reason) == (ChargeStatus.DECLINED, "insufficient_funds")
    charged = await provider.charge("s2.1", 100, "USD", APPROVED)
    assert charged.status is ChargeStatus.CHARGED
    assert await provider.charge("s2.1", 100, "USD", DECLINED) == charged  # the charge stands


@pytest.mark.parametrize("number", ["4242 4242 4242 4241", "1234", "4242x4242x4242x4242", "", "4" * 20])
async def test_invalid_card_numbers(redis: Redis, provider: TestModeProvider, number: str) -> None:
    with pytest.raises(InvalidCard) as caught:
        await provider.charge("s3.1", 100, "USD", number)
    assert (caught.value.status, caught.value.code) == (422, "invalid_card")
    assert await redis.exists(LEDGER) == 0


async def test_any_other_luhn_valid_number_is_approved(provider: TestModeProvider) -> None:
    assert (await provider.charge("s4.1", 1, "GBP", "4000 0566 5566 5556")).status is ChargeStatus.CHARGED


async def test_refund(provider: TestModeProvider) -> None:
    assert await provider.refund("s5.1") is None
    charge = await provider.charge("s5.1", 250, "USD", APPROVED)
    refunded = await provider.refund("s5.1")
    assert refunded is not None
    assert (refunded.ref, refunded.status) == (charge.ref, ChargeStatus.REFUNDED)
    assert await provider.refund("s5.1") == refunded
    again = await provider.charge("s5.1", 250, "USD", APPROVED)  # never a second charge
    assert (again.ref, again.status) == (charge.ref, ChargeStatus.REFUNDED)


async def test_a_key_reused_for_another_amount_is_an_error(provider: TestModeProvider) -> None:
    await provider.charge("s6.1", 250, "USD", APPROVED)
    with pytest.raises(ValueError, match="was used for 250 USD"):
        await provider.charge("s6.1", 999, "USD", APPROVED)


async def test_the_delay(redis: Redis) -> None:
    slow = TestModeProvider(redis, delay_s=0.2)
    started = time.monotonic()
    await slow.charge("s7.1", 1, "USD", APPROVED)
    assert time.monotonic() - started >= 0.2


async def test_a_refund_the_provider_could_not_take_stays_owed_until_it_does(
    redis: Redis, provider: TestModeProvider
) -> None:
    """The refund is written down before the provider is asked: a provider out of reach leaves it owed, and the
    sweeper's retry settles it once."""
    charge = await provider.charge("s8.1", 500, "USD", APPROVED)
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        with pytest.raises(RedisConnectionError):
            await refund_owed(redis, TestModeProvider(nowhere), "s8.1")
    finally:
        await nowhere.aclose()
    assert await redis.smembers(REFUNDS_OWED) == {b"s8.1"}
    assert (await provider.lookup("s8.1")).status is ChargeStatus.CHARGED  # type: ignore[union-attr]
    assert await retry_owed_refunds(redis, provider) == 1
    refunded = await provider.lookup("s8.1")
    assert refunded is not None
    assert (refunded.ref, refunded.status) == (charge.ref, ChargeStatus.REFUNDED)
    assert await redis.smembers(REFUNDS_OWED) == set()
    assert await retry_owed_refunds(redis, provider) == 0
