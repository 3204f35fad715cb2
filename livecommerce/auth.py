"""Bearer tokens and the identity they carry.

Tokens are compact JWTs signed with HMAC-SHA256 (RFC 7519 format, so standard tools can read them) carrying
the user id, role, brand (for brand staff) and expiry. Verification accepts exactly one algorithm, checks
the signature in constant time, and rejects expired or malformed tokens with a reason the caller can act on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

from livecommerce.errors import Unauthorized
from livecommerce.models import Role

__all__ = ["ANONYMOUS", "Principal", "TokenSigner"]

_HEADER = base64.urlsafe_b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"})).rstrip(b"=")
_MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. `user_id` is None for anonymous callers."""

    user_id: int | None
    role: Role | None
    brand_id: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def staff_of(self, brand_id: int) -> bool:
        """Brand staff of that brand (admins are checked separately, so policies read clearly)."""
        return self.role is Role.BRAND_STAFF and self.brand_id == brand_id


ANONYMOUS = Principal(user_id=None, role=None)


def _b64decode(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


class TokenSigner:
    """Issues and verifies bearer tokens with one secret key."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._key = hashlib.sha256(b"livecommerce-token-v1\0" + secret.encode()).digest()
        self.ttl = ttl_seconds

    def _sign(self, signing_input: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.digest(self._key, signing_input, "sha256")).rstrip(b"=")

    def issue(self, user_id: int, role: Role, brand_id: int | None = None, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {
            "sub": str(user_id),
            "role": role.value,
            "iat": issued,
            "exp": issued + self.ttl,
        }
        if brand_id is not None:
            claims["brand"] = brand_id
        signing_input = _HEADER + b"." + base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
        return (signing_input + b"." + self._sign(signing_input)).decode()

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """The principal a token names, or `Unauthorized` saying what is wrong with it."""
        raw = token.encode()
        if len(raw) > _MAX_TOKEN_BYTES or raw.count(b".") != 2:
            raise Unauthorized("the bearer token is malformed; sign in again to get a new one")
        header, payload, signature = raw.split(b".")
        if header != _HEADER:
            raise Unauthorized("the bearer token uses an unsupported header or algorithm; only HS256 is accepted")
        if not hmac.compare_digest(signature, self._sign(header + b"." + payload)):
            raise Unauthorized("the bearer token's signature is invalid; sign in again to get a new one")
        try:
            claims = orjson.loads(_b64decode(payload))
            user_id = int(claims["sub"])
            role = Role(claims["role"])
            expires = int(claims["exp"])
            brand = claims.get("brand")
            brand_id = None if brand is None else int(brand)
        except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise Unauthorized("the bearer token's claims are malformed; sign in again to get a new one") from None
        if (time.time() if now is None else now) >= expires:
            raise Unauthorized("the bearer token has expired; sign in again to get a new one")
        return Principal(user_id=user_id, role=role, brand_id=brand_id)
