"""The memory service's ``/metrics`` and ``/readyz`` over a real Valkey (issue 12).

Metrics: requests by route template and status, latency histograms, backend operation
timings and embedding time, from real requests. Readiness: a real read of the backend; with
Valkey stopped, 503 and the shared error body naming the request id.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hanzo_stack.valkey import ValkeyServer
from memory_service.auth import AssertionAuthenticator
from memory_service.backends.redis import RedisBackend
from tests.memory.assertions import memory_client
from tests.memory.conftest import DIM, Caller, build_app
from tests.support.metrics import value


class Served:
    def __init__(self, client: httpx.AsyncClient, valkey: ValkeyServer) -> None:
        self.client, self.valkey = client, valkey


@pytest.fixture
async def served(tmp_path: Path, authenticator: AssertionAuthenticator) -> AsyncIterator[Served]:
    valkey = ValkeyServer(tmp_path / "valkey").start()
    backend = RedisBackend(valkey.url, DIM)
    await backend.open()
    app = build_app(backend, authenticator, tmp_path / "app")
    try:
        async with memory_client(app) as client:
            yield Served(client, valkey)
    finally:
        valkey.stop()
        await backend.close()


async def test_metrics_count_routes_backend_operations_and_embeddings(
    served: Served, caller: Caller
) -> None:
    client = served.client
    before = (await client.get("/metrics")).text
    stored = await client.post(
        "/v1/memory/store",
        headers=caller.headers,
        json={"memories": [{"content": "the metrics test remembers this"}]},
    )
    assert stored.status_code in (200, 201), stored.text
    found = await client.post(
        "/v1/memory/search", headers=caller.headers, json={"query": "what is remembered"}
    )
    assert found.status_code == 200, found.text
    missing = f"mem-{uuid.uuid4().hex}"
    gone = await client.delete(f"/v1/memory/{missing}", headers=caller.headers)
    assert gone.status_code == 404
    after = await client.get("/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text

    def grew(name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    status = str(stored.status_code)
    assert grew("hanzo_memory_requests_total", route="/v1/memory/store", status=status) == 1
    assert grew("hanzo_memory_requests_total", route="/v1/memory/search", status="200") == 1
    # by route template, never by the raw id (one series per route, not per memory)
    assert grew("hanzo_memory_requests_total", route="/v1/memory/{id:str}", status="404") == 1
    assert missing not in text
    assert grew("hanzo_memory_request_seconds_count", route="/v1/memory/search") == 1
    assert grew("hanzo_memory_backend_seconds_count", backend="redis", operation="upsert") >= 1
    assert grew("hanzo_memory_backend_seconds_count", operation="vector_search") == 1
    assert grew("hanzo_memory_embedding_seconds_count", kind="batch") >= 1
    assert grew("hanzo_memory_embedding_seconds_count", kind="query") == 1
    assert grew("hanzo_memory_embedded_texts_total") >= 1


async def test_readyz_checks_the_backend_and_answers_503_when_valkey_is_down(
    served: Served,
) -> None:
    client = served.client
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "backend": "ok"}
    metrics = (await client.get("/metrics")).text
    errors_before = value(metrics, "hanzo_memory_backend_errors_total", operation="usage")
    served.valkey.stop()
    down = await client.get("/readyz", headers={"X-Request-Id": "ready-1"})
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/json"
    error = down.json()["error"]
    assert error["code"] == "not_ready" and error["request_id"] == "ready-1"
    assert error["details"]["backend"] == "redis"
    errors = value(
        (await client.get("/metrics")).text, "hanzo_memory_backend_errors_total", operation="usage"
    )
    assert errors >= errors_before + 1
    assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
