"""The memory API's OpenAPI document, fuzzed through the real gateway (nginx + plugin).

Schemathesis generates requests from the document the service publishes and sends them
through nginx with a real key: no answer may be a 5xx, and every answer must match the
document (status, content type, headers, body schema). Bounded (``tests/support/openapi_fuzz.py``):
a fixed seed, a cap on examples per operation and a time budget for the whole run.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import schemathesis
from schemathesis import checks

from hanzo_client import HanzoClient
from hanzo_contract.openapi import MEMORY_OPENAPI_PATH
from memory_service.openapi import openapi_document
from tests.support.openapi_fuzz import fuzz

from .support import RunningStack, pkce_login

MAX_EXAMPLES = 40  # per operation (10 operations: ~400 requests, within the plan's 600 a minute)
BUDGET_SECONDS = 90.0  # for the whole run; later operations get fewer examples if needed
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: Any, value: Any) -> bytes:
    """Import bodies are JSON lines; one generated line is a valid file."""
    return (json.dumps(value) + "\n").encode()


def _key(stack: RunningStack) -> str:
    tokens = pkce_login(stack, "acme", "alice", stack.password("ACME_ALICE_PASSWORD"))
    scopes = ["memory:read", "memory:write", "memory:delete"]
    with HanzoClient(stack.gateway, tokens["access_token"]) as client:
        return client.create_key(f"fuzz-{uuid.uuid4().hex[:6]}", scopes)["key"]


def test_memory_openapi_fuzz_through_the_gateway(running_stack: RunningStack) -> None:
    key = _key(running_stack)
    schema = schemathesis.openapi.from_dict(openapi_document())
    deadline = time.monotonic() + BUDGET_SECONDS
    failures: list[str] = []
    sent: dict[str, dict[int, int]] = {}
    # every operation but the public document itself (fetched as is, nothing to fuzz)
    operations = [
        op for op in (r.ok() for r in schema.get_all_operations()) if op.path != MEMORY_OPENAPI_PATH
    ]
    assert len(operations) == 10
    for operation in operations:
        sent[operation.label], failed = fuzz(
            operation,
            running_stack.gateway,
            {"X-API-Key": key},
            deadline,
            max_examples=MAX_EXAMPLES,
            checks=CHECKS,
        )
        failures += failed

    print("status codes by operation:", sent)  # shown with -s, and in CI logs on failure
    total = sum(sum(c.values()) for c in sent.values())
    assert total >= 10 * 5, sent  # the budget left room for a real run
    assert not any(code >= 500 for c in sent.values() for code in c), sent
    assert not failures, "\n\n".join(failures[:5])
    # the run reached the service, not only the gateway's refusals
    assert sent["POST /v1/memory/store"].get(200), sent
    assert sent["POST /v1/memory/search"].get(200), sent


def test_hostile_bodies_through_the_gateway_are_json_4xx(running_stack: RunningStack) -> None:
    """The hostile bodies of the issue, through real nginx: each a precise 4xx in the JSON
    error body with the request id (before the bounds: a 500, or nginx's 502 HTML page
    when the service dropped the connection)."""
    key = _key(running_stack)
    deep = '{"a":' * 1000 + "1" + "}" * 1000
    digits = "9" * 4301
    cases = [
        ("store", '{"content": "x", "metadata": ' + deep + "}", 400, "json_too_deep"),
        ("search", '{"query": "x", "filters": {"metadata": ' + deep + "}}", 400,
         "json_too_deep"),
        ("search", '{"query": "x", "top_k": ' + digits + "}", 400, "number_too_large"),
        ("store", '{"content": "x", "importance": ' + digits + "}", 400, "number_too_large"),
        ("store", '{"content": "x", "metadata": {"k": ' + '{"a":' * 500 + "1" + "}" * 500
         + "}}", 400, "json_too_deep"),
        ("store", '{"content": "x", "metadata": {"k": ' + '{"a":' * 20 + "1" + "}" * 20
         + "}}", 422, "validation_error"),
    ]  # fmt: skip
    with httpx.Client(base_url=running_stack.gateway, timeout=30) as http:
        for n, (route, body, status, code) in enumerate(cases):
            r = http.post(
                f"/v1/memory/{route}",
                content=body.encode(),
                headers={"X-API-Key": key, "Content-Type": "application/json",
                         "X-Request-Id": f"hostile-{n}"},
            )  # fmt: skip
            assert r.status_code == status, (n, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith("application/json"), (n, r.headers)
            assert r.headers["x-request-id"] == f"hostile-{n}"
            error = r.json()["error"]
            assert error["code"] == code and error["request_id"] == f"hostile-{n}", (n, error)
        hundred = '{"a":' * 100 + "1" + "}" * 100
        listing = http.get(
            "/v1/memory/retrieve", params={"metadata": hundred}, headers={"X-API-Key": key}
        )
        assert listing.status_code == 400 and listing.json()["error"]["code"] == "json_too_deep"
        # a query too long for nginx's request line: its 414, as JSON too
        too_long = http.get(
            "/v1/memory/retrieve", params={"metadata": deep}, headers={"X-API-Key": key}
        )
        assert too_long.status_code == 414, too_long.text[:200]
        assert too_long.json()["error"]["code"] == "uri_too_long"
        # and the organization's reads still work
        assert http.get("/v1/memory/export", headers={"X-API-Key": key}).status_code == 200
