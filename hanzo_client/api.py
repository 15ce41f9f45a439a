"""Sync and async clients over httpx; both send the calls from :mod:`hanzo_client.calls`
and have the same methods (a test holds them to it).

Authentication is an API key (``Authorization: Bearer hk-...``) or a Casdoor access token;
both go to the gateway, which turns them into a principal. A 429 is retried after its
``Retry-After`` a bounded number of times (and never waits longer than ``max_retry_wait``),
so a client paced by the gateway slows down instead of failing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import BaseModel

from hanzo_client import calls
from hanzo_client.calls import Call
from hanzo_client.errors import HanzoAPIError, HanzoConnectionError

__all__ = ["AsyncHanzoClient", "HanzoAPIError", "HanzoClient", "Page"]

#: 429 retries per call, and the longest single wait we accept from ``Retry-After``
MAX_RETRIES = 3
MAX_RETRY_WAIT = 30.0


class Page(BaseModel):
    """One page of a listing; pass ``next_cursor`` back for the next (``None``: the end)."""

    memories: list[dict[str, Any]]
    next_cursor: str | None = None


def _error(response: httpx.Response) -> HanzoAPIError:
    header_id = response.headers.get("x-request-id")
    try:
        error = response.json()["error"]
        return HanzoAPIError(
            response.status_code,
            str(error.get("code", "error")),
            str(error.get("message", "")),
            error.get("details"),
            error.get("request_id") or header_id,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return HanzoAPIError(
            response.status_code, "error", response.text[:200], request_id=header_id
        )


def _result(call: Call, response: httpx.Response) -> Any:
    if response.status_code not in call.expect:
        raise _error(response)
    if call.raw:
        return response.content
    return response.json() if response.content else None


def retry_after(response: httpx.Response, attempt: int, max_wait: float) -> float | None:
    """Seconds to wait before retrying, or ``None`` if this reply must not be retried."""
    if response.status_code != 429 or attempt >= MAX_RETRIES:
        return None
    try:
        wait = float(response.headers.get("retry-after", "1"))
    except ValueError:
        wait = 1.0
    if wait > max_wait:  # longer than the caller will wait: fail now with the 429
        return None
    return max(wait, 0.0)


def _request(call: Call) -> dict[str, Any]:
    return {
        "method": call.method,
        "url": call.path,
        "json": call.json,
        "content": call.content,
        "params": call.params or None,
        "headers": {"Content-Type": "application/x-ndjson"} if call.content is not None else None,
    }


def _headers(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def ndjson(memories: Iterable[dict[str, Any]]) -> bytes:
    """Export lines (dicts) as the body ``import_`` sends."""
    return b"".join(json.dumps(m).encode() + b"\n" for m in memories)


def parse_ndjson(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


class HanzoClient:
    """Blocking client: ``HanzoClient(gateway_url, key).search("query")``."""

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        max_retry_wait: float = MAX_RETRY_WAIT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(credential), timeout=timeout, transport=transport
        )
        self._max_wait, self._sleep = max_retry_wait, sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(**_request(call))
            except httpx.TransportError as exc:
                raise HanzoConnectionError(self.base_url, exc) from exc
            wait = retry_after(response, attempt, self._max_wait)
            if wait is None:
                return _result(call, response)
            self._sleep(wait)
            attempt += 1

    # -- memories ----------------------------------------------------------------------
    def store(self, content: str, **fields: Any) -> str:
        return self.send(calls.store([{"content": content, **fields}]))["ids"][0]

    def store_many(self, memories: list[dict[str, Any]]) -> list[str]:
        return self.send(calls.store(memories))["ids"]

    def get(self, memory_id: str) -> dict[str, Any]:
        return self.send(calls.get(memory_id))["memories"][0]

    def list(self, **options: Any) -> Page:
        """One page: ``limit``, ``cursor``, ``namespace``, ``tag`` (list), ``scope``."""
        return Page.model_validate(self.send(calls.listing(**options)))

    def iter_memories(self, **options: Any) -> Iterator[dict[str, Any]]:
        """Every memory, page after page."""
        cursor = options.pop("cursor", None)
        while True:
            page = self.list(cursor=cursor, **options)
            yield from page.memories
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def search(self, query: str, **options: Any) -> list[dict[str, Any]]:
        return self.send(calls.search(query, **options))["results"]

    def update(self, memory_id: str, **changes: Any) -> dict[str, Any]:
        return self.send(calls.update(memory_id, **changes))

    def delete(self, memory_id: str) -> None:
        self.send(calls.delete(memory_id))

    def export(self) -> list[dict[str, Any]]:
        return parse_ndjson(self.send(calls.export()))

    def import_(self, memories: Iterable[dict[str, Any]] | bytes) -> dict[str, int]:
        body = memories if isinstance(memories, bytes) else ndjson(memories)
        return self.send(calls.import_(body))

    def capabilities(self) -> dict[str, Any]:
        return self.send(calls.capabilities())

    # -- keys and usage ----------------------------------------------------------------
    def create_key(self, name: str, scopes: list[str], **extra: Any) -> dict[str, Any]:
        return self.send(calls.create_key(name, scopes, **extra))

    def list_keys(self) -> list[dict[str, Any]]:
        return self.send(calls.list_keys())["keys"]

    def show_key(self, key_id: str) -> dict[str, Any]:
        return self.send(calls.show_key(key_id))

    def rotate_key(self, key_id: str, grace_seconds: float | None = None) -> dict[str, Any]:
        return self.send(calls.rotate_key(key_id, grace_seconds))

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """The revoked key's record."""
        return self.send(calls.revoke_key(key_id))

    def usage(self, day: str | None = None) -> dict[str, Any]:
        return self.send(calls.usage(day))


class AsyncHanzoClient:
    """The same API for asyncio code."""

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retry_wait: float = MAX_RETRY_WAIT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(credential), timeout=timeout, transport=transport
        )
        self._max_wait, self._sleep = max_retry_wait, sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._http.request(**_request(call))
            except httpx.TransportError as exc:
                raise HanzoConnectionError(self.base_url, exc) from exc
            wait = retry_after(response, attempt, self._max_wait)
            if wait is None:
                return _result(call, response)
            await self._sleep(wait)
            attempt += 1

    # -- memories ----------------------------------------------------------------------
    async def store(self, content: str, **fields: Any) -> str:
        return (await self.send(calls.store([{"content": content, **fields}])))["ids"][0]

    async def store_many(self, memories: list[dict[str, Any]]) -> list[str]:
        return (await self.send(calls.store(memories)))["ids"]

    async def get(self, memory_id: str) -> dict[str, Any]:
        return (await self.send(calls.get(memory_id)))["memories"][0]

    async def list(self, **options: Any) -> Page:
        return Page.model_validate(await self.send(calls.listing(**options)))

    async def iter_memories(self, **options: Any) -> AsyncIterator[dict[str, Any]]:
        cursor = options.pop("cursor", None)
        while True:
            page = await self.list(cursor=cursor, **options)
            for memory in page.memories:
                yield memory
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def search(self, query: str, **options: Any) -> list[dict[str, Any]]:
        return (await self.send(calls.search(query, **options)))["results"]

    async def update(self, memory_id: str, **changes: Any) -> dict[str, Any]:
        return await self.send(calls.update(memory_id, **changes))

    async def delete(self, memory_id: str) -> None:
        await self.send(calls.delete(memory_id))

    async def export(self) -> list[dict[str, Any]]:
        return parse_ndjson(await self.send(calls.export()))

    async def import_(self, memories: Iterable[dict[str, Any]] | bytes) -> dict[str, int]:
        body = memories if isinstance(memories, bytes) else ndjson(memories)
        return await self.send(calls.import_(body))

    async def capabilities(self) -> dict[str, Any]:
        return await self.send(calls.capabilities())

    # -- keys and usage ----------------------------------------------------------------
    async def create_key(self, name: str, scopes: list[str], **extra: Any) -> dict[str, Any]:
        return await self.send(calls.create_key(name, scopes, **extra))

    async def list_keys(self) -> list[dict[str, Any]]:
        return (await self.send(calls.list_keys()))["keys"]

    async def show_key(self, key_id: str) -> dict[str, Any]:
        return await self.send(calls.show_key(key_id))

    async def rotate_key(self, key_id: str, grace_seconds: float | None = None) -> dict[str, Any]:
        return await self.send(calls.rotate_key(key_id, grace_seconds))

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        """The revoked key's record."""
        return await self.send(calls.revoke_key(key_id))

    async def usage(self, day: str | None = None) -> dict[str, Any]:
        return await self.send(calls.usage(day))
