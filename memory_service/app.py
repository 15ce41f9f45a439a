"""The Starlette app: routes translate HTTP to :class:`MemoryService` calls and back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hanzo_contract.principal import Principal
from memory_service import auth
from memory_service.auth import AssertionAuthenticator, Authenticator
from memory_service.backends import make_backend
from memory_service.backends.base import MemoryBackend
from memory_service.body import parse_json, read_limited, read_model, validate, validation_details
from memory_service.clock import now_us, to_us
from memory_service.cursor import decode_cursor, encode_cursor
from memory_service.embeddings import Embedder, make_embedder
from memory_service.errors import ApiError, api_error_handler, error_response
from memory_service.models import (
    Capabilities,
    DeleteResponse,
    Filters,
    ImportLine,
    ImportResponse,
    ListResponse,
    MemoryIn,
    SearchRequest,
    SearchResponse,
    StoreRequest,
    StoreResponse,
    UpdateRequest,
)
from memory_service.openapi import openapi_document
from memory_service.service import MemoryService, to_out
from memory_service.settings import MemorySettings

log = logging.getLogger("memory_service")
MAINTENANCE_SECONDS = 60.0


def _json(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


def _svc(request: Request) -> MemoryService:
    return request.app.state.service


def _caller(request: Request, permission: str | None = None) -> Principal:
    principal = request.app.state.authenticator.authenticate(request)
    if permission:
        auth.require(principal, permission)
    return principal


async def store(request: Request) -> Response:
    p = _caller(request, auth.WRITE)
    data = parse_json(await read_limited(request, _svc(request).settings.max_body_bytes))
    if isinstance(data, dict) and "memories" not in data:
        items = [validate(MemoryIn, data)]
    else:
        items = validate(StoreRequest, data).memories
    results = await _svc(request).store(p, items)
    return _json(StoreResponse(ids=[r.id for r in results], results=results))


class _ListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=128)
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = None
    filters: Filters


async def retrieve(request: Request) -> Response:
    p = _caller(request, auth.READ)
    qp = request.query_params
    raw: dict[str, Any] = {k: v for k, v in qp.items() if k not in ("tag", "metadata")}
    filters: dict[str, Any] = {
        k: raw.pop(k) for k in ("namespace", "scope", "created_after", "created_before") if k in raw
    }
    if tags := qp.getlist("tag"):
        filters["tags"] = tags
    if "metadata" in qp:
        try:
            filters["metadata"] = json.loads(qp["metadata"])
        except json.JSONDecodeError:
            raise ApiError(400, "malformed_json", "metadata must be a JSON object") from None
    try:
        params = _ListParams.model_validate({**raw, "filters": filters})
    except ValidationError as exc:
        raise ApiError(
            422, "validation_error", "query parameters are invalid", validation_details(exc)
        ) from None
    svc = _svc(request)
    if params.id is not None:
        rec = await svc.get(p, params.id)
        return _json(ListResponse(memories=[to_out(rec)], next_cursor=None))
    after = decode_cursor(params.cursor) if params.cursor else None
    rows, nxt = await svc.list(p, params.filters, after, params.limit)
    cursor = encode_cursor(*nxt) if nxt else None
    return _json(ListResponse(memories=[to_out(r) for r in rows], next_cursor=cursor))


async def search(request: Request) -> Response:
    p = _caller(request, auth.READ)
    svc = _svc(request)
    req = await read_model(request, SearchRequest, svc.settings.max_body_bytes)
    return _json(SearchResponse(mode=req.mode, results=await svc.search(p, req)))


async def update(request: Request) -> Response:
    p = _caller(request, auth.WRITE)
    svc = _svc(request)
    req = await read_model(request, UpdateRequest, svc.settings.max_body_bytes)
    rec = await svc.update(p, request.path_params["id"], req)
    return _json(to_out(rec))


async def delete(request: Request) -> Response:
    p = _caller(request, auth.DELETE)
    memory_id = request.path_params["id"]
    await _svc(request).delete(p, memory_id)
    return _json(DeleteResponse(id=memory_id, deleted=True))


async def capabilities(request: Request) -> Response:
    _caller(request)
    svc = _svc(request)
    s = svc.settings
    caps = Capabilities(
        backend=svc.backend.name,
        search_modes=["vector", "keyword", "hybrid"],
        embedding={"model": svc.embedder.model, "dimensions": svc.embedder.dim},
        limits={
            "max_body_bytes": s.max_body_bytes, "max_import_bytes": s.max_import_bytes,
            "max_batch": s.max_batch, "max_content_chars": s.max_content_chars,
            "max_top_k": s.max_top_k, "tenant_max_memories": s.tenant_max_memories,
            "tenant_max_bytes": s.tenant_max_bytes,
        },
        features=["batch_store", "dedup", "upsert", "ttl", "update", "filters", "cursor_pagination",
                  "client_embeddings", "export_jsonl", "import_jsonl", "org_shared_memories"],
    )  # fmt: skip
    return _json(caps)


async def export(request: Request) -> Response:
    p = _caller(request, auth.READ)
    svc = _svc(request)

    async def lines() -> AsyncIterator[bytes]:
        async for line in svc.export(p):
            yield line.model_dump_json(exclude_none=True).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def import_(request: Request) -> Response:
    p = _caller(request, auth.WRITE)
    svc = _svc(request)
    raw = await read_limited(request, svc.settings.max_import_bytes)
    items: list[ImportLine] = []
    expired = 0
    now = now_us()
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "malformed_json", f"line {n} is not valid JSON") from None
        item = validate(ImportLine, data, prefix=("line", n))
        if item.expires_at is not None and to_us(item.expires_at) <= now:
            expired += 1
            continue
        items.append(item)
    counts = {"created": 0, "updated": 0, "duplicate": 0}
    for start in range(0, len(items), svc.settings.max_batch):
        for r in await svc.store(p, items[start : start + svc.settings.max_batch]):  # type: ignore[arg-type]
            counts[r.status] += 1
    return _json(ImportResponse(**counts, expired=expired))


async def openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document())


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _server_error(_request: Request, exc: Exception) -> Response:
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def create_app(
    settings: MemorySettings | None = None,
    *,
    backend: MemoryBackend | None = None,
    embedder: Embedder | None = None,
    authenticator: Authenticator | None = None,
) -> Starlette:
    """The app for ``settings``; parts can be passed in (tests share one backend)."""
    settings = settings or MemorySettings()
    backend = backend or make_backend(settings)
    embedder = embedder or make_embedder(settings)
    authenticator = authenticator or AssertionAuthenticator.from_public_key_file(
        settings.assertion_public_key
    )
    if embedder.dim != settings.embedding_dim:
        raise RuntimeError(
            f"embedder {embedder.model} makes {embedder.dim}-d vectors but "
            f"embedding_dim is {settings.embedding_dim}"
        )
    service = MemoryService(backend, embedder, settings)

    async def maintain_forever() -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_SECONDS)
            try:
                await backend.maintain()
            except Exception as exc:  # keep serving; the next round retries
                log.warning("backend maintenance failed: %s", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await backend.open()
        task = asyncio.create_task(maintain_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await backend.close()

    routes = [
        Route("/v1/memory/store", store, methods=["POST"]),
        Route("/v1/memory/retrieve", retrieve, methods=["GET"]),
        Route("/v1/memory/search", search, methods=["POST"]),
        Route("/v1/memory/capabilities", capabilities, methods=["GET"]),
        Route("/v1/memory/export", export, methods=["GET"]),
        Route("/v1/memory/import", import_, methods=["POST"]),
        Route("/v1/memory/{id:str}", update, methods=["PATCH"]),
        Route("/v1/memory/{id:str}", delete, methods=["DELETE"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.service = service
    app.state.authenticator = authenticator
    return app
