"""Embedders: the offline MiniLM model, the OpenAI-compatible HTTP client, the test hasher."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from memory_service.app import create_app
from memory_service.backends.sqlite import SqliteBackend
from memory_service.embeddings.base import EmbeddingError
from memory_service.embeddings.deterministic import DeterministicEmbedder
from memory_service.embeddings.http import HttpEmbedder
from memory_service.embeddings.local import (
    MODEL_SHA256,
    TOKENIZER,
    TOKENIZER_SHA256,
    LocalMiniLM,
    model_files,
    verified,
)
from memory_service.settings import MemorySettings
from tests.memory.assertions import memory_client


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLM:
    return LocalMiniLM()


async def test_local_minilm_is_a_real_sentence_model(minilm: LocalMiniLM):
    rows = await minilm.embed(
        ["the cat sat on the mat", "a kitten is sitting on a rug", "the stock market crashed"]
    )
    assert rows.shape == (3, 384) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    sims = rows @ rows.T
    assert sims[0, 1] > 0.5 > sims[0, 2]  # paraphrase close, unrelated far
    again = await minilm.embed(["the cat sat on the mat"])
    assert np.allclose(again[0], rows[0], atol=1e-5)


def test_the_shipped_model_files_match_their_checksums(tmp_path):
    model, tokenizer = model_files()
    assert tokenizer == TOKENIZER and tokenizer.is_relative_to(
        Path(__file__).parents[2] / "memory_service"
    )  # shipped in the package, not borrowed from another one
    for original, digest in ((model, MODEL_SHA256), (tokenizer, TOKENIZER_SHA256)):
        copy = tmp_path / original.name
        data = bytearray(original.read_bytes())
        data[len(data) // 2] ^= 0x01  # one flipped bit
        copy.write_bytes(bytes(data))
        with pytest.raises(EmbeddingError, match="sha256"):
            verified(copy, digest)
        copy.write_bytes(original.read_bytes())
        assert verified(copy, digest) == copy
    with pytest.raises(EmbeddingError, match="cannot read"):
        verified(tmp_path / "missing.json", TOKENIZER_SHA256)


async def test_semantic_search_with_the_local_model(minilm, authenticator, make_caller, tmp_path):
    settings = MemorySettings(backend="sqlite", data_dir=tmp_path, embedder="local")
    backend = SqliteBackend(tmp_path / "m.sqlite3", 384)
    await backend.open()
    app = create_app(settings, backend=backend, embedder=minilm, authenticator=authenticator)
    me = make_caller()
    try:
        async with memory_client(app, "http://t") as c:
            docs = ["My dog loves to fetch tennis balls in the park",
                    "The quarterly revenue grew by twelve percent",
                    "I prefer green tea over coffee in the morning"]  # fmt: skip
            r = await c.post("/v1/memory/store", json={"memories": [{"content": d} for d in docs]},
                             headers=me.headers)  # fmt: skip
            assert r.status_code == 200
            q = {"query": "what drink does the user like?", "mode": "vector"}
            r = await c.post("/v1/memory/search", headers=me.headers, json=q)
            assert r.json()["results"][0]["memory"]["content"] == docs[2]
            caps = (await c.get("/v1/memory/capabilities", headers=me.headers)).json()
            assert caps["embedding"] == {"model": "all-MiniLM-L6-v2 (onnx int8)", "dimensions": 384}
    finally:
        await backend.close()


def embeddings_server(dim: int, fail_first: int = 0) -> Starlette:
    """A stand-in for the inference gateway's embeddings server (OpenAI-compatible), in process."""
    state = {"calls": 0}
    hasher = DeterministicEmbedder(dim)

    async def embeddings(request: Request) -> JSONResponse:
        state["calls"] += 1
        if state["calls"] <= fail_first:
            return JSONResponse({"error": "overloaded"}, status_code=503)
        body = await request.json()
        assert request.headers["authorization"] == "Bearer sk-test"
        rows = await hasher.embed(body["input"])
        data = [{"index": i, "embedding": row.tolist()} for i, row in enumerate(rows)]
        return JSONResponse({"data": list(reversed(data)), "model": body["model"]})

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
    app.state.calls = state
    return app


async def test_http_embedder_retries_then_succeeds():
    server = embeddings_server(384, fail_first=2)
    emb = HttpEmbedder("http://emb.test/v1", "m", 384, api_key="sk-test",
                       transport=httpx.ASGITransport(app=server))  # fmt: skip
    rows = await emb.embed(["alpha beta", "gamma"])
    want = await DeterministicEmbedder(384).embed(["alpha beta", "gamma"])
    assert np.allclose(rows, want, atol=1e-6)  # order restored from "index"
    assert server.state.calls["calls"] == 3
    await emb.aclose()


async def test_http_embedder_wrong_dimension_is_an_error_not_a_drop():
    server = embeddings_server(128)
    emb = HttpEmbedder("http://emb.test/v1", "m", 384, api_key="sk-test",
                       transport=httpx.ASGITransport(app=server))  # fmt: skip
    with pytest.raises(EmbeddingError, match=r"expected \(1, 384\)"):
        await emb.embed(["x"])
    await emb.aclose()


async def test_embedder_failure_is_a_502_for_the_client(authenticator, make_caller, tmp_path):
    server = embeddings_server(128)
    emb = HttpEmbedder("http://emb.test/v1", "m", 384, api_key="sk-test",
                       transport=httpx.ASGITransport(app=server))  # fmt: skip
    backend = SqliteBackend(tmp_path / "m.sqlite3", 384)
    await backend.open()
    settings = MemorySettings(backend="sqlite", data_dir=tmp_path, embedder="http",
                              embedding_url="http://emb.test/v1")  # fmt: skip
    app = create_app(settings, backend=backend, embedder=emb, authenticator=authenticator)
    me = make_caller()
    try:
        async with memory_client(app, "http://t") as c:
            r = await c.post("/v1/memory/store", json={"content": "x"}, headers=me.headers)
            assert r.status_code == 502
            assert r.json()["error"]["code"] == "embedding_unavailable"
            assert "sk-test" not in r.text
            listing = await c.get("/v1/memory/retrieve", headers=me.headers)
            assert listing.json()["memories"] == []
    finally:
        await backend.close()
        await emb.aclose()


async def test_deterministic_embedder_is_stable_and_word_sensitive():
    a = DeterministicEmbedder(64)
    b = DeterministicEmbedder(64)
    x, y, z = await a.embed(["red apple pie", "red apple tart", "quantum chromodynamics"])
    assert np.allclose(x, (await b.embed(["red apple pie"]))[0])
    assert x @ y > x @ z
