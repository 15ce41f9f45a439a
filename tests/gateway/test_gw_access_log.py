"""The plugin's access line (issue 12 needs the request id in every part's log; issue 14
needs it cheap): one line per request with the request id, status, route, key id (never
the key) and latency, in the shared line shape, written in batches, none lost at SIGTERM.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway_plugins.access_log import LOGGER, AccessLog
from gateway_plugins.core import DecisionCore
from gateway_plugins.forward_auth import create_app
from hanzo_contract.principal import Principal
from hanzo_stack.servers import ForwardAuthServer, SidecarServer
from iam_sidecar.keys.models import NewKey
from tests.gateway.conftest import ALICE_KEY, gateway_env
from tests.support.keys import mint_key

KEY = ALICE_KEY
#: the keys of every line of every part (hanzo_contract.jsonlog.JsonFormatter)
SHARED = {"time", "level", "service", "request_id", "logger", "message"}
#: what the formatter's ``time`` looks like: UTC, milliseconds
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


class Stream(io.StringIO):
    """A text stream that counts its ``write`` calls (one per batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@dataclass
class Logged:
    client: httpx.AsyncClient
    stream: Stream
    access: AccessLog


@pytest.fixture
async def logged(core: DecisionCore, alice: Principal) -> AsyncIterator[Logged]:
    """The forward-auth app over ASGI (as ``alice``), its lines batched for an hour unless
    flushed."""
    stream = Stream()
    access = AccessLog("gateway", stream, flush_seconds=3600)
    app = create_app(core, access=access)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://auth"
    ) as client:
        yield Logged(client, stream, access)


def nginx(uri: str, request_id: str, key: str | None = KEY) -> dict[str, str]:
    headers = {"X-Original-Method": "GET", "X-Original-URI": uri, "X-Request-Id": request_id}
    return {**headers, "X-API-Key": key} if key else headers


async def test_one_line_per_request_with_what_an_operator_needs(logged: Logged) -> None:
    client = logged.client
    uri = f"/v1/memory/retrieve?q=1&api_key={KEY}"
    assert (await client.get("/auth/nginx", headers=nginx(uri, "req-allow"))).status_code == 200
    limited = await client.get("/auth/nginx", headers=nginx(uri, "req-429"))
    assert limited.status_code == 403  # nginx's dialect; the line keeps the real status
    # the hot path answers the request id itself (no middleware): the sent one, once
    assert limited.headers.get_list("x-request-id") == ["req-429"]
    assert limited.json()["error"]["request_id"] == "req-429"
    unsafe = await client.get("/auth/nginx", headers=nginx(uri, 'bad"id'))
    made = unsafe.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made) and unsafe.json()["error"]["request_id"] == made
    await client.get("/auth/nginx", headers=nginx("/v1/memory/retrieve", "req-401", key=None))
    await client.get("/auth/nginx", headers={"X-Request-Id": "req-400"})
    await client.get("/healthz", headers={"X-Request-Id": "req-health"})
    assert logged.stream.writes == 0  # batched: nothing written before a flush
    logged.access.flush()
    assert logged.stream.writes == 1  # the six lines in one write
    text = logged.stream.getvalue()
    assert KEY not in text and KEY.split("_", 1)[1] not in text
    lines = {line["request_id"]: line for line in logged.stream.lines()}
    assert set(lines) == {"req-allow", "req-429", made, "req-401", "req-400", "req-health"}
    for line in lines.values():
        assert set(line) >= SHARED
        assert TIME.fullmatch(str(line["time"]))
        assert (line["level"], line["service"], line["logger"]) == ("info", "gateway", LOGGER)
        assert isinstance(line["latency_ms"], float) and 0 <= line["latency_ms"] < 60_000
        assert line["message"] == f"{line['method']} {line['path']} {line['status']}"

    allowed = lines["req-allow"]
    assert allowed["path"] == "/v1/memory/retrieve"  # never the query
    assert allowed["route"] == "/v1/memory/retrieve"
    assert (allowed["status"], allowed["code"]) == (200, "allow")
    assert (allowed["key_id"], allowed["org"]) == ("abcdefghijkl", "acme")
    limited_line = lines["req-429"]
    assert (limited_line["status"], limited_line["code"]) == (429, "rate_limited")
    assert limited_line["key_id"] == "abcdefghijkl"
    refused = lines["req-401"]
    assert (refused["status"], refused["code"], refused["key_id"]) == (
        401,
        "missing_credential",
        None,
    )
    assert refused["route"] == "/v1/memory/retrieve"
    malformed = lines["req-400"]  # no original request: the line names the endpoint asked
    assert (malformed["status"], malformed["path"], malformed["route"]) == (
        400,
        "/auth/nginx",
        None,
    )
    health = lines["req-health"]
    assert (health["method"], health["path"], health["status"]) == ("GET", "/healthz", 200)


async def test_a_credential_in_the_path_is_never_written_and_any_text_stays_one_line() -> None:
    stream = Stream()
    access = AccessLog("gateway", stream)
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
    access.request("GET", f"/v1/x/{KEY}/{jwt}", 403, time.perf_counter())
    hostile = '/a"b\\\n\u2028\x85\x1e\u00e9'  # quote, backslash, line breaks of every kind
    access.request('GE"T', hostile, 404, time.perf_counter())
    access.flush()
    text = stream.getvalue()
    assert KEY.split("_", 1)[1] not in text and jwt not in text
    assert len(text.splitlines()) == 2  # str.splitlines breaks at U+2028 and U+0085 too
    first, second = stream.lines()
    assert first["path"] == "/v1/x/hk-abcdefghijkl_***/***"  # the public key id stays
    assert (second["method"], second["path"]) == ('GE"T', hostile)


async def test_lines_are_written_at_max_lines_or_after_the_interval() -> None:
    stream = Stream()
    access = AccessLog("gateway", stream, max_lines=3, flush_seconds=0.05)
    for n in range(3):
        access.request("GET", f"/{n}", 200, time.perf_counter())
    assert (stream.writes, len(stream.lines())) == (1, 3)  # the third line filled the batch
    access.request("GET", "/late", 200, time.perf_counter())
    assert stream.writes == 1
    written = asyncio.Event()
    original = stream.write

    def write(text: str) -> int:
        written.set()
        return original(text)

    stream.write = write  # type: ignore[method-assign]
    await asyncio.wait_for(written.wait(), timeout=10)  # the interval's timer wrote it
    assert stream.writes == 2 and stream.lines()[-1]["path"] == "/late"


def test_without_an_event_loop_each_line_is_written_at_once() -> None:
    stream = Stream()
    AccessLog("gateway", stream, flush_seconds=3600).request("GET", "/", 200, time.perf_counter())
    assert [line["path"] for line in stream.lines()] == ["/"]


async def test_no_line_is_lost_when_the_process_gets_sigterm(
    tmp_path: Path, sidecar_server: SidecarServer
) -> None:
    """A real forward-auth process whose batches would wait an hour: every request's line
    is in its log after SIGTERM, written by the lifespan's end (uvicorn re-raises the
    signal after it, so no ``atexit`` hook would run)."""
    key, key_id = await mint_key(
        sidecar_server.db_path,
        sidecar_server.hash_secret,
        NewKey(
            organization="acme",
            owner="acme/alice",
            name=f"k-{secrets.token_hex(6)}",
            scopes=["memory:read"],
        ),
    )
    env = gateway_env(sidecar_server, tmp_path, HANZO_GATEWAY_ACCESS_LOG_FLUSH_SECONDS="3600")
    auth = ForwardAuthServer(tmp_path, env).start()
    log_path = tmp_path / f"gateway-{auth.port}.log"
    sent: dict[str, int] = {}
    try:
        async with httpx.AsyncClient(base_url=auth.url, timeout=30) as client:
            for n in range(40):
                request_id = f"sigterm-{n}-{secrets.token_hex(4)}"
                headers = nginx("/v1/memory/retrieve", request_id, key if n % 2 else None)
                answer = await client.get("/auth/nginx", headers=headers)
                sent[request_id] = answer.status_code
        assert set(sent.values()) == {200, 401}
        assert not any(request_id in log_path.read_text() for request_id in sent)  # batched
    finally:
        auth.stop()  # SIGTERM
    assert auth.process is not None and auth.process.proc is not None
    assert auth.process.proc.returncode is not None
    lines = [json.loads(raw) for raw in log_path.read_text().splitlines() if raw.strip()]
    mine = [line for line in lines if line.get("request_id") in sent]
    assert len(mine) == len(sent)  # each once
    for line in mine:
        assert line["status"] == sent[str(line["request_id"])]
        assert line["key_id"] == (key_id if line["status"] == 200 else None)
    assert key.split("_", 1)[1] not in log_path.read_text()
