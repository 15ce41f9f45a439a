"""The fault suite's judge, without a stack: what it counts as a wrong decision, a failure
and a non-JSON error (so the suite's zeros mean something)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import httpx

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fault_suite.py"


def _suite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fault_suite", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_suite"] = module
    spec.loader.exec_module(module)
    return module


fs = _suite()


def _load() -> object:
    return fs.Load("http://127.0.0.1:1", fs.Credentials({}, {}, "hk-revoked"), workers=1)


def _json(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_an_allowed_request_that_must_be_denied_is_a_wrong_decision() -> None:
    load = _load()
    now = time.monotonic()
    assert load._judge("revoked", "acme", now, _json(200, {"results": []}), "").wrong
    assert load._judge("anonymous", "acme", now, _json(200, {}), "").wrong
    assert load._judge("cross_get", "acme", now, _json(200, {"memories": [{"id": "m"}]}), "").wrong
    # refused, or unavailable while a part is down: no wrong decision, no failure
    for status in (401, 404, 503):
        out = load._judge("revoked", "acme", now, _json(status, {"error": {"code": "x"}}), "")
        assert not out.wrong and not out.failed


def test_another_tenants_memory_in_a_search_is_a_wrong_decision() -> None:
    load = _load()
    hits = {"results": [{"memory": {"content": "[globex] fault-suite 1"}}]}
    assert load._judge("search", "acme", time.monotonic(), _json(200, hits), "").wrong
    mine = {"results": [{"memory": {"content": "[acme] fault-suite 1"}}]}
    assert not load._judge("search", "acme", time.monotonic(), _json(200, mine), "").wrong


def test_an_html_error_page_is_counted_and_an_acked_store_is_remembered() -> None:
    load = _load()
    html = httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>")
    out = load._judge("store", "acme", time.monotonic(), html, "c")
    assert out.not_json and out.failed
    out = load._judge("store", "acme", time.monotonic(), _json(201, {"ids": ["m_1"]}), "c")
    assert not out.failed and load.acked == [("acme", "m_1", "c")]
    limited = load._judge("search", "acme", time.monotonic(), _json(429, {"error": {}}), "")
    assert not limited.failed  # a 429 is the limiter deciding, not an outage


def test_expectations_catch_an_open_sidecar_outage_and_a_casdoor_outage_that_stops_keys() -> None:
    killed = 100.0
    late_allowed = fs.Outcome("search", "acme", killed + 10, killed + 10.1, 200)
    assert fs.check_expectations("sidecar", [late_allowed], killed, "open")
    broken = fs.Outcome("store", "acme", killed + 1, killed + 1.1, 503, "auth_unavailable", True)
    assert fs.check_expectations("casdoor", [broken], killed, "open")
    good = fs.Outcome("create_key", "acme", killed + 1, killed + 1.1, 503, "casdoor_unavailable")
    assert fs.check_expectations("casdoor", [good], killed, "open") == []
