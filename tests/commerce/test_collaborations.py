"""Commission plans, collaborations and fee rules: the transitions and their refusals, the lock period of a rate
cut (the pure rule with explicit times, and through REST), targeted over open, ending, visibility, validation.

The seeded world (tests/support/world.py) has `plan` (brand's open plan, sale_product at 10%; host applied, other_host
approved), `other_plan` (other_brand's open plan) and `targeted_plan` (brand's, sale_product at 15%, offered to
other_host).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce import collaborations, fees
from livecommerce.commerce.collaborations import CreatorTerms, RateChange, rate_in_force, starts_at
from livecommerce.commerce.terms import DEFAULT_FEE_BASE, DEFAULT_FEE_BPS
from livecommerce.database import session_factory
from livecommerce.models import FeeBase, Product
from tests.support.world import World, seed_world

LOCK = timedelta(days=30)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
Client = TestClient[Request, Application]


def _history(*changes: tuple[int, datetime]) -> list[RateChange]:
    """Changes made in order, each with the `effective_at` the rule gives it."""
    history: list[RateChange] = []
    for rate_bps, set_at in changes:
        history.append(RateChange(rate_bps, set_at, starts_at(history, rate_bps=rate_bps, set_at=set_at, lock=LOCK)))
    return history


def _rate(history: list[RateChange], at: datetime, approved_at: datetime | None) -> int | None:
    change = rate_in_force(history, at=at, approved_at=approved_at)
    return None if change is None else change.rate_bps


# --- the pure rule --------------------------------------------------------------------------------------------


def test_a_cut_reaches_an_approved_creator_after_the_lock_and_a_later_creator_at_once() -> None:
    cut_at = T0 + 10 * DAY
    history = _history((1000, T0), (500, cut_at))
    assert history[1].effective_at == cut_at + LOCK
    early = T0 + DAY  # approved before the cut
    assert _rate(history, cut_at, early) == 1000
    assert _rate(history, cut_at + LOCK - timedelta(seconds=1), early) == 1000
    assert _rate(history, cut_at + LOCK, early) == 500
    late = cut_at + DAY  # approved after the cut: gets it from the approval on
    assert _rate(history, late, late) == 500
    assert _rate(history, T0 - DAY, early) is None  # nothing set yet


def test_a_raise_reaches_everyone_at_once_even_during_a_pending_cut() -> None:
    history = _history((1000, T0), (500, T0 + DAY), (1200, T0 + 2 * DAY))
    assert history[2].effective_at == T0 + 2 * DAY
    for approved_at in (None, T0, T0 + 3 * DAY):
        assert _rate(history, T0 + 3 * DAY, approved_at) == 1200
    # A raise over a pending cut reaches everyone at once; the rate the cut replaced still protects the creators
    # who had it until the cut's lock ends, and then they get the raise, never the superseded cut.
    history = _history((1000, T0), (500, T0 + DAY), (800, T0 + 2 * DAY))
    assert history[2].effective_at == T0 + 2 * DAY
    assert _rate(history, T0 + 3 * DAY, T0) == 1000
    assert _rate(history, T0 + DAY + LOCK - timedelta(seconds=1), T0) == 1000
    assert _rate(history, T0 + DAY + LOCK, T0) == 800
    assert _rate(history, T0 + 3 * DAY, T0 + DAY + timedelta(hours=1)) == 800  # approved during the cut
    assert collaborations.next_change(history, at=T0 + 3 * DAY, approved_at=T0) == RateChange(
        800, T0 + 2 * DAY, T0 + DAY + LOCK
    )


def test_a_creator_approved_after_a_cut_gets_a_later_raise_at_once() -> None:
    history = _history((2000, T0), (1000, T0 + DAY), (1500, T0 + 3 * DAY))
    approved = T0 + 2 * DAY  # under the cut: they never had 2000
    assert _rate(history, T0 + 2 * DAY, approved) == 1000
    assert _rate(history, T0 + 3 * DAY, approved) == 1500
    assert collaborations.next_change(history, at=T0 + 3 * DAY, approved_at=approved) is None
    assert _rate(history, T0 + 3 * DAY, T0) == 2000  # the creator who had 2000 keeps it for the lock
    assert _rate(history, T0 + DAY + LOCK, T0) == 1500


def test_next_change_names_the_pending_cut() -> None:
    history = _history((1000, T0), (500, T0 + DAY))
    pending = collaborations.next_change(history, at=T0 + 2 * DAY, approved_at=T0)
    assert pending == RateChange(500, T0 + DAY, T0 + DAY + LOCK)
    assert collaborations.next_change(history, at=T0 + 2 * DAY, approved_at=T0 + 2 * DAY) is None


_changes = st.lists(
    st.tuples(st.integers(100, 8000), st.integers(0, 90 * 24)),  # rate, hours after the previous change
    min_size=1,
    max_size=8,
)


@given(_changes, st.integers(0, 400 * 24), st.integers(0, 400 * 24))
def test_no_rate_drops_for_an_approved_creator_sooner_than_the_lock(
    steps: list[tuple[int, int]], approved_hours: int, probe_hours: int
) -> None:
    at = T0
    made = []
    for rate_bps, gap in steps:
        at += timedelta(hours=gap)
        made.append((rate_bps, at))
    history = _history(*made)
    approved_at = T0 + timedelta(hours=approved_hours)
    later = approved_at + timedelta(hours=probe_hours)
    for change in history:
        if change.rate_bps >= (_rate(history[: history.index(change)], change.set_at, None) or 0):
            assert change.effective_at == change.set_at  # a raise (or a first rate) at once
    hour = timedelta(hours=1)
    previous = _rate(history, later - hour, approved_at) if later - hour >= approved_at else None
    now = rate_in_force(history, at=later, approved_at=approved_at)
    if previous is not None and now is not None and now.rate_bps < previous:
        # The lower rate reached this creator either by its lock, or because it was set before their approval.
        assert now.set_at + LOCK <= later or now.set_at <= approved_at
    if approved_at >= made[-1][1]:  # approved after every change: the latest rate, at once
        assert _rate(history, later, approved_at) == made[-1][0]


def _plan_rate(made: list[tuple[int, datetime]], at: datetime) -> int | None:
    """The plan's own rate at `at` (the latest change made by then)."""
    rate = None
    for rate_bps, set_at in made:
        if set_at <= at:
            rate = rate_bps
    return rate


@given(_changes, st.integers(0, 400 * 24), st.integers(0, 400 * 24))
def test_the_rate_is_the_best_the_plan_offered_the_creator_within_the_lock(
    steps: list[tuple[int, int]], approved_hours: int, probe_hours: int
) -> None:
    """Against the rule's plain statement, by brute force over the hours: the best rate the plan had in force at
    any moment since the creator's approval and within one lock period before now (a raise is never delayed,
    since the raised rate is itself in that window)."""
    at = T0
    made = []
    for rate_bps, gap in steps:
        at += timedelta(hours=gap)
        made.append((rate_bps, at))
    history = _history(*made)
    approved_at = T0 + timedelta(hours=approved_hours)
    probe = approved_at + timedelta(hours=probe_hours)
    start = max(approved_at, probe - LOCK)
    moments = [start, *(set_at for _, set_at in made if start < set_at <= probe)]
    offered = [r for r in (_plan_rate(made, m) for m in moments) if r is not None]
    assert _rate(history, probe, approved_at) == (max(offered) if offered else None)


# --- through REST ---------------------------------------------------------------------------------------------


async def _terms(engine: AsyncEngine, creator_id: int, product_id: int, at: datetime) -> CreatorTerms | None:
    async with session_factory(engine)() as session:
        product = await session.get(Product, product_id)
        assert product is not None
        return await collaborations.terms_for(session, creator_id=creator_id, product=product, at=at)


def _rates(collaboration: dict[str, Any]) -> dict[int, tuple[int | None, Any]]:
    return {r["product_id"]: (r["rate_bps"], r["next"]) for r in collaboration["rates"]}


async def test_a_cut_by_rest_waits_out_the_lock_for_approved_creators_only(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    ids, api = w.ids, w.api
    path = f"/api/v1/plans/{ids['plan']}/rates/{ids['sale_product']}"
    cut = await api.ok("PUT", path, who="staff", json={"rate_bps": 500})
    set_at = datetime.fromisoformat(cut["set_at"])
    assert datetime.fromisoformat(cut["effective_at"]) == set_at + LOCK  # the default lock, 30 days
    partnership = await api.ok("GET", f"/api/v1/collaborations/{ids['partnership']}", who="other_host")
    rate, pending = _rates(partnership)[ids["sale_product"]]
    assert rate == 1000
    assert pending["rate_bps"] == 500
    assert datetime.fromisoformat(pending["effective_at"]) == set_at + LOCK
    assert await _terms(engine, ids["other_host"], ids["sale_product"], set_at + DAY) == CreatorTerms(
        ids["partnership"], 1000
    )
    assert await _terms(engine, ids["other_host"], ids["sale_product"], set_at + LOCK) == CreatorTerms(
        ids["partnership"], 500
    )
    # host is approved after the cut: the new rate at once, nothing pending.
    approved = await api.ok("POST", f"/api/v1/collaborations/{ids['application']}/approve", who="staff")
    assert _rates(approved)[ids["sale_product"]] == (500, None)
    assert await _terms(engine, ids["host"], ids["sale_product"], datetime.now(UTC)) == CreatorTerms(
        ids["application"], 500
    )
    raise_ = await api.ok("PUT", path, who="admin", json={"rate_bps": 1200})
    assert raise_["effective_at"] == raise_["set_at"]
    partnership = await api.ok("GET", f"/api/v1/collaborations/{ids['partnership']}", who="staff")
    assert _rates(partnership)[ids["sale_product"]] == (1200, None)
    plan = await api.ok("GET", f"/api/v1/plans/{ids['plan']}", who="host")
    assert [(r["product_id"], r["rate_bps"]) for r in plan["rates"]] == [(ids["sale_product"], 1200)]


async def test_a_targeted_plan_overrides_the_open_plan_and_ending_stops_terms(
    client: Client, engine: AsyncEngine
) -> None:
    w = await seed_world(client, engine)
    ids, api = w.ids, w.api
    now = datetime.now(UTC)
    assert await _terms(engine, ids["other_host"], ids["sale_product"], now) == CreatorTerms(ids["partnership"], 1000)
    offer = await api.ok("POST", f"/api/v1/collaborations/{ids['offer']}/accept", who="other_host")
    assert offer["status"] == "approved"
    assert offer["plan_kind"] == "targeted"
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await _terms(engine, ids["other_host"], ids["sale_product"], later) == CreatorTerms(ids["offer"], 1500)
    # No rate for the other brand's product, no terms; a host with no approved collaboration, none.
    assert await _terms(engine, ids["other_host"], ids["other_product"], later) is None
    assert await _terms(engine, ids["host"], ids["sale_product"], later) is None
    ended = await api.ok("POST", f"/api/v1/collaborations/{ids['offer']}/end", who="staff", json={"reason": "Over"})
    assert (ended["status"], ended["reason"]) == ("ended", "Over")
    assert await _terms(engine, ids["other_host"], ids["sale_product"], later) == CreatorTerms(ids["partnership"], 1000)
    await api.ok("POST", f"/api/v1/collaborations/{ids['partnership']}/end", who="other_host", json={})
    assert await _terms(engine, ids["other_host"], ids["sale_product"], later) is None


async def _refused(w: World, method: str, path: str, who: str, status: int, json: Any = None) -> dict[str, Any]:
    got, body = await w.api.call(method, path, who=who, json=json)
    assert got == status, body
    assert body["detail"]
    return dict(body)


async def test_transitions_refuse_the_wrong_state_naming_the_current_one(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    ids = w.ids
    application = f"/api/v1/collaborations/{ids['application']}"
    offer = f"/api/v1/collaborations/{ids['offer']}"
    body = await _refused(w, "POST", f"{application}/accept", "host", 409)  # the brand decides an application
    assert "applied" in body["detail"]
    await _refused(w, "POST", f"{offer}/accept", "staff", 403)  # the creator decides an offer
    body = await _refused(w, "POST", f"{offer}/approve", "staff", 409)
    assert "offered" in body["detail"]
    body = await _refused(w, "POST", f"{application}/end", "staff", 409, {})
    assert "applied" in body["detail"]
    body = await _refused(w, "POST", f"{application}/reject", "staff", 422, {"reason": ""})
    assert body["errors"][0]["field"] == "body.reason"
    rejected = await w.api.ok("POST", f"{application}/reject", who="staff", json={"reason": "Not now"})
    assert (rejected["status"], rejected["reason"]) == ("rejected", "Not now")
    body = await _refused(w, "POST", f"{application}/approve", "admin", 409)
    assert "rejected" in body["detail"]
    # Re-applying after a rejection reopens the same collaboration.
    again = await w.api.ok(
        "POST", f"/api/v1/plans/{ids['plan']}/applications", who="host", json={"message": "Again"}, status=201
    )
    assert (again["id"], again["status"], again["message"], again["reason"]) == (
        ids["application"],
        "applied",
        "Again",
        "",
    )
    body = await _refused(w, "POST", f"/api/v1/plans/{ids['plan']}/applications", "host", 409, {})
    assert "applied" in body["detail"]
    body = await _refused(w, "POST", f"/api/v1/plans/{ids['targeted_plan']}/applications", "other_host", 409, {})
    assert "targeted" in body["detail"]
    declined = await w.api.ok("POST", f"{offer}/decline", who="other_host", json={"reason": "Busy"})
    assert declined["status"] == "declined"
    body = await _refused(w, "POST", f"{offer}/accept", "other_host", 409)
    assert "declined" in body["detail"]


async def test_plan_creation_and_rate_validation(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    ids = w.ids
    plans = f"/api/v1/brands/{ids['brand']}/plans"
    body = await _refused(w, "POST", plans, "staff", 409, {"kind": "open", "name": "Another"})
    assert f"id {ids['plan']}" in body["detail"]
    assert "'plan'" in body["detail"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "targeted", "name": "T", "creator_ids": [ids["viewer"]]}, "body.creator_ids"),
        ({"kind": "targeted", "name": "T"}, "body.creator_ids"),
        ({"kind": "open", "name": "T", "creator_ids": [ids["host"]]}, "body.creator_ids"),
        (
            {
                "kind": "targeted",
                "name": "T",
                "creator_ids": [ids["host"]],
                "rates": [{"product_id": ids["other_product"], "rate_bps": 1000}],
            },
            "body.rates.0.product_id",
        ),
        (
            {
                "kind": "targeted",
                "name": "T",
                "creator_ids": [ids["host"]],
                "rates": [{"product_id": ids["sale_product"], "rate_bps": 8001}],
            },
            "body.rates.0.rate_bps",
        ),
    ]
    for payload, field in cases:
        body = await _refused(w, "POST", plans, "staff", 422, payload)
        assert [e["field"] for e in body["errors"]] == [field], payload
    rate = f"/api/v1/plans/{ids['plan']}/rates/{ids['sale_product']}"
    for bad in (99, 8001):
        body = await _refused(w, "PUT", rate, "staff", 422, {"rate_bps": bad})
        assert [e["field"] for e in body["errors"]] == ["body.rate_bps"]
    await _refused(
        w, "PUT", f"/api/v1/plans/{ids['plan']}/rates/{ids['other_product']}", "staff", 404, {"rate_bps": 900}
    )
    created = await w.api.ok(
        "POST", plans, who="staff", status=201,
        json={"kind": "targeted", "name": "VIP", "creator_ids": [ids["host"]],
              "rates": [{"product_id": ids["product"], "rate_bps": 2500}]},
    )  # fmt: skip
    assert (created["kind"], created["brand_name"]) == ("targeted", "Brand")
    assert [(r["product_id"], r["rate_bps"], r["currency"]) for r in created["rates"]] == [
        (ids["product"], 2500, "USD")
    ]
    offers = await w.api.ok("GET", "/api/v1/collaborations?status=offered", who="host")
    assert [(c["plan_id"], c["creator_name"]) for c in offers["items"]] == [(created["id"], "Host")]


async def test_who_sees_which_plans_and_collaborations(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    ids = w.ids

    async def plan_ids(path: str, who: str) -> list[int]:
        return [p["id"] for p in (await w.api.ok("GET", path, who=who))["items"]]

    brand_plans = f"/api/v1/brands/{ids['brand']}/plans"
    assert await plan_ids(brand_plans, "staff") == [ids["plan"], ids["targeted_plan"]]
    assert await plan_ids(brand_plans, "other_host") == [ids["plan"], ids["targeted_plan"]]  # offered to them
    assert await plan_ids(brand_plans, "host") == [ids["plan"]]
    assert await plan_ids(brand_plans, "other_staff") == [ids["plan"]]
    assert await plan_ids("/api/v1/plans", "viewer") == [ids["plan"], ids["other_plan"]]  # open plans only

    async def collaboration_ids(who: str, query: str = "") -> set[int]:
        return {c["id"] for c in (await w.api.ok("GET", f"/api/v1/collaborations{query}", who=who))["items"]}

    everyone = {ids["application"], ids["partnership"], ids["offer"]}
    assert await collaboration_ids("admin") == everyone
    assert await collaboration_ids("staff") == everyone
    assert await collaboration_ids("other_staff") == set()
    assert await collaboration_ids("host") == {ids["application"]}
    assert await collaboration_ids("other_host") == {ids["partnership"], ids["offer"]}
    assert await collaboration_ids("viewer") == set()
    assert await collaboration_ids("admin", "?status=approved") == {ids["partnership"]}
    assert await collaboration_ids("admin", f"?brand_id={ids['other_brand']}") == set()
    await _refused(w, "GET", f"/api/v1/collaborations/{ids['partnership']}", "host", 404)


async def test_fee_rules_default_then_the_latest_in_force(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    now = datetime.now(UTC)
    async with session_factory(engine)() as session:
        assert await fees.rule_in_force(session, now) == fees.FeeTerms(None, DEFAULT_FEE_BPS, DEFAULT_FEE_BASE)
    current = await w.api.ok(
        "POST", "/api/v1/fee-rules", who="admin", status=201,
        json={"bps": 600, "base": "buyer_paid_plus_discount", "effective_from": now.isoformat()},
    )  # fmt: skip
    future = now + timedelta(days=7)
    scheduled = await w.api.ok(
        "POST", "/api/v1/fee-rules", who="admin", status=201,
        json={"bps": 300, "base": "buyer_paid", "effective_from": future.isoformat()},
    )  # fmt: skip
    async with session_factory(engine)() as session:
        in_force = await fees.rule_in_force(session, now + timedelta(seconds=1))
        assert in_force == fees.FeeTerms(current["id"], 600, FeeBase.BUYER_PAID_PLUS_DISCOUNT)
        assert (await fees.rule_in_force(session, future)).rule_id == scheduled["id"]
    listed = await w.api.ok("GET", "/api/v1/fee-rules", who="admin")
    assert [r["id"] for r in listed["items"]] == [current["id"], scheduled["id"]]
    stale = (now - timedelta(minutes=10)).isoformat()
    for payload, field in (
        ({"bps": 100, "base": "buyer_paid", "effective_from": stale}, "body.effective_from"),
        ({"bps": 2001, "base": "buyer_paid", "effective_from": now.isoformat()}, "body.bps"),
    ):
        body = await _refused(w, "POST", "/api/v1/fee-rules", "admin", 422, payload)
        assert [e["field"] for e in body["errors"]] == [field]
