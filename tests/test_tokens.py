"""Bearer tokens: what they carry, and every way a bad one is refused with a reason."""

from __future__ import annotations

import base64

import orjson
import pytest

from livecommerce.auth import TokenSigner
from livecommerce.errors import Unauthorized
from livecommerce.models import Role

KEY = "k" * 40


def test_a_token_carries_user_role_and_brand() -> None:
    signer = TokenSigner(KEY, 60)
    who = signer.verify(signer.issue(7, Role.BRAND_STAFF, 3))
    assert (who.user_id, who.role, who.brand_id) == (7, Role.BRAND_STAFF, 3)
    assert who.staff_of(3)
    assert not who.staff_of(4)


def test_expired_tokens_are_refused() -> None:
    signer = TokenSigner(KEY, 60)
    token = signer.issue(1, Role.VIEWER, now=1000)
    assert signer.verify(token, now=1059).user_id == 1
    with pytest.raises(Unauthorized, match="expired"):
        signer.verify(token, now=1060)


def test_another_key_does_not_verify() -> None:
    token = TokenSigner("a" * 40, 60).issue(1, Role.ADMIN)
    with pytest.raises(Unauthorized, match="signature"):
        TokenSigner("b" * 40, 60).verify(token)


def _segment(obj: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: t + ".x", "malformed"),
        (lambda t: "x" * 5000, "malformed"),
        (lambda t: _segment({"alg": "none", "typ": "JWT"}) + "." + t.split(".")[1] + ".", "algorithm"),
        (lambda t: _segment({"alg": "HS512", "typ": "JWT"}) + "." + ".".join(t.split(".")[1:]), "algorithm"),
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "signature"),
    ],
)
def test_tampered_tokens_are_refused(mangle: object, reason: str) -> None:
    signer = TokenSigner(KEY, 60)
    token = signer.issue(1, Role.VIEWER)
    with pytest.raises(Unauthorized, match=reason):
        signer.verify(mangle(token))  # type: ignore[operator]


def test_signed_but_malformed_claims_are_refused() -> None:
    signer = TokenSigner(KEY, 60)
    header = signer.issue(1, Role.VIEWER).split(".")[0]
    payload = _segment({"sub": "1", "role": "emperor", "exp": 10**12}).encode()
    signing_input = header.encode() + b"." + payload
    token = (signing_input + b"." + signer._sign(signing_input)).decode()
    with pytest.raises(Unauthorized, match="claims"):
        signer.verify(token)
