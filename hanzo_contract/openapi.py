"""Public API documents (OpenAPI 3.1) built from a service's own routes and models.

Each service marks its public endpoints with :func:`operation` (operationId, the models
it reads and answers, the permission it needs) and hands its route list to
:func:`build_document`: the paths and methods come from the routes themselves, the
schemas from the pydantic models the handlers validate with, so a route cannot be added,
renamed or retyped without the document following. The security schemes are the
credentials the gateway accepts (``Authorization: Bearer hk-...`` or a Casdoor JWT, and
``X-API-Key``), not the internal assertion the upstreams read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hanzo_contract.errors import ErrorBody

#: where the gateway serves each document (public routes of the route table)
MEMORY_OPENAPI_PATH = "/v1/openapi/memory.json"
KEYS_OPENAPI_PATH = "/v1/openapi/keys.json"
#: the page that renders both (served by the sidecar)
DOCS_PATH = "/v1/docs"

#: the attribute :func:`operation` sets on an endpoint
_ATTR = "__hanzo_operation__"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")

#: answers the gateway in front may give on any protected route
GATEWAY_ERRORS = (400, 401, 403, 413, 429, 503)

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "hk-... API key, or a Casdoor access token (JWT)",
        "description": "Authorization: Bearer hk-... (an API key) or a Casdoor JWT.",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same hk-... API key in its own header.",
    },
}

#: what every allowed answer carries when the credential has limits (the gateway's)
RATELIMIT_HEADERS: dict[str, Any] = {
    "RateLimit": {
        "description": 'The tightest window now: "<policy>";r=<remaining>;t=<seconds to reset>'
        " (draft-ietf-httpapi-ratelimit-headers).",
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": 'Every window the call counts against: "<policy>";q=<quota>;w=<seconds>.',
        "schema": {"type": "string"},
    },
}


@dataclass(frozen=True)
class Operation:
    """What the route table does not say about an endpoint."""

    operation_id: str
    summary: str
    #: the scope the route table requires; ``None``: public (no credential)
    permission: str | None
    response: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    #: query parameters: one per field of this model
    query: type[BaseModel] | None = None
    status: int = 200
    #: ``False``: the body may be left out (every field has a default)
    body_required: bool = True
    #: media type of the body and the answer when not JSON (e.g. ``application/x-ndjson``)
    body_media: str = "application/json"
    response_media: str = "application/json"
    #: the endpoint's own error statuses, beyond the gateway's
    errors: tuple[int, ...] = ()
    #: extra query parameters a model cannot express (repeated or JSON-encoded)
    extra_params: tuple[dict[str, Any], ...] = ()


E = TypeVar("E", bound=Callable[..., Any])


def operation(spec: Operation) -> Callable[[E], E]:
    """Mark an endpoint public and describe it; put it outermost (above ``requires``)."""

    def mark(endpoint: E) -> E:
        setattr(endpoint, _ATTR, spec)
        return endpoint

    return mark


def operation_of(endpoint: object) -> Operation | None:
    return getattr(endpoint, _ATTR, None)


class RouteLike(Protocol):
    """A Starlette ``Route``: only what the builder reads."""

    path: str
    methods: set[str] | None
    endpoint: Callable[..., Any]


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(model: type[BaseModel] | None, media: str) -> dict[str, Any]:
    if model is not None:
        schema = _ref(model)
    else:
        schema = {"type": "object"} if media == "application/json" else {"type": "string"}
    return {media: {"schema": schema}}


def _query_params(model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    defs.update(schema.get("$defs", {}))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _render(path: str, spec: Operation, defs: dict[str, Any]) -> dict[str, Any]:
    statuses = sorted({*spec.errors, *(GATEWAY_ERRORS if spec.permission else (400, 429))})
    ok: dict[str, Any] = {
        "description": spec.summary,
        "content": _content(spec.response, spec.response_media),
    }
    if spec.permission:
        ok["headers"] = {
            name: {"$ref": f"#/components/headers/{name}"} for name in RATELIMIT_HEADERS
        }
    op: dict[str, Any] = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "responses": {
            str(spec.status): ok,
            **{
                str(code): {"$ref": "#/components/responses/Error"}
                for code in statuses
                if code != spec.status
            },
        },
        # public routes need no credential; the others take either header
        "security": [{"bearer": []}, {"apiKey": []}] if spec.permission else [],
    }
    if spec.permission:
        op["x-permission"] = spec.permission
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]
    if spec.query is not None:
        params += _query_params(spec.query, defs)
    params += list(spec.extra_params)
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {
            "required": spec.body_required,
            "content": _content(spec.body, spec.body_media),
        }
    return op


def build_document(
    title: str, version: str, routes: Iterable[RouteLike], description: str = ""
) -> dict[str, Any]:
    """The document of every route whose endpoint is marked with :func:`operation`."""
    models: dict[str, type[BaseModel]] = {"ErrorBody": ErrorBody}
    marked: list[tuple[str, str, Operation]] = []
    for route in routes:
        spec = operation_of(route.endpoint)
        if spec is None:
            continue
        path = _PARAM.sub(r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            marked.append((path, method.lower(), spec))
        for model in (spec.response, spec.body):
            if model is not None:
                models[model.__name__] = model
    _, schema = models_json_schema(
        [(model, "validation") for model in models.values()],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for path, method, spec in marked:
        paths.setdefault(path, {})[method] = _render(path, spec, defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": SECURITY_SCHEMES,
            "headers": RATELIMIT_HEADERS,
            "responses": {
                "Error": {
                    "description": "The shared JSON error body (gateway and service alike).",
                    "content": {"application/json": {"schema": _ref(ErrorBody)}},
                }
            },
        },
    }
