"""Sensitive memories on every backend: sealed in storage (no plaintext in the engine's
files), opened on every read, found by vector search and filters, never by keyword search;
duplicates still found; refused when no sealing key is configured."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx

from memory_service.backends.base import MemoryBackend
from tests.memory.assertions import memory_client
from tests.memory.conftest import build_app
from tests.security.test_erasure_memory import _traces


def _key_file(directory: Path) -> Path:
    path = directory / "operator-keys.json"
    path.write_text(
        json.dumps(
            {"active": "k1", "keys": {"k1": base64.b64encode(secrets.token_bytes(32)).decode()}}
        )
    )
    return path


async def _search(client: httpx.AsyncClient, caller: Any, query: str, mode: str) -> list[dict]:
    response = await client.post(
        "/v1/memory/search",
        json={"query": query, "mode": mode, "top_k": 10},
        headers=caller.headers,
    )
    assert response.status_code == 200, response.text
    return [hit["memory"] for hit in response.json()["results"]]


async def test_sensitive_memories_are_sealed_at_rest(
    backend: MemoryBackend, authenticator: Any, make_caller: Any, tmp_path: Path
) -> None:
    app = build_app(backend, authenticator, tmp_path, sealing_key_file=_key_file(tmp_path))
    org = f"org-{uuid.uuid4().hex[:10]}"
    alice = make_caller(org, "alice")
    secret_word, open_word = f"ocelot{secrets.token_hex(4)}", f"lynx{secrets.token_hex(4)}"
    secret_text = f"{secret_word} the diagnosis is private"
    async with memory_client(app) as client:
        stored = await client.post(
            "/v1/memory/store",
            json={"memories": [
                {"content": secret_text, "sensitive": True, "tags": ["health"]},
                {"content": f"{open_word} the weather is fine"},
            ]},
            headers=alice.headers,
        )  # fmt: skip
        assert stored.status_code in (200, 201), stored.text
        sealed_id, open_id = stored.json()["ids"]
        # every read opens it
        one = await client.get(f"/v1/memory/retrieve?id={sealed_id}", headers=alice.headers)
        assert one.json()["memories"][0]["content"] == secret_text
        assert one.json()["memories"][0]["sensitive"] is True
        tagged = await client.get("/v1/memory/retrieve?tag=health", headers=alice.headers)
        assert [m["id"] for m in tagged.json()["memories"]] == [sealed_id]
        # the vector (embedded before sealing) finds it; the keyword index never saw it
        by_vector = await _search(client, alice, secret_text, "vector")
        assert by_vector[0]["id"] == sealed_id and by_vector[0]["content"] == secret_text
        assert sealed_id not in [
            m["id"] for m in await _search(client, alice, secret_word, "keyword")
        ]
        assert open_id in [m["id"] for m in await _search(client, alice, open_word, "keyword")]
        # same content again is still recognised as a duplicate (keyed hash)
        again = await client.post(
            "/v1/memory/store",
            json={"content": secret_text, "sensitive": True},
            headers=alice.headers,
        )
        assert again.json()["results"][0]["status"] == "duplicate"
        # nothing of it in the engine's files; the ordinary memory is there in clear
        assert await _traces(backend, org, secret_word) == 0
        assert await _traces(backend, org, open_word) > 0


async def test_sensitive_without_a_sealing_key_is_refused(
    backend: MemoryBackend, authenticator: Any, make_caller: Any, tmp_path: Path
) -> None:
    app = build_app(backend, authenticator, tmp_path)
    alice = make_caller()
    async with memory_client(app) as client:
        refused = await client.post(
            "/v1/memory/store",
            json={"content": "should never be stored in clear", "sensitive": True},
            headers=alice.headers,
        )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "sealing_unavailable"
