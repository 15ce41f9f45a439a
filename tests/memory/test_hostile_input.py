"""Hostile bodies get a precise 4xx, and one tenant's bad row never breaks a reader.

Each case here answered 500 (RecursionError, integer conversion) or stored metadata that
broke every later read of the organization before the bounds existed. They run on every
backend (SQLite, LanceDB, Redis) because reads go through each backend's row decoding.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from memory_service.backends.base import NEVER, MemoryBackend, Record
from memory_service.bounds import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEYS,
    UNREADABLE_KEY,
)
from memory_service.clock import now_us
from memory_service.embeddings.deterministic import DeterministicEmbedder
from memory_service.openapi import openapi_document
from tests.memory.conftest import DIM, Caller
from tests.memory.test_bad_input import err

S = "/v1/memory"


def nested(depth: int, leaf: object = 1) -> object:
    """``{"a": {"a": ... leaf}}`` ``depth`` objects deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_text(depth: int) -> str:
    """JSON text nested ``depth`` deep (too deep for ``json.dumps`` to build)."""
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture
def me(make_caller) -> Caller:
    return make_caller()


async def post(client: httpx.AsyncClient, path: str, who: Caller, body: str) -> httpx.Response:
    headers = {**who.headers, "content-type": "application/json"}
    return await client.post(f"{S}/{path}", headers=headers, content=body.encode())


async def test_body_nested_1000_deep_is_400(client, me):
    store = '{"content": "x", "metadata": ' + deep_text(1000) + "}"
    err(await post(client, "store", me, store), 400, "json_too_deep")
    batch = '{"memories": [{"content": "x", "metadata": ' + deep_text(1000) + "}]}"
    err(await post(client, "store", me, batch), 400, "json_too_deep")
    search = '{"query": "x", "filters": {"metadata": ' + deep_text(1000) + "}}"
    err(await post(client, "search", me, search), 400, "json_too_deep")
    err(await post(client, "search", me, "[" * 5000 + "]" * 5000), 400, "json_too_deep")
    r = await client.get(f"{S}/retrieve?metadata={quote(deep_text(1000))}", headers=me.headers)
    err(r, 400, "json_too_deep")
    imp = await client.post(
        f"{S}/import", headers=me.headers, content=('{"content":"x","metadata":'
                                                    + deep_text(1000) + "}\n").encode()
    )  # fmt: skip
    err(imp, 400, "json_too_deep")


async def test_huge_numbers_are_400(client, me):
    digits = "9" * 4301
    for body in (
        '{"query": "x", "top_k": ' + digits + "}",
        '{"query": "x", "top_k": -' + digits + "}",
    ):
        e = err(await post(client, "search", me, body), 400, "number_too_large")
        assert digits not in e["message"]
    err(await post(client, "store", me, '{"content": "x", "importance": ' + digits + "}"), 400,
        "number_too_large")  # fmt: skip
    err(await post(client, "store", me, '{"content": "x", "importance": 1e999}'), 400,
        "number_too_large")  # fmt: skip
    err(await post(client, "store", me, '{"content": "x", "metadata": {"n": NaN}}'), 400,
        "malformed_json")  # fmt: skip
    # a lone surrogate cannot be stored as UTF-8: refused at the door, not a 500 later
    err(await post(client, "store", me, '{"content": "x\\ud800"}'), 400, "malformed_json")
    # twenty digits is still a number (an ordinary 422 for being out of range)
    err(await post(client, "search", me, '{"query": "x", "top_k": ' + "9" * 20 + "}"), 422,
        "top_k_too_large")  # fmt: skip


async def test_metadata_bounds_refused_with_422(client, me):
    too_deep = {"content": "x", "metadata": {"k": nested(MAX_METADATA_DEPTH + 1)}}
    e = err(await client.post(f"{S}/store", headers=me.headers, json=too_deep), 422,
            "validation_error")  # fmt: skip
    assert e["details"][0]["loc"][0] == "metadata"
    assert "deeper" in e["details"][0]["msg"]
    five_hundred = '{"content": "x", "metadata": {"k": ' + json.dumps(nested(30)) + "}}"
    err(await post(client, "store", me, five_hundred), 422, "validation_error")
    many = {"content": "x", "metadata": {f"k{i}": {f"j{j}": j for j in range(8)}
                                         for i in range(MAX_METADATA_KEYS // 8 + 1)}}  # fmt: skip
    many["metadata"] = dict(list(many["metadata"].items())[:60])
    many["metadata"]["x"] = {f"z{j}": j for j in range(MAX_METADATA_KEYS)}
    err(await client.post(f"{S}/store", headers=me.headers, json=many), 422, "validation_error")
    big = {"content": "x", "metadata": {"blob": "y" * MAX_METADATA_BYTES}}
    err(await client.post(f"{S}/store", headers=me.headers, json=big), 422, "validation_error")
    ok = {"content": "within bounds", "metadata": {"k": nested(MAX_METADATA_DEPTH)}}
    r = await client.post(f"{S}/store", headers=me.headers, json=ok)
    assert r.status_code == 200, r.text
    mid = r.json()["ids"][0]
    deeper = {"metadata": {"k": nested(MAX_METADATA_DEPTH + 1)}}
    patch = await client.patch(f"{S}/{mid}", headers=me.headers, json=deeper)
    err(patch, 422, "validation_error")


async def test_capabilities_state_the_bounds(client, me):
    limits = (await client.get(f"{S}/capabilities", headers=me.headers)).json()["limits"]
    assert limits["max_metadata_depth"] == MAX_METADATA_DEPTH
    assert limits["max_metadata_keys"] == MAX_METADATA_KEYS
    assert limits["max_metadata_bytes"] == MAX_METADATA_BYTES
    assert limits["max_body_depth"] == 32


def test_openapi_states_the_metadata_bounds():
    schema = openapi_document()["components"]["schemas"]["MemoryIn"]["properties"]["metadata"]
    assert schema["maxProperties"] == 64
    assert schema["x-max-depth"] == MAX_METADATA_DEPTH
    assert schema["x-max-total-keys"] == MAX_METADATA_KEYS
    assert schema["x-max-bytes"] == MAX_METADATA_BYTES


async def test_rows_stored_before_the_bounds_stay_readable(
    client, backend: MemoryBackend, me: Caller
):
    """A row with metadata 500 deep, written straight into the backend (as the API stored
    it before the bound), next to a good row: every read answers 200, the good row intact
    and the bad one readable with its metadata withheld and marked."""
    embedder = DeterministicEmbedder(DIM)
    vecs = await embedder.embed(["poisoned apple memory", "healthy apple memory"])
    now = now_us()

    def record(mid: str, content: str, metadata: dict, vec: np.ndarray) -> Record:
        return Record(
            tenant=me.org, id=mid, user=me.principal.user, namespace="default",
            content=content, content_hash=mid, metadata=metadata, tags=["t"],
            importance=0.5, created_at=now, updated_at=now, expires_at=NEVER, vector=vec,
        )  # fmt: skip

    await backend.upsert(
        [
            record("poison", "poisoned apple memory", {"deep": nested(500)}, vecs[0]),
            record("good", "healthy apple memory", {"k": "v"}, vecs[1]),
        ]
    )

    def check(memories: list[dict]) -> None:
        by_id = {m["id"]: m for m in memories}
        assert set(by_id) == {"poison", "good"}
        assert by_id["good"]["metadata"] == {"k": "v"}
        assert set(by_id["poison"]["metadata"]) == {UNREADABLE_KEY}
        assert "deeper" in by_id["poison"]["metadata"][UNREADABLE_KEY]
        assert by_id["poison"]["content"] == "poisoned apple memory"

    r = await client.get(f"{S}/retrieve", headers=me.headers)
    assert r.status_code == 200, r.text
    check(r.json()["memories"])
    one = await client.get(f"{S}/retrieve", params={"id": "poison"}, headers=me.headers)
    assert one.status_code == 200, one.text
    for mode in ("vector", "keyword", "hybrid"):
        body = {"query": "apple memory", "mode": mode, "top_k": 10}
        s = await client.post(f"{S}/search", headers=me.headers, json=body)
        assert s.status_code == 200, (mode, s.text)
        check([hit["memory"] for hit in s.json()["results"]])
    ex = await client.get(f"{S}/export", headers=me.headers)
    assert ex.status_code == 200
    check([json.loads(line) for line in ex.text.splitlines()])
    # and the row can be repaired by its owner
    fix = await client.patch(f"{S}/poison", headers=me.headers, json={"metadata": {"ok": 1}})
    assert fix.status_code == 200 and fix.json()["metadata"] == {"ok": 1}


async def test_error_bodies_name_the_request_id(client, me):
    """The gateway's ``X-Request-Id`` is in every error body the service makes; without
    one, or with one that is not a plain token, the service makes its own (never echoes)."""
    r = await post(client, "store", me, "[" * 100 + "]" * 100)
    e = err(r, 400, "json_too_deep")
    assert e["request_id"] == r.headers["x-request-id"] and len(e["request_id"]) == 32
    r = await client.post(f"{S}/store", headers={**me.headers, "X-Request-Id": "req-9"},
                          content=b"{")  # fmt: skip
    assert err(r, 400, "malformed_json")["request_id"] == "req-9"
    r = await client.get(f"{S}/retrieve", headers={"X-Request-Id": "req-10"})
    assert err(r, 401, "unauthenticated")["request_id"] == "req-10"
    r = await client.get("/v1/nowhere", headers={"X-Request-Id": 'a"b'})
    made = err(r, 404, "not_found")["request_id"]
    assert made == r.headers["x-request-id"] and 'a"b' not in r.text
