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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson
import pytest
import requests
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
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
from tests.helpers import SECRET, World, seed_world

_PROBLEM_TYPE = "application/problem+json"
_ALIAS = re.compile(r"\{(\w+)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")

# --- route coverage and document validity --------------------------------------------------------------------


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, with `{name:regex}` written as `{name}`."""
    routes = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        path = _ALIAS.sub(r"{\1}", resource.canonical)
        if path not in {"/", "/openapi.json"}:
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
    schema.validate()  # against the OpenAPI 3.1 meta-schema schemathesis ships
    for name, component in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), f"components.schemas.{name} is not a valid JSON Schema"
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', orjson.dumps(document).decode()))
    assert referenced <= set(document["components"]["schemas"]), "dangling $ref"
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    assert all(re.fullmatch(r"[a-z][a-z_]*", op_id) for op_id in operation_ids), operation_ids
    problems = 0
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if int(status) >= 400 and _PROBLEM_TYPE in content:
                    problems += 1
                assert int(status) < 400 or content, f"{status} documents no body"
    assert problems > 0


# --- the fuzz -------------------------------------------------------------------------------------------------

_FUZZ_SETTINGS = settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
_REQUEST_TIMEOUT = 10.0


def _problem_format(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Errors are RFC 9457 problems whose `status` is the HTTP status; 204 has no body."""
    status = response.status_code
    if status == 204:
        assert not response.content, "204 with a body"
    if status < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.split(";")[0] == _PROBLEM_TYPE, f"{status} answered as {content_type}, not problem JSON"
    body = response.json()
    assert body["status"] == status, f"problem status {body['status']} in a {status} response"
    assert body["detail"].strip(), "a problem with an empty detail"
    if status == 401:
        assert "www-authenticate" in response.headers, "401 without WWW-Authenticate"


_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
           _problem_format]  # fmt: skip


@dataclass(frozen=True)
class _Caller:
    name: str
    token: str | None


def _known_ids(ids: Mapping[str, int]) -> dict[str, list[int]]:
    """Path parameter values that name real rows, so the fuzz reaches past 404 (mixed with generated ids)."""
    return {
        "brand_id": [ids["brand"], ids["other_brand"]],
        "product_id": [ids["product"], ids["other_product"]],
        "room_id": [ids["room"], ids["private_room"], ids["other_room"]],
        "user_id": [ids[name] for name in ("admin", "host", "staff", "viewer")],
    }


def _strategy(
    operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, known: Mapping[str, list[int]]
) -> st.SearchStrategy[schemathesis.Case]:
    generated = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters]
    if not names:
        return generated
    real = st.fixed_dictionaries({name: st.sampled_from(known[name]) for name in names}).flatmap(
        lambda path: operation.as_strategy(generation_mode=mode, path_parameters=path)
    )
    return st.one_of(real, generated)


def _fuzz(
    schema: schemathesis.BaseSchema,
    base_url: str,
    caller: _Caller,
    known: Mapping[str, list[int]],
    mode: schemathesis.GenerationMode,
) -> list[str]:
    """Fuzz each operation in turn; return one failure report per failing operation."""
    failures = []
    checks: list[Callable[..., Any]] = [*_CHECKS]
    if mode is schemathesis.GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=_strategy(operation, mode, known))
            @_FUZZ_SETTINGS
            def run(case: schemathesis.Case) -> None:
                headers = {}
                if caller.token is not None:
                    headers["Authorization"] = f"Bearer {caller.token}"
                elif mode is schemathesis.GenerationMode.POSITIVE and case.headers:
                    case.headers.pop("Authorization", None)
                case.call_and_validate(
                    base_url, session, headers=headers, checks=checks, timeout=_REQUEST_TIMEOUT
                )

            try:
                run()
            except Unsatisfiable:
                if mode is schemathesis.GenerationMode.POSITIVE:
                    raise
                # Nothing to negate: the operation takes no parameters, body or credentials.
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
                failures.append(f"{operation.label} as {caller.name} ({mode.value}):\n{exc}")
    return failures


@pytest.fixture
async def world(client: TestClient[Any, Any], engine: AsyncEngine) -> World:
    return await seed_world(client, engine)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("caller", ["anonymous", "admin", "viewer", "staff"])
async def test_fuzz_every_operation(client: TestClient[Any, Any], world: World, caller: str) -> None:
    document = await _document(client)
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config())
    base_url = str(client.make_url("")).rstrip("/")
    who = _Caller(caller, world.api.tokens.get(caller))
    known = _known_ids(world.ids)
    failures = []
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        failures += await asyncio.to_thread(_fuzz, schema, base_url, who, known, mode)
    assert not failures, "\n\n".join(failures)


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

        async def chunks() -> Any:
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
