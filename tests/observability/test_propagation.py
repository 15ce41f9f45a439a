"""The request id reaches the next part on the calls behind the gateway too (issue 12):
memory -> inference (the HTTP embedder) and inference -> its upstream."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from hanzo_contract.assertion import INFERENCE_AUDIENCE, AssertionSigner, ensure_keypair
from hanzo_contract.principal import Principal
from inference_gateway.app import create_app as create_inference_app
from inference_gateway.settings import InferenceSettings
from memory_service.app import create_app as create_memory_app
from memory_service.auth import AssertionAuthenticator
from memory_service.backends.sqlite import SqliteBackend
from memory_service.embeddings.http import HttpEmbedder
from tests.memory.assertions import memory_client
from tests.memory.conftest import DIM, Caller, settings_for


async def test_memory_passes_its_request_id_to_the_embeddings_call(
    tmp_path: Path, authenticator: AssertionAuthenticator, caller: Caller
) -> None:
    seen: list[httpx.Request] = []

    def inference(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        texts = json.loads(request.content)["input"]
        rows = [{"index": i, "embedding": [1.0] + [0.0] * (DIM - 1)} for i in range(len(texts))]
        return httpx.Response(200, json={"data": rows, "model": "m"})

    embedder = HttpEmbedder(
        "http://inference/v1", "m", DIM, transport=httpx.MockTransport(inference), attempts=1
    )
    backend = SqliteBackend(tmp_path / "m.db", DIM)
    await backend.open()
    app = create_memory_app(
        settings_for("sqlite", tmp_path),
        backend=backend,
        embedder=embedder,
        authenticator=authenticator,
    )
    try:
        async with memory_client(app) as client:
            stored = await client.post(
                "/v1/memory/store",
                headers={**caller.headers, "X-Request-Id": "mem-to-inference-1"},
                json={"content": "embedded elsewhere"},
            )
    finally:
        await backend.close()
    assert stored.status_code in (200, 201), stored.text
    assert seen and {r.headers.get("x-request-id") for r in seen} == {"mem-to-inference-1"}


async def test_inference_passes_the_request_id_to_its_upstream(tmp_path: Path) -> None:
    private, public = ensure_keypair(tmp_path / "keys")
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [], "usage": {"prompt_tokens": 1}})

    settings = InferenceSettings(
        upstreams=[{"name": "u", "base_url": "http://u/v1", "models": ["m"]}],
        assertion_public_key=public,
        plugin_url="http://127.0.0.1:9",
    )
    app = create_inference_app(settings, transport=httpx.MockTransport(upstream))
    invoker = Principal(
        organization="acme", subject="acme/x", scopes=frozenset({"inference:invoke"})
    )
    assertion = AssertionSigner(private.read_bytes(), 60).sign(
        invoker, audience=INFERENCE_AUDIENCE, method="POST", path="/v1/chat/completions"
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inference") as client:
        reply = await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": []},
            headers={"X-Hanzo-Identity": assertion, "X-Request-Id": "inf-to-upstream-1"},
        )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "inf-to-upstream-1"
    assert [r.headers.get("x-request-id") for r in seen] == ["inf-to-upstream-1"]
