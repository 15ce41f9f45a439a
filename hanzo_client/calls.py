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
    #: a body sent as is (NDJSON) instead of ``json``
    content: bytes | None = None
    #: the reply is returned as bytes, not parsed as JSON
    raw: bool = False


def store(memories: list[dict[str, Any]]) -> Call:
    return Call("POST", "/v1/memory/store", json={"memories": memories}, expect=(200, 201))


def get(memory_id: str) -> Call:
    return Call("GET", "/v1/memory/retrieve", params={"id": memory_id})


def listing(
    *,
    limit: int = 50,
    cursor: str | None = None,
    namespace: str | None = None,
    tag: list[str] | None = None,
    scope: str | None = None,
) -> Call:
    """One page of ``GET /v1/memory/retrieve``; ``tag`` repeats (the API's own name)."""
    params: dict[str, Any] = {"limit": limit, "cursor": cursor, "namespace": namespace}
    params |= {"tag": tag or None, "scope": scope}
    return Call(
        "GET", "/v1/memory/retrieve", params={k: v for k, v in params.items() if v is not None}
    )


def update(memory_id: str, **changes: Any) -> Call:
    """``PATCH``: only the fields given change (content re-embeds)."""
    body = {k: v for k, v in changes.items() if v is not None}
    return Call("PATCH", f"/v1/memory/{memory_id}", json=body)


def export() -> Call:
    """NDJSON, one memory a line, as ``import_`` takes it back."""
    return Call("GET", "/v1/memory/export", raw=True)


def import_(ndjson: bytes) -> Call:
    return Call("POST", "/v1/memory/import", content=ndjson)


def usage(day: str | None = None) -> Call:
    return Call("GET", "/v1/usage", params={"day": day} if day else {})


def search(
    query: str,
    *,
    mode: str = "hybrid",
    top_k: int = 10,
    namespace: str | None = None,
    tag: list[str] | None = None,
    scope: str | None = None,
    **extra: Any,
) -> Call:
    """``tag`` as in the README and the listing; sent as the body's ``filters.tags``."""
    filters = {"namespace": namespace, "tags": tag or None, "scope": scope}
    filters = {k: v for k, v in filters.items() if v is not None} | extra.pop("filters", {})
    body = {"query": query, "mode": mode, "top_k": top_k, **extra}
    if filters:
        body["filters"] = filters
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
