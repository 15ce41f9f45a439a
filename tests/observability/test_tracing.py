"""One request through real nginx gives one trace across the parts (issue 12).

The plugin, the sidecar and the memory service run in this process (uvicorn threads) with
one tracer provider and the SDK's in-memory exporter; nginx is real. A request with a new
API key crosses nginx -> plugin (auth subrequest) -> sidecar (verify) and nginx -> memory
-> backend and embedder: every span has one trace id, each part's server span is the child
of the part that called it, and the backend operations are spans under the memory one.
Off (no ``OTEL_*``), nothing is traced and no SDK is imported by the parts.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hanzo_contract import telemetry
from hanzo_stack.servers import NginxServer

from .in_process import Parts


class Traced:
    def __init__(self, parts: Parts, nginx: NginxServer, spans: InMemorySpanExporter) -> None:
        self.parts, self.nginx, self.spans = parts, nginx, spans


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    work = tmp_path_factory.mktemp("traced")
    parts = Parts(work).start()
    nginx = NginxServer(work / "nginx", parts.plugin.addr, parts.memory.addr).start()  # type: ignore[union-attr]
    try:
        yield Traced(parts, nginx, InMemorySpanExporter())
    finally:
        nginx.stop()
        parts.stop()


@pytest.fixture
def exporter(traced: Traced) -> Iterator[InMemorySpanExporter]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(traced.spans))
    traced.spans.clear()
    telemetry.use_provider(provider)
    try:
        yield traced.spans
    finally:
        telemetry.use_provider(None)
        traced.spans.clear()


async def _send(method: str, url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.request(method, url, **kwargs)  # type: ignore[arg-type]


def _part(span: ReadableSpan) -> str | None:
    return (span.attributes or {}).get("service.part")  # type: ignore[return-value]


def _server_span(spans: list[ReadableSpan], part: str) -> ReadableSpan:
    (found,) = [s for s in spans if _part(s) == part]
    return found


async def test_one_request_one_trace_from_the_gateway_to_the_backend(
    traced: Traced, exporter: InMemorySpanExporter
) -> None:
    key = await traced.parts.mint(("memory:read", "memory:write"))
    reply = await _send(
        "POST",
        f"{traced.nginx.url}/v1/memory/store",
        headers={"Authorization": f"Bearer {key}"},
        json={"memories": [{"content": f"traced {uuid.uuid4().hex}"}]},
    )
    assert reply.status_code in (200, 201), reply.text
    spans = list(exporter.get_finished_spans())
    assert {s.context.trace_id for s in spans} == {spans[0].context.trace_id}, spans

    plugin = _server_span(spans, "gateway")
    sidecar = _server_span(spans, "sidecar")
    memory = _server_span(spans, "memory")
    assert plugin.parent is None  # the client sent no trace: the gateway's decision is root
    assert sidecar.parent is not None and sidecar.parent.span_id == plugin.context.span_id
    assert memory.parent is not None and memory.parent.span_id == plugin.context.span_id
    request_id = reply.headers["x-request-id"]
    for server in (plugin, sidecar, memory):
        assert (server.attributes or {})["hanzo.request_id"] == request_id
    assert (memory.attributes or {})["http.response.status_code"] == reply.status_code

    below_memory = {
        s.name for s in spans if s.parent and s.parent.span_id == memory.context.span_id
    }
    assert {"backend.upsert", "embedding.batch"} <= below_memory, below_memory


async def test_a_client_trace_is_joined(traced: Traced, exporter: InMemorySpanExporter) -> None:
    key = await traced.parts.mint(("memory:read",))
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    reply = await _send(
        "POST",
        f"{traced.nginx.url}/v1/memory/search",
        headers={
            "Authorization": f"Bearer {key}",
            "traceparent": f"00-{trace_id}-{parent_id}-01",
        },
        json={"query": "anything"},
    )
    assert reply.status_code == 200, reply.text
    spans = list(exporter.get_finished_spans())
    assert spans and {format(s.context.trace_id, "032x") for s in spans} == {trace_id}
    plugin = _server_span(spans, "gateway")
    assert plugin.parent is not None and format(plugin.parent.span_id, "016x") == parent_id
    assert "backend.vector_search" in {s.name for s in spans}


async def test_off_nothing_is_traced(traced: Traced) -> None:
    key = await traced.parts.mint(("memory:read",))
    traced.spans.clear()
    reply = await _send(
        "GET",
        f"{traced.nginx.url}/v1/memory/retrieve",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert reply.status_code == 200, reply.text
    assert traced.spans.get_finished_spans() == ()
    assert telemetry.traceparent() is None


def test_off_by_default_the_parts_import_no_opentelemetry(tmp_path: Path) -> None:
    """A service started without OTEL_* (the default) imports nothing of OpenTelemetry,
    even after serving a request; with OTEL_TRACES_EXPORTER set, setup turns it on."""
    probe = """
import os, sys, asyncio, httpx
for name in [n for n in os.environ if n.startswith("OTEL_")]:
    del os.environ[name]
from hanzo_contract import telemetry
from gateway_plugins.forward_auth import create_app
assert telemetry.setup("gateway") is False
from memory_service.metrics import REGISTRY
from tests.observability.test_request_id_and_logs import _app
async def main():
    transport = httpx.ASGITransport(app=_app({}))
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        await client.get("/echo")
asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
os.environ["OTEL_TRACES_EXPORTER"] = "console"
telemetry._state["on"] = None
assert telemetry.setup("gateway") is True and telemetry.enabled()
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_the_standard_variables_turn_it_on(env: dict[str, str], on: bool) -> None:
    assert telemetry.wanted(env) is on
