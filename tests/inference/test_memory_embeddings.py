"""``POST /v1/embeddings`` of the memory service on its own: the permission, the OpenAI
shapes and every refusal as the shared error body (the model here is the deterministic
embedder: the real model's vectors are checked through the whole stack)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from hanzo_contract.assertion import (
    INFERENCE_AUDIENCE,
    MEMORY_AUDIENCE,
    AssertionSigner,
    AssertionVerifier,
    ensure_keypair,
)
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from memory_service.app import create_app
from memory_service.auth import AssertionAuthenticator
from memory_service.embeddings.deterministic import DeterministicEmbedder
from memory_service.settings import MemorySettings

MODEL = "deterministic-hash-384"


@contextlib.asynccontextmanager
async def memory_app(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, AssertionSigner]]:
    private, public = ensure_keypair(tmp_path / "keys")
    settings = MemorySettings(
        backend="sqlite", data_dir=tmp_path / "data", embedder="deterministic", max_batch=4
    )
    app = create_app(
        settings,
        embedder=DeterministicEmbedder(384),
        authenticator=AssertionAuthenticator(
            AssertionVerifier(public.read_bytes(), audience=MEMORY_AUDIENCE)
        ),
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://memory") as client,
    ):
        yield client, AssertionSigner(private.read_bytes(), 60)


def _as(signer: AssertionSigner, *scopes: str) -> dict[str, str]:
    principal = Principal(organization="o", subject="o/u", scopes=frozenset(scopes))
    # the gateway addresses /v1/embeddings to the inference gateway and the memory service
    return {
        ASSERTION: signer.sign(
            principal,
            audience=(INFERENCE_AUDIENCE, MEMORY_AUDIENCE),
            method="POST",
            path="/v1/embeddings",
        )
    }


async def test_embeddings_route_shapes_and_refusals(tmp_path: Path) -> None:
    # the app's lifespan (with the MCP session manager's task group) is entered and left
    # in the test's own task: a fixture's teardown runs in another one
    async with memory_app(tmp_path) as (client, signer):
        await _shapes_and_refusals(client, signer)


async def _shapes_and_refusals(client: httpx.AsyncClient, signer: AssertionSigner) -> None:
    invoker = _as(signer, "inference:invoke")
    ok = await client.post(
        "/v1/embeddings", json={"model": MODEL, "input": ["a b", "c"]}, headers=invoker
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [(d["object"], d["index"], len(d["embedding"])) for d in body["data"]] == [
        ("embedding", 0, 384),
        ("embedding", 1, 384),
    ]
    # [CLS] a b [SEP] + [CLS] c [SEP]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}

    async def refused(payload: object, headers: dict[str, str] = invoker) -> tuple[int, str]:
        reply = await client.post("/v1/embeddings", json=payload, headers=headers)
        assert set(reply.json()) == {"error"}, reply.text
        return reply.status_code, reply.json()["error"]["code"]

    reader = _as(signer, "memory:read")
    assert await refused({"model": MODEL, "input": "x"}, reader) == (403, "forbidden")
    assert await refused({"model": MODEL, "input": "x"}, {}) == (401, "unauthenticated")
    assert await refused({"model": "gpt-x", "input": "x"}) == (404, "model_not_found")
    assert await refused({"model": MODEL, "input": []}) == (400, "invalid_input")
    assert await refused({"model": MODEL, "input": ["ok", ""]}) == (400, "invalid_input")
    assert await refused({"model": MODEL, "input": ["x"] * 5}) == (400, "too_many_inputs")
    assert await refused({"model": MODEL, "input": [[1, 2]]}) == (422, "validation_error")
    assert await refused({"model": MODEL, "input": "x", "dimensions": 8}) == (
        400,
        "invalid_dimensions",
    )
    assert await refused({"model": MODEL, "input": "x", "encoding_format": "hex"}) == (
        422,
        "validation_error",
    )
