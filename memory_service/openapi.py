"""The OpenAPI document, built from the same pydantic models the routes validate with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hanzo_contract.errors import ErrorBody
from hanzo_contract.headers import ASSERTION
from memory_service import models as m
from memory_service.auth import DELETE, READ, WRITE
from memory_service.erasure import ERASE_PATH, ErasureReceipt, ErasureRequest
from memory_service.openai_embeddings import INVOKE, EmbeddingsRequest

_MODELS: list[type[BaseModel]] = [
    m.MemoryIn, m.StoreRequest, m.StoreResponse, m.MemoryOut, m.ListResponse, m.SearchRequest,
    m.SearchResponse, m.UpdateRequest, m.DeleteResponse, m.ImportLine, m.ImportResponse,
    m.Capabilities, ErasureRequest, ErasureReceipt, EmbeddingsRequest, ErrorBody,
]  # fmt: skip


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "error", "content": _json(ErrorBody)} for c in codes}


def _op(summary: str, permission: str | None, ok: type[BaseModel] | None, *codes: int,
        body: type[BaseModel] | None = None, params: list[dict[str, Any]] | None = None,
        ok_content: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"assertion": []}],
        "responses": {
            "200": {"description": "ok", "content": ok_content or (_json(ok) if ok else {})},
            # 400/413/429/503 may come from the gateway in front (bad path, body too large,
            # rate limit or quota, a dependency down) on any route
            **_errors(*sorted({400, 401, 403, 413, 429, 503, *codes})),
        },
    }
    if permission:
        op["x-permission"] = permission
    if body:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if params:
        op["parameters"] = params
    return op


def _q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(model, "validation") for model in _MODELS], ref_template="#/components/schemas/{model}"
    )
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    list_params = [
        _q("id", {"type": "string"}, "fetch one memory by id"),
        _q("namespace", {"type": "string"}),
        _q("scope", {"type": "string", "enum": ["user", "org"]}),
        _q("tag", {"type": "array", "items": {"type": "string"}}, "repeat; all must match"),
        _q("metadata", {"type": "string"}, 'JSON object of equality filters, e.g. {"k":"v"}'),
        _q("created_after", {"type": "string", "format": "date-time"}),
        _q("created_before", {"type": "string", "format": "date-time"}),
        _q("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        _q("cursor", {"type": "string"}, "next_cursor of the previous page"),
    ]
    ndjson = {"application/x-ndjson": {"schema": _ref(m.ImportLine)}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hanzo memory service", "version": "1.0.0"},
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"assertion": {"type": "apiKey", "in": "header", "name": ASSERTION}},
        },
        "paths": {
            "/v1/memory/store": {"post": _op(
                "Store one or a batch of memories (upsert by id, dedup by content)",
                WRITE, m.StoreResponse, 400, 409, 413, 422, body=m.StoreRequest)},
            "/v1/memory/retrieve": {"get": _op(
                "Fetch by id, or list with filters and a cursor", READ,
                m.ListResponse, 400, 404, 422, params=list_params)},
            "/v1/memory/search": {"post": _op(
                "Vector, keyword or hybrid search", READ, m.SearchResponse, 400, 413,
                422, body=m.SearchRequest)},
            "/v1/memory/{id}": {
                "patch": {**_op("Update content, metadata, tags, importance or expiry",
                                WRITE, m.MemoryOut, 400, 404, 413, 422,
                                body=m.UpdateRequest), "parameters": [id_param]},
                "delete": {**_op("Delete a memory from storage and every index",
                                 DELETE, m.DeleteResponse, 404),
                           "parameters": [id_param]},
            },
            "/v1/memory/capabilities": {"get": _op(
                "Backend, search modes, embedding model, limits and features", None,
                m.Capabilities)},
            "/v1/memory/export": {"get": _op(
                "Export the caller's visible memories as JSON lines", READ, None,
                ok_content=ndjson)},
            ERASE_PATH: {"post": _op(
                "Erase every memory of a user (yourself; another user needs an org admin), "
                "or of the whole organization (no user; org admin): storage, indexes, caches",
                DELETE, ErasureReceipt, 403, 422, body=ErasureRequest)},
            "/v1/memory/import": {"post": {**_op(
                "Import JSON lines (as exported)", WRITE, m.ImportResponse, 400, 413,
                422), "requestBody": {"required": True, "content": ndjson}}},
            "/v1/embeddings": {"post": _op(
                "OpenAI-compatible embeddings from this service's own model", INVOKE, None,
                400, 404, 413, 422, body=EmbeddingsRequest,
                ok_content={"application/json": {"schema": {"type": "object"}}})},
        },
    }  # fmt: skip
