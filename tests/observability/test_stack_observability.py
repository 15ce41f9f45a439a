"""Seeing across the parts of the real stack, as ``hanzo up`` runs it (issue 12): real
Casdoor, sidecar, plugin, memory, inference gateway and nginx, each logging to its file.

- one request id in the answer, the error body and the log lines of every part it crossed
  (nginx, plugin, sidecar, memory);
- every line a part writes is one JSON object of the shared shape;
- a key and passwords sent through the stack appear in no log;
- ``/metrics`` and ``/readyz`` on the private ports, not through the gateway;
- the Grafana dashboard queries only metrics the running services export.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hanzo_stack.process import LOOPBACK
from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack, StackInfo

from .test_casdoor_logs import STARTED, events

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "hanzo-services.json"
#: the parts that log through the shared formatter, by log file name
JSON_PARTS = ("sidecar", "gateway", "memory", "inference", "supervisor")
LINE_KEYS = {"time", "level", "service", "request_id", "logger", "message"}
SCOPES = ["memory:read", "memory:write", "memory:delete"]


class Running:
    def __init__(self, stack: Stack, info: StackInfo) -> None:
        self.stack, self.info = stack, info
        self.logs = Path(info.logs_dir)
        self.access_log = stack.layout.nginx_dir / "access.log"

    def private(self, part: str) -> str:
        return f"http://{LOOPBACK}:{self.info.ports[part]}"

    def key(self) -> str:
        path = self.stack.mint_demo_key(self.info, "acme", "acme/alice", SCOPES)
        return path.read_text().strip()

    def log_text(self, part: str) -> str:
        return (self.logs / f"{part}.log").read_text(errors="replace")

    def lines(self, part: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_text(part).splitlines() if line.strip()]

    def wait_for(self, request_id: str, parts: tuple[str, ...], timeout: float = 15.0) -> None:
        """Until every part has logged a line for ``request_id`` (logs are written as the
        answers go out, not before the client has them)."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [p for p in parts if request_id not in self.log_text(p)]
            if request_id not in self.access_log.read_text():
                missing.append("nginx")
            if not missing or time.monotonic() > deadline:
                assert not missing, f"no line for {request_id} in {missing}"
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    state = tmp_path_factory.mktemp("obs-stack")
    stack = Stack(state, progress=lambda _: None)
    try:
        info = stack.up(DEFAULT_TENANT_FILE, ui=False)
        yield Running(stack, info)
    finally:
        stack.down(quiet=True)


def _with_id(lines: list[dict[str, object]], request_id: str) -> list[dict[str, object]]:
    return [line for line in lines if line.get("request_id") == request_id]


def test_one_request_id_in_answer_error_body_and_every_part_log(running: Running) -> None:
    key = running.key()  # new: the plugin asks the sidecar to verify it
    request_id = f"obs-{uuid.uuid4().hex}"
    stored = httpx.post(
        f"{running.info.gateway_url}/v1/memory/store",
        headers={"Authorization": f"Bearer {key}", "X-Request-Id": request_id},
        json={"content": "seen across the parts"},
        timeout=30,
    )
    assert stored.status_code in (200, 201), stored.text
    assert stored.headers["x-request-id"] == request_id
    running.wait_for(request_id, ("gateway", "sidecar", "memory"))
    for part in ("gateway", "sidecar", "memory"):
        mine = _with_id(running.lines(part), request_id)
        assert mine, part
        assert {line["service"] for line in mine} == {part}
    memory_access = [
        line for line in _with_id(running.lines("memory"), request_id) if line.get("method")
    ]
    assert memory_access and memory_access[0]["path"] == "/v1/memory/store"
    assert memory_access[0]["status"] == stored.status_code

    # an error the memory service makes names the id, in its body and in its access line
    error_id = f"obs-err-{uuid.uuid4().hex}"
    missing = httpx.delete(
        f"{running.info.gateway_url}/v1/memory/mem-{uuid.uuid4().hex}",
        headers={"Authorization": f"Bearer {key}", "X-Request-Id": error_id},
        timeout=30,
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["request_id"] == error_id == missing.headers["x-request-id"]
    running.wait_for(error_id, ("gateway", "memory"))

    # a client that sends none (or an unsafe one) gets one made at the gateway, everywhere
    for sent in ({}, {"X-Request-Id": 'bad"id'}):
        refused = httpx.get(
            f"{running.info.gateway_url}/v1/memory/retrieve", headers=sent, timeout=30
        )
        assert refused.status_code == 401
        made = refused.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made), made
        assert refused.json()["error"]["request_id"] == made
        running.wait_for(made, ("gateway",))


def test_every_line_of_every_part_is_shared_json(running: Running) -> None:
    httpx.get(f"{running.private('inference')}/healthz", timeout=10)  # one line at least
    for part in JSON_PARTS:
        text = running.log_text(part)
        assert text.strip(), f"{part} logged nothing"
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                pytest.fail(f"{part} wrote a line that is not JSON: {raw[:300]}")
            assert set(line) >= LINE_KEYS, (part, line)
            assert line["service"] == part, (part, line)
    # Casdoor's own lines too, through the relay the launcher puts on its output
    casdoor = events(running.stack.casdoor.state.log_path)
    assert any(STARTED in str(line["message"]) for line in casdoor)


def test_secrets_sent_through_the_stack_are_in_no_log(running: Running) -> None:
    key = running.key()
    password = f"Pw-{uuid.uuid4().hex}"
    gateway = running.info.gateway_url
    marker = f"obs-secret-{uuid.uuid4().hex}"
    attempts = [
        ("GET", f"/v1/memory/retrieve?api_key={key}&password={password}", {}),
        ("GET", f"/v1/keys?token={key}", {"Authorization": f"Bearer {key}"}),
        ("POST", f"/v1/memory/search?password={password}", {"X-API-Key": key}),
        ("GET", "/v1/memory/retrieve", {"Authorization": f"Bearer {key}x"}),  # a bad key
    ]
    for method, path, headers in attempts:
        reply = httpx.request(
            method,
            gateway + path,
            headers={**headers, "X-Request-Id": marker},
            json={"query": password} if method == "POST" else None,
            timeout=30,
        )
        assert reply.status_code < 500, (path, reply.status_code, reply.text)
    running.wait_for(marker, ("gateway", "memory"))
    secret_part = key.split("_", 1)[1]
    seeds = list(running.stack.layout.seed_passwords(DEFAULT_TENANT_FILE).values())
    logs = [
        *running.logs.glob("*.log"),
        *running.stack.layout.nginx_dir.glob("*.log"),
        running.stack.casdoor.state.log_path,
    ]
    assert len(logs) >= 7, logs
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in (key, secret_part, password, *seeds):
            assert secret not in text, f"a secret reached {log.name}"


def test_metrics_and_readiness_on_private_ports_only(running: Running) -> None:
    gateway = running.info.gateway_url
    for path in ("/metrics", "/readyz"):
        through = httpx.get(gateway + path, timeout=10)
        assert through.status_code == 404 and "hanzo_memory" not in through.text, path
    memory = httpx.get(running.private("memory") + "/metrics", timeout=10)
    assert memory.status_code == 200 and "hanzo_memory_requests_total" in memory.text
    assert httpx.get(running.private("memory") + "/readyz", timeout=10).json() == {
        "status": "ok",
        "backend": "ok",
    }
    plugin = httpx.get(running.private("gateway") + "/readyz", timeout=10)
    assert plugin.status_code == 200 and plugin.json() == {"status": "ok", "sidecar": "ok"}
    assert httpx.get(running.private("sidecar") + "/readyz", timeout=10).status_code == 200
    inference = httpx.get(running.private("inference") + "/readyz", timeout=10)
    assert inference.status_code == 200, inference.text
    assert inference.json() == {"status": "ok", "quota": "ok", "upstream:memory-embeddings": "ok"}


def _exported(text: str) -> set[str]:
    """Every series name a scrape can hold (a counter's ``_total``, a histogram's
    ``_bucket``/``_count``/``_sum``), whether or not it has a sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "summary": ("_count", "_sum", ""),
        }.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
        names |= {sample.name for sample in family.samples}
    return names


def test_the_grafana_dashboard_queries_only_exported_metrics(running: Running) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    targets = [
        target
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    assert len(targets) >= 15
    exported: set[str] = set()
    for part in ("memory", "gateway", "sidecar", "inference"):
        scrape = httpx.get(running.private(part) + "/metrics", timeout=10)
        assert scrape.status_code == 200, part
        exported |= _exported(scrape.text)
    queried: set[str] = set()
    for target in targets:
        names = set(re.findall(r"\bhanzo_[a-z0-9_]+", target["expr"]))
        assert names, target["expr"]  # every query reads one of ours
        queried |= names
    assert queried - exported == set(), sorted(queried - exported)
    prefixes = {name.split("_")[1] for name in queried}
    # the dashboard covers every part
    assert prefixes == {"memory", "gateway", "sidecar", "inference"}
