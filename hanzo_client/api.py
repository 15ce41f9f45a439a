"""Sync and async clients over httpx; both send the calls from :mod:`hanzo_client.calls`.

Authentication is an API key (``Authorization: Bearer hk-...``) or a Casdoor access token;
both go to the gateway, which turns them into a principal.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from hanzo_client import calls
from hanzo_client.calls import Call


class HanzoAPIError(Exception):
    """A non-success reply, with the service's error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(f"HTTP {status} {code}: {message}")


def _result(call: Call, response: httpx.Response) -> Any:
    if response.status_code in call.expect:
        return response.json() if response.content else None
    try:
        error = response.json().get("error", {})
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        code, message = "error", response.text[:200]
    raise HanzoAPIError(response.status_code, code, message)


def _headers(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


class HanzoClient:
    """Blocking client: ``HanzoClient(gateway_url, key).search("query")``."""

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(credential), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call) -> Any:
        response = self._http.request(
            call.method, call.path, json=call.json, params=call.params or None
        )
        return _result(call, response)

    def store(self, content: str, **fields: Any) -> str:
        return self.send(calls.store([{"content": content, **fields}]))["ids"][0]

    def store_many(self, memories: list[dict[str, Any]]) -> list[str]:
        return self.send(calls.store(memories))["ids"]

    def get(self, memory_id: str) -> dict[str, Any]:
        return self.send(calls.get(memory_id))["memories"][0]

    def search(self, query: str, **options: Any) -> list[dict[str, Any]]:
        return self.send(calls.search(query, **options))["results"]

    def delete(self, memory_id: str) -> None:
        self.send(calls.delete(memory_id))

    def capabilities(self) -> dict[str, Any]:
        return self.send(calls.capabilities())

    def create_key(self, name: str, scopes: list[str], **extra: Any) -> dict[str, Any]:
        return self.send(calls.create_key(name, scopes, **extra))

    def list_keys(self) -> list[dict[str, Any]]:
        return self.send(calls.list_keys())["keys"]

    def revoke_key(self, key_id: str) -> None:
        self.send(calls.revoke_key(key_id))


class AsyncHanzoClient:
    """The same API for asyncio code."""

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(credential), timeout=timeout, transport=transport
        )

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
        response = await self._http.request(
            call.method, call.path, json=call.json, params=call.params or None
        )
        return _result(call, response)

    async def store(self, content: str, **fields: Any) -> str:
        return (await self.send(calls.store([{"content": content, **fields}])))["ids"][0]

    async def search(self, query: str, **options: Any) -> list[dict[str, Any]]:
        return (await self.send(calls.search(query, **options)))["results"]

    async def get(self, memory_id: str) -> dict[str, Any]:
        return (await self.send(calls.get(memory_id)))["memories"][0]

    async def delete(self, memory_id: str) -> None:
        await self.send(calls.delete(memory_id))

    async def create_key(self, name: str, scopes: list[str], **extra: Any) -> dict[str, Any]:
        return await self.send(calls.create_key(name, scopes, **extra))

    async def revoke_key(self, key_id: str) -> None:
        await self.send(calls.revoke_key(key_id))
