"""The OpenAPI 3.1 document at `/openapi.json`, built from the same declarations that build the routes.

Because routes, validation and this document come from one `Endpoint` list, the document cannot describe an
API other than the one that runs; tests check real responses against it and fuzz every route from it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from livecommerce import __version__
from livecommerce.api.routing import STRING_PARAMS, Endpoint
from livecommerce.api.schemas import Health, Problem, Readiness
from livecommerce.wire import MAX_ID, STATUS_TEXT, problem_responses

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{model}"
# What every /api route may answer whatever it does: an invalid bearer token is refused (401) even where no
# sign-in is needed, query parameters the route does not take are refused (422), and the rate limiter
# refuses a caller over budget (429) or, when it cannot reach Redis, everyone (503).
_EVERY_ROUTE = (401, 422, 429, 503)


def _schemas(endpoints: list[Endpoint]) -> tuple[dict[Any, Any], dict[str, Any]]:
    models: list[tuple[type[BaseModel], Any]] = [(Problem, "serialization"), (Health, "serialization"),
                                                  (Readiness, "serialization")]  # fmt: skip
    for endpoint in endpoints:
        if endpoint.body is not None:
            models.append((endpoint.body, "validation"))
        if endpoint.response is not None:
            models.append((endpoint.response, "serialization"))
    refs, top = models_json_schema(models, ref_template=_REF)
    return refs, top.get("$defs", {})


def _query_schema(prop: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: no null (leaving the parameter out is the null), references inlined."""
    options = prop.pop("anyOf", None)
    if options is not None:
        present = [option for option in options if option.get("type") != "null"]
        prop = {**present[0], **prop} if len(present) == 1 else {"anyOf": present, **prop}
    if "default" in prop and prop["default"] is None:
        del prop["default"]
    reference = prop.pop("$ref", None)
    if reference is not None:
        target = {k: v for k, v in definitions[reference.rsplit("/", 1)[-1]].items() if k != "title"}
        prop = {**target, **prop}
    return prop


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "schema": _query_schema(prop, definitions),
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _operation(endpoint: Endpoint, refs: dict[Any, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "description": f"Who may call: {endpoint.access}." + (f" {endpoint.notes}" if endpoint.notes else ""),
        "tags": [endpoint.tag],
        "x-access": endpoint.access,
        "security": [{}, {"bearer": []}] if endpoint.access.startswith("anyone") else [{"bearer": []}],
    }
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": (
                {"type": "string", "pattern": f"^{STRING_PARAMS[name]}$"}
                if name in STRING_PARAMS
                else {"type": "integer", "minimum": 1, "maximum": MAX_ID}
            ),
        }
        for name in endpoint.path_params
    ]
    if endpoint.query is not None:
        parameters += _query_parameters(endpoint.query)
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(endpoint.body, "validation")]}},
        }
    success: dict[str, Any] = {"description": STATUS_TEXT.get(endpoint.status, "Success")}
    if endpoint.response is not None:
        success["content"] = {"application/json": {"schema": refs[(endpoint.response, "serialization")]}}
    elif endpoint.content_type != "application/json":  # a `Stream` (e.g. a CSV export)
        success["content"] = {endpoint.content_type: {"schema": {"type": "string"}}}
    operation["responses"] = {str(endpoint.status): success, **problem_responses((*endpoint.errors, *_EVERY_ROUTE))}
    if endpoint.replay_status is not None:  # a retry of the same idempotency key: the same body, another status
        replay = {**success, "description": "The same resource, answering a retry of its idempotency key"}
        operation["responses"][str(endpoint.replay_status)] = replay
    return operation


def _health_paths(refs: dict[Any, Any]) -> dict[str, Any]:
    def get(operation_id: str, summary: str, model: type[BaseModel], statuses: tuple[int, ...]) -> dict[str, Any]:
        responses = {
            str(status): {
                "description": STATUS_TEXT[status],
                "content": {"application/json": {"schema": refs[(model, "serialization")]}},
            }
            for status in statuses
        }
        # The probes take no credentials, but an invalid bearer token is refused here too.
        responses.update(problem_responses((401,)))
        return {"get": {"operationId": operation_id, "summary": summary, "tags": ["health"],
                        "security": [{}], "responses": responses}}  # fmt: skip

    return {
        "/health": get("health", "Liveness: the process is up", Health, (200,)),
        "/ready": get("ready", "Readiness: Redis and the database answer", Readiness, (200, 503)),
    }


def build_openapi(endpoints: list[Endpoint], extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    refs, definitions = _schemas(endpoints)
    paths: dict[str, Any] = _health_paths(refs)
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, refs)
    paths.update(extra_paths or {})  # routes whose bodies are not JSON (WHIP/WHEP SDP), described by their module
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "livecommerce",
            "version": __version__,
            "description": "REST API of livecommerce. Errors are RFC 9457 problem details "
            "(application/problem+json) with a stable `code` and a `detail` that says what to fix.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
