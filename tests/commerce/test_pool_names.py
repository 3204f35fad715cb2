"""Pool names and hold ids have one grammar, and the pool's keys have names."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from livecommerce.api.routing import STRING_PARAMS
from livecommerce.commerce.pools import HOLD_ID_PATTERN, HoldOutcome, HoldState, PoolId, PoolKeys
from livecommerce.hub.protocol import CancelHold

_GOOD_HOLDS = ["s12.345", "p7.8", "s1.1", "p999999999999999.1234567890123456"]
_BAD_HOLDS = ["s12", "s0.1", "s012.1", "x1.1", "s1.", "s1.0", "s1.x", "s1.2.3", "s1234567890123456.1", ""]


@pytest.mark.parametrize("hold_id", _GOOD_HOLDS)
def test_a_hold_id_is_accepted_alike_everywhere(hold_id: str) -> None:
    assert re.fullmatch(HOLD_ID_PATTERN, hold_id)
    assert re.fullmatch(STRING_PARAMS["hold_id"], hold_id), "the REST path"
    assert TypeAdapter(CancelHold).validate_python({"hold_id": hold_id}).hold_id == hold_id, "the socket"
    pool = PoolId.parse(hold_id)
    assert hold_id.startswith(pool.name + ".")


@pytest.mark.parametrize("hold_id", _BAD_HOLDS)
def test_a_bad_hold_id_is_refused_alike_everywhere(hold_id: str) -> None:
    assert not re.fullmatch(STRING_PARAMS["hold_id"], hold_id)
    with pytest.raises(ValidationError):
        CancelHold.model_validate({"hold_id": hold_id})
    if hold_id != "s12":  # a pool name alone is not a hold id, but it is a pool's name
        with pytest.raises(ValueError, match="not a pool name or hold id"):
            PoolId.parse(hold_id)


def test_pool_names_round_trip() -> None:
    assert PoolId.parse("s12") == PoolId.sale(12)
    assert PoolId.parse("p7") == PoolId.product(7)
    assert PoolId.parse(PoolId.sale(5).name) == PoolId.sale(5)


def test_pool_keys_are_named_and_share_one_hash_tag() -> None:
    keys = PoolId.sale(3).keys
    assert isinstance(keys, PoolKeys)
    assert keys.outbox == PoolId.sale(3).outbox == "livecommerce:{sale:3}:outbox"
    assert keys.cfg == "livecommerce:{sale:3}:cfg"
    assert list(keys) == [f"livecommerce:{{sale:3}}:{part}" for part in PoolKeys._fields]
    assert len(keys) == 9


def test_every_hold_state_is_an_outcome() -> None:
    assert {state.value for state in HoldState} <= {outcome.value for outcome in HoldOutcome}
    assert HoldOutcome("not_due") is HoldOutcome.NOT_DUE
