"""Every client error tells the caller whether retrying helps, the same way in socket acks and problem documents."""

from __future__ import annotations

import pytest

from livecommerce import errors
from livecommerce.errors import ClientError, Forbidden, Internal, NotFound, ServiceUnavailable, TooManyRequests
from livecommerce.hub.protocol import error_ack

_ALL = [getattr(errors, name) for name in errors.__all__]
_CLIENT = [cls for cls in _ALL if isinstance(cls, type) and issubclass(cls, ClientError)]


def _made(cls: type[ClientError]) -> ClientError:
    if cls is TooManyRequests:
        return TooManyRequests("slow down", retry_after=1.5)
    return cls("what happened")


@pytest.mark.parametrize("cls", _CLIENT, ids=lambda c: c.__name__)
def test_ack_and_problem_carry_the_same_retry_fields(cls: type[ClientError]) -> None:
    error = _made(cls)
    problem = error.to_problem("/x")
    ack = error_ack(error)
    assert ack["ok"] is False
    for field in ("code", "retryable"):
        assert ack["error"][field] == problem[field], field
    assert ack["error"].get("retry_after") == problem.get("retry_after")
    assert ack["error"]["message"] == problem["detail"] == error.detail


def test_retry_defaults_per_class() -> None:
    assert (TooManyRequests("x", retry_after=2).retryable, ServiceUnavailable("x").retryable) == (True, True)
    assert (NotFound("x").retryable, Forbidden("x").retryable, Internal("x").retryable) == (False, False, False)
    assert ServiceUnavailable("x").retry_after == 5
    assert NotFound("x").retry_after is None
    assert "retry_after" not in NotFound("x").to_problem()
    assert "retry_after" not in error_ack(NotFound("x"))["error"]


def test_retry_fields_are_per_error() -> None:
    """One instance may say otherwise than its class: retryable and retry_after are fields, not only constants."""
    error = Forbidden("the room is full", retryable=True, retry_after=0.25)
    assert error.to_problem()["retryable"] is True
    assert error.to_problem()["retry_after"] == 0.25, "unrounded on the wire"
    assert error.headers == {"Retry-After": "1"}, "the header is whole seconds, at least one"
    assert error_ack(error)["error"] == {
        "code": "forbidden",
        "message": "the room is full",
        "retryable": True,
        "retry_after": 0.25,
    }
    assert Forbidden("x").retryable is False, "the class default is untouched"


def test_internal_is_a_500_problem() -> None:
    problem = Internal("reference abc").to_problem("/api/v1/x")
    assert (problem["status"], problem["code"], problem["retryable"]) == (500, "internal", False)
    assert problem["instance"] == "/api/v1/x"
