"""The OpenAPI document against the running app: same routes, a valid document, and a fuzz of every operation.

The fuzz generates requests from the document with schemathesis (valid ones, and invalid ones that the API must
refuse with a 4xx), sends them to the real app on loopback as several callers, and checks every answer against
the document: never a 5xx, only documented statuses and content types, bodies matching their schemas, and
errors in RFC 9457 problem format. Hypothesis runs derandomized, so a run is reproducible.

Schemathesis sends requests synchronously, so the fuzz runs in a worker thread while the app keeps serving on
the test's event loop.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import jsonschema_rs
import orjson
import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce import users
from livecommerce.auth import TokenSigner
from livecommerce.database import session_factory
from livecommerce.models import Brand, Role
from livecommerce.settings import Settings
from livecommerce.webapp import PAGES
from tests.support.world import SECRET, World, seed_world

_PROBLEM_TYPE = "application/problem+json"
_Case = schemathesis.Case[Any]
_Operation = schemathesis.APIOperation[Any, Any, Any, Any]
_ALIAS = re.compile(r"\{(\w+)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")

# --- route coverage and document validity --------------------------------------------------------------------


_NOT_REST = {"/", "/openapi.json", "/socket.io/", "/web", *(_ALIAS.sub(r"{\1}", route) for route, _ in PAGES)}


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, with `{name:regex}` written as `{name}`."""
    routes = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        path = _ALIAS.sub(r"{\1}", resource.canonical)
        # Not REST: the pages (livecommerce/webapp.py), the document itself, and Socket.IO (docs/protocol.md).
        if path not in _NOT_REST:
            routes.add((route.method, path))
    return routes


def _operations(document: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


async def _document(client: TestClient[Any, Any]) -> dict[str, Any]:
    async with client.get("/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        document: dict[str, Any] = orjson.loads(await response.read())
        return document


async def test_every_route_is_documented_and_every_operation_routed(client: TestClient[Any, Any]) -> None:
    document = await _document(client)
    routes, operations = _routes(client.app), _operations(document)
    assert routes - operations == set(), "routes missing from /openapi.json"
    assert operations - routes == set(), "documented operations the app does not route"
    assert len(routes) >= 20


def test_alias_pattern_strips_route_regexes() -> None:
    assert _ALIAS.sub(r"{\1}", "/a/{room_id:[0-9]{1,10}}/b/{x}") == "/a/{room_id}/b/{x}"


async def test_document_is_valid_openapi_3_1(client: TestClient[Any, Any]) -> None:
    document = await _document(client)
    assert document["openapi"].startswith("3.1.")
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config())
    schema.validate()  # against the OpenAPI 3.1 meta-schema schemathesis ships; raises what is wrong
    for name, component in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), f"components.schemas.{name} is not a valid JSON Schema"
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', orjson.dumps(document).decode()))
    assert referenced <= set(document["components"]["schemas"]), "dangling $ref"
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    assert all(re.fullmatch(r"[a-z][a-z_]*", op_id) for op_id in operation_ids), operation_ids


async def test_every_error_is_documented_as_a_problem(client: TestClient[Any, Any]) -> None:
    """Errors are problem JSON; statuses the middleware gives any route are documented on every route."""
    document = await _document(client)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            assert "401" in responses, f"{where}: a bad bearer token is refused on every route"
            if path.startswith("/api/"):
                assert {"422", "429", "503"} <= set(responses), f"{where}: unknown query / rate limit not documented"
                assert "Retry-After" in responses["429"]["headers"]
            for status, response in responses.items():
                if int(status) >= 400 and path.startswith("/api/"):
                    assert list(response["content"]) == [_PROBLEM_TYPE], f"{where} {status}"
                for parameter in operation.get("parameters", []):
                    assert "null" not in orjson.dumps(parameter["schema"]).decode(), f"{where}: null in a parameter"


# --- the fuzz -------------------------------------------------------------------------------------------------

POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE


@dataclass(frozen=True)
class _Run:
    """Who calls, and how many examples per operation in each generation mode (0: that mode is skipped).

    Invalid input is refused before the caller matters, so negative cases run as the admin (whose requests get
    furthest) and anonymously (where schemathesis also sends malformed credentials); viewers and brand staff
    add the authorisation paths with valid input.
    """

    caller: str
    positive: int
    negative: int


_RUNS = [_Run("anonymous", 10, 10), _Run("admin", 20, 15), _Run("viewer", 10, 0), _Run("staff", 10, 0)]
_REQUEST_TIMEOUT = 30.0  # a correctness fuzz: a machine stall under the parallel suite must not count as a failure


def _problem_format(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: _Case) -> bool | None:
    """Errors are RFC 9457 problems whose `status` is the HTTP status; 204 has no body."""
    status = response.status_code
    if status == 204:
        assert not response.content, "204 with a body"
    if status < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.split(";")[0] == _PROBLEM_TYPE, f"{status} answered as {content_type}, not problem JSON"
    body = response.json()
    assert body["status"] == status, f"problem status {body['status']} in a {status} response"
    assert body["detail"].strip(), "a problem with an empty detail"
    if status == 401:
        assert "www-authenticate" in response.headers, "401 without WWW-Authenticate"
    if status == 422:  # the document promises that `errors` lists each field or parameter
        fields = [error["field"] for error in body.get("errors") or []]
        assert fields, "a 422 without `errors`"
        assert all(field.startswith(("body.", "query.")) for field in fields), fields
    return None


_CHECKS: list[schemathesis.CheckFunction] = [not_a_server_error, status_code_conformance, content_type_conformance,
                                     response_schema_conformance, _problem_format]  # fmt: skip


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def _sdp_text(ctx: Any, value: Any) -> bytes:
    """WHIP/WHEP bodies are SDP text (livecommerce/media/http.py): a generated value goes as UTF-8 text."""
    return (value if isinstance(value, str) else repr(value)).encode()


def _known_ids(ids: Mapping[str, int]) -> dict[str, list[int] | list[str]]:
    """Path parameter values that name real rows, so the fuzz reaches past 404 (mixed with generated ids)."""
    return {
        "brand_id": [ids["brand"], ids["other_brand"]],
        "product_id": [ids["product"], ids["other_product"]],
        "room_id": [ids["room"], ids["private_room"], ids["other_room"]],
        "user_id": [ids[name] for name in ("admin", "host", "staff", "viewer")],
        "session_id": ["NoSuchSession0000000000"],  # WHIP/WHEP sessions: well-formed, never live here
        "sale_id": [ids["sale"], ids["scheduled_sale"], ids["live_sale"]],
        "order_id": [ids["order"]],
        "plan_id": [ids["plan"], ids["other_plan"], ids["targeted_plan"]],
        "collaboration_id": [ids["application"], ids["partnership"], ids["offer"]],
        "campaign_id": [ids["campaign"]],
        "voucher_id": [ids["seller_voucher"], ids["platform_voucher"], ids["ended_voucher"]],
        "hold_id": [f"s{ids['live_sale']}.1", "p1.1"],  # well-formed; the world holds none in Redis
    }


def _soon(case: _Case, offset: timedelta | None) -> _Case:
    """Move generated times into the accepted window, so room and flash-sale writes can succeed too."""
    if offset is not None and isinstance(case.body, dict):
        start = datetime.now(UTC) + offset
        for field, at in (("scheduled_start", start), ("starts_at", start), ("ends_at", start + timedelta(hours=1))):
            if field in case.body:
                case.body[field] = at.isoformat()
    return case


def _strategy(
    operation: _Operation, mode: schemathesis.GenerationMode, known: Mapping[str, list[int] | list[str]]
) -> st.SearchStrategy[_Case]:
    cases = operation.as_strategy(generation_mode=mode)
    names = [parameter.name for parameter in operation.path_parameters]
    if names:
        real = st.fixed_dictionaries({name: st.sampled_from(known[name]) for name in names}).flatmap(
            lambda path: operation.as_strategy(generation_mode=mode, path_parameters=path)
        )
        cases = st.one_of(real, cases)
    if mode is POSITIVE:
        offsets = st.none() | st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=365))
        cases = st.builds(_soon, cases, offsets)
    return cases


def _fuzz(
    schema: schemathesis.BaseSchema,
    base_url: str,
    caller: str,
    token: str | None,
    known: Mapping[str, list[int] | list[str]],
    mode: schemathesis.GenerationMode,
    examples: int,
) -> list[str]:
    """Fuzz each operation in turn; return one failure report per failing operation."""
    failures = []
    checks = [*_CHECKS, negative_data_rejection] if mode is NEGATIVE else _CHECKS
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                failures.append(f"an operation the fuzz cannot use: {result.err()}")
                continue
            operation = result.ok()

            @hypothesis.seed(zlib.crc32(f"{caller} {mode.value} {operation.label}".encode()))
            @hypothesis.settings(
                max_examples=examples,
                derandomize=True,
                database=None,
                deadline=None,
                print_blob=False,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
            )
            @hypothesis.given(case=_strategy(operation, mode, known))
            def run(case: _Case) -> None:
                if token is None and mode is POSITIVE and case.headers:
                    case.headers.pop("Authorization", None)  # anonymous means no credentials at all
                case.call_and_validate(base_url, session, headers=headers, checks=checks, timeout=_REQUEST_TIMEOUT)

            try:
                run()
            except Unsatisfiable:
                if mode is POSITIVE:
                    raise
                # Nothing to negate: the operation takes no parameters, no body and no credentials.
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every failure, report them all
                causes = "".join(f"\n  {cause!r}" for cause in getattr(exc, "exceptions", ()))[:2000]
                failures.append(f"{operation.label} as {caller} ({mode.value}):\n{exc}{causes}")
    return failures


@pytest.mark.timeout(300)
@pytest.mark.parametrize("run", _RUNS, ids=[run.caller for run in _RUNS])
async def test_fuzz_every_operation(client: TestClient[Any, Any], engine: AsyncEngine, run: _Run) -> None:
    """Every operation, fuzzed from the served document: no 5xx, and every answer as the document says."""
    world = await seed_world(client, engine)
    document = await _document(client)
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config())
    base_url = str(client.make_url("")).rstrip("/")
    token = world.api.tokens.get(run.caller)
    known = _known_ids(world.ids)
    failures = []
    for mode, examples in ((POSITIVE, run.positive), (NEGATIVE, run.negative)):
        if examples:
            failures += await asyncio.to_thread(_fuzz, schema, base_url, run.caller, token, known, mode, examples)
    assert not failures, "\n\n".join(failures)


@dataclass(frozen=True)
class _Edge:
    """One request the fuzz found answered with a 500 or an undocumented status, and what it must get now."""

    method: str
    path: str
    status: int
    body: Any = None
    query: dict[str, str] | None = None
    token: str | None = "admin"  # a caller's name, or a literal bad token when not one of the callers
    contains: Mapping[str, Any] | None = None  # fields the answer must have


_EDGES = {
    # users.display_name is VARCHAR(80): PostgreSQL refused 81 characters with a 500.
    "long_display_name": _Edge(
        "POST", "/api/v1/users", 422, {"email": "a@b.cd", "display_name": "x" * 81, "role": "viewer"}
    ),
    # PostgreSQL text cannot hold NUL: a 500 on PostgreSQL, stored as is on SQLite.
    "nul_in_email": _Edge(
        "POST", "/api/v1/users", 422, {"email": "a\x00z@b.cd", "display_name": "A", "role": "viewer"}
    ),
    "control_in_email": _Edge(
        "POST", "/api/v1/users", 422, {"email": "a\x01@b.cd", "display_name": "A", "role": "viewer"}
    ),
    # "İ" lower-cases to two code points: 245 characters became 485, over the column's 254.
    "email_longer_lowercased": _Edge(
        "POST", "/api/v1/users", 422, {"email": "\u0130" * 240 + "@b.cd", "display_name": "A", "role": "viewer"}
    ),
    "nul_in_image_url": _Edge(
        "POST",
        "/api/v1/brands/{brand_id}/products",
        422,
        {"sku": "S1", "title": "T", "image_url": "https://a\x00b", "price_minor": 1, "currency": "USD", "stock": 1},
    ),
    # Refused with 422 before; now documented on every route.
    "unknown_query_parameter": _Edge("GET", "/api/v1/brands/{brand_id}", 422, query={"colour": "red"}),
    "bad_token_on_a_probe": _Edge("GET", "/health", 401, token="not-a-token"),
    "patch_null_keeps_the_name": _Edge(
        "PATCH", "/api/v1/brands/{brand_id}", 200, {"name": None}, contains={"name": "Brand"}
    ),
}


def _send_edge(schema: schemathesis.BaseSchema, base_url: str, edge: _Edge, world: World) -> schemathesis.Response:
    operation = schema[edge.path][edge.method]
    names = [parameter.name for parameter in operation.path_parameters]
    case = operation.Case(
        path_parameters={name: world.ids[name.removesuffix("_id")] for name in names},
        query=edge.query,
        body=edge.body if edge.body is not None else NOT_SET,
    )
    token = world.api.tokens.get(edge.token or "", edge.token)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with requests.Session() as session:
        response: schemathesis.Response = case.call_and_validate(
            base_url, session, headers=headers, checks=_CHECKS, timeout=_REQUEST_TIMEOUT
        )
    return response


@pytest.mark.parametrize("edge", list(_EDGES), ids=list(_EDGES))
async def test_edge_values_the_fuzz_found(client: TestClient[Any, Any], engine: AsyncEngine, edge: str) -> None:
    """Regressions, run through the same document checks as the fuzz, with the status each must get."""
    world = await seed_world(client, engine)
    schema = schemathesis.openapi.from_dict(await _document(client), config=schemathesis.Config())
    base_url = str(client.make_url("")).rstrip("/")
    response = await asyncio.to_thread(_send_edge, schema, base_url, _EDGES[edge], world)
    assert response.status_code == _EDGES[edge].status, response.text
    expected = _EDGES[edge].contains or {}
    assert {key: response.json()[key] for key in expected} == expected


# --- problem details for malformed input ----------------------------------------------------------------------


async def _admin_token(engine: AsyncEngine) -> str:
    async with session_factory(engine).begin() as session:
        admin = await users.create_user(session, None, email="root@t.dev", display_name="Root", role=Role.ADMIN,
                                        brand_id=None)  # fmt: skip
    return TokenSigner(SECRET, 3600).issue(admin.id, Role.ADMIN)


async def _brand_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Brand)) or 0)


@dataclass(frozen=True)
class _Bad:
    body: bytes | None
    content_type: str | None
    status: int
    check: Callable[[dict[str, Any]], bool]
    chunked: bool = False


def _big(settings: Settings) -> bytes:
    return orjson.dumps({"name": "Big", "description": "x" * settings.max_body_bytes})


_BAD = {
    "malformed_json": _Bad(b'{"name": "A",', "application/json", 400, lambda p: "JSON" in p["detail"]),
    "not_an_object": _Bad(b'["A"]', "application/json", 400, lambda p: "JSON object" in p["detail"]),
    "empty_body": _Bad(b"", "application/json", 400, lambda p: "empty" in p["detail"]),
    "wrong_type": _Bad(
        b'{"name": 5}', "application/json", 422, lambda p: [e["field"] for e in p["errors"]] == ["body.name"]
    ),
    "unknown_field": _Bad(
        b'{"name": "A", "colour": "red"}',
        "application/json",
        422,
        lambda p: [e["field"] for e in p["errors"]] == ["body.colour"] and "body.colour" in p["detail"],
    ),
    "too_large": _Bad(None, "application/json", 413, lambda p: "limit" in p["detail"]),
    "too_large_chunked": _Bad(None, "application/json", 413, lambda p: "limit" in p["detail"], chunked=True),
    "form_encoded": _Bad(b"name=A", "application/x-www-form-urlencoded", 415, lambda p: "JSON" in p["detail"]),
    "no_content_type": _Bad(b'{"name": "A"}', None, 415, lambda p: "application/json" in p["detail"]),
}


@pytest.mark.parametrize("case", list(_BAD), ids=list(_BAD))
async def test_malformed_brand_is_a_problem_and_changes_nothing(
    client: TestClient[Any, Any], engine: AsyncEngine, settings: Settings, case: str
) -> None:
    bad = _BAD[case]
    token = await _admin_token(engine)
    before = await _brand_count(engine)
    body = _big(settings) if bad.body is None else bad.body
    headers = {"Authorization": f"Bearer {token}"}
    if bad.content_type is not None:
        headers["Content-Type"] = bad.content_type
    data: Any = body
    if bad.chunked:

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 4096):
                yield body[start : start + 4096]

        data = chunks()
    async with client.post("/api/v1/brands", data=data, headers=headers, skip_auto_headers=["Content-Type"]) as resp:
        assert resp.status == bad.status, await resp.text()
        assert resp.content_type == _PROBLEM_TYPE
        problem = await resp.json(content_type=_PROBLEM_TYPE)
    assert problem["status"] == bad.status
    assert problem["instance"] == "/api/v1/brands"
    assert bad.check(problem), problem
    assert await _brand_count(engine) == before
