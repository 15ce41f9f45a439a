"""Every API call described once, as data; the sync and async clients only send them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any | None = None
    params: dict[str, Any] = field(default_factory=dict)
    expect: tuple[int, ...] = (200,)


def store(memories: list[dict[str, Any]]) -> Call:
    return Call("POST", "/v1/memory/store", json={"memories": memories}, expect=(200, 201))


def get(memory_id: str) -> Call:
    return Call("GET", "/v1/memory/retrieve", params={"id": memory_id})


def listing(**filters: Any) -> Call:
    params = {k: v for k, v in filters.items() if v is not None}
    return Call("GET", "/v1/memory/retrieve", params=params)


def search(query: str, *, mode: str = "hybrid", top_k: int = 10, **extra: Any) -> Call:
    body = {"query": query, "mode": mode, "top_k": top_k, **extra}
    return Call("POST", "/v1/memory/search", json=body)


def delete(memory_id: str) -> Call:
    return Call("DELETE", f"/v1/memory/{memory_id}", expect=(200, 204))


def capabilities() -> Call:
    return Call("GET", "/v1/memory/capabilities")


def create_key(name: str, scopes: list[str], **extra: Any) -> Call:
    return Call("POST", "/v1/keys", json={"name": name, "scopes": scopes, **extra}, expect=(201,))


def list_keys() -> Call:
    return Call("GET", "/v1/keys")


def show_key(key_id: str) -> Call:
    return Call("GET", f"/v1/keys/{key_id}")


def rotate_key(key_id: str, grace_seconds: float | None = None) -> Call:
    body = {} if grace_seconds is None else {"grace_seconds": grace_seconds}
    return Call("POST", f"/v1/keys/{key_id}/rotate", json=body)


def revoke_key(key_id: str) -> Call:
    return Call("DELETE", f"/v1/keys/{key_id}", expect=(200, 204))
