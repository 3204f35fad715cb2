"""Locust: signed-in buyers tapping Buy over REST in a live room, some of them paying for their hold.

Each simulated user is one buyer at a time (tokens from the buyers file, round-robin; a buyer who reached the
per-buyer cap hands over to the next one, so the sale can sell out). Its task:

1. ``POST /api/v1/rooms/{room}/buy`` ``{"product_id", "quantity": 1, "idempotency_key": <fresh>}``:
   ``201`` a hold; ``409`` with ``sold_out`` / ``limit_reached`` / ``not_enough_left`` is an expected refusal
   (counted as a success under its own name, so the table shows how the burst was answered); anything else fails.
2. After a hold, with probability ``BUY_RETRY_SHARE`` (0.1), the same tap again with the same key: it must come
   back ``replayed`` with the same hold (idempotency), else it fails.
3. With probability ``BUY_CHECKOUT_SHARE`` (0.5), ``POST /api/v1/holds/{id}/checkout`` with the test card
   ``4242 4242 4242 4242``: ``200`` paid.

Setup (see loadtests/README.md): run a server with a known secret and rate limits off, seed it with
``buy_seed.py`` (which writes the buyers file: room, product and one token per buyer), then::

    .venv/bin/locust -f loadtests/locustfile_buyers.py --headless -u 200 -r 50 -t 30s \\
        --host http://127.0.0.1:8000 --only-summary

Environment: ``BUY_BUYERS_FILE`` (default /tmp/livecommerce-buyers.json), ``BUY_CHECKOUT_SHARE``,
``BUY_RETRY_SHARE``, ``BUY_WAIT_MIN`` / ``BUY_WAIT_MAX`` (seconds between a buyer's taps; 0.05 / 0.5).
Bounded by locust's own ``-u`` (buyers) and ``-t`` (run time); it talks only to ``--host``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

_FILE = Path(os.environ.get("BUY_BUYERS_FILE", "/tmp/livecommerce-buyers.json"))  # noqa: S108
_CHECKOUT_SHARE = float(os.environ.get("BUY_CHECKOUT_SHARE", "0.5"))
_RETRY_SHARE = float(os.environ.get("BUY_RETRY_SHARE", "0.1"))
_EXPECTED_REFUSALS = {"sold_out", "limit_reached", "not_enough_left"}
_CARD = "4242 4242 4242 4242"

_buyers: dict[str, Any] = {}
_next = itertools.count()


@events.init.add_listener
def _load_buyers(environment: Any, **_: Any) -> None:
    if not _FILE.exists():
        raise SystemExit(f"{_FILE} not found: seed the server with loadtests/buy_seed.py first (loadtests/README.md)")
    _buyers.update(json.loads(_FILE.read_text()))


class Buyer(FastHttpUser):
    wait_time = between(float(os.environ.get("BUY_WAIT_MIN", "0.05")), float(os.environ.get("BUY_WAIT_MAX", "0.5")))

    def on_start(self) -> None:
        self.room = _buyers["room_id"]
        self.product = _buyers["product_id"]
        self._next_buyer()

    def _next_buyer(self) -> None:
        """Become the next buyer of the file (at start, and when this one has reached the per-buyer cap)."""
        tokens = _buyers["tokens"]
        self.headers = {"Authorization": f"Bearer {tokens[next(_next) % len(tokens)]}"}

    def _buy(self, key: str, name: str) -> dict[str, Any] | None:
        body = {"product_id": self.product, "quantity": 1, "idempotency_key": key}
        with self.client.post(
            f"/api/v1/rooms/{self.room}/buy", json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            if response.status_code == 201:
                response.success()
                return response.json()
            code = _problem_code(response)
            if response.status_code == 409 and code in _EXPECTED_REFUSALS:
                response.request_meta["name"] = f"{name} → {code}"
                response.success()
                if code == "limit_reached":  # this buyer is done; another viewer takes its place
                    self._next_buyer()
            else:
                response.failure(f"{response.status_code} {code}")
        return None

    @task
    def tap_buy(self) -> None:
        key = uuid.uuid4().hex
        hold = self._buy(key, "buy")
        if hold is None:
            return
        if random.random() < _RETRY_SHARE:  # a network retry: same key, same hold, no second unit
            again = self._buy(key, "buy (retry, same key)")
            if again is not None and (again.get("id") != hold["id"] or not again.get("replayed")):
                events.request.fire(
                    request_type="CHECK", name="retry returned the same hold", response_time=0, response_length=0,
                    exception=AssertionError(f"retry gave {again.get('id')} (replayed {again.get('replayed')})"),
                )  # fmt: skip
        if random.random() < _CHECKOUT_SHARE:
            with self.client.post(
                f"/api/v1/holds/{hold['id']}/checkout", json={"card_number": _CARD}, headers=self.headers,
                name="/api/v1/holds/[hold]/checkout", catch_response=True,
            ) as response:  # fmt: skip
                if response.status_code == 200 and response.json().get("state") == "paid":
                    response.success()
                else:
                    response.failure(f"{response.status_code} {_problem_code(response)}")


def _problem_code(response: Any) -> str:
    try:
        return str(response.json().get("code"))
    except (ValueError, AttributeError):
        return "?"
