"""The inference gateway through real nginx, the real plugin and the memory service's real
model, on the same keys as memory: embeddings, streamed chat, models, token quotas."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from hanzo_stack.process import LOOPBACK
from inference_gateway.estimate import prompt_estimate
from tests.support.metrics import value

from .conftest import (
    CHAT_MODEL,
    EMBEDDING_MODEL,
    PREMIUM_MODEL,
    InferenceStack,
    bearer,
)
from .fake_upstream import COMPLETION_TOKENS, PIECES, PROMPT_TOKENS, REFUSING_MODEL

INVOKER = ["memory:read", "memory:write", "inference:invoke"]
DAY = 86400


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (reports are batched: bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def events(lines: Iterator[str]) -> Iterator[dict[str, Any] | str]:
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            yield data if data == "[DONE]" else json.loads(data)


@pytest.fixture(scope="module")
def ann(inference_stack: InferenceStack) -> str:
    return inference_stack.key("infa", "ann", INVOKER)[0]


def test_embeddings_are_the_memory_services_own_vectors(
    inference_stack: InferenceStack, ann: str
) -> None:
    gw = inference_stack.gateway
    text = "Hanzo keeps one embedding model per deployment, shared by memory and inference."
    stored = httpx.post(f"{gw}/v1/memory/store", json={"content": text}, headers=bearer(ann))
    assert stored.status_code == 200, stored.text
    memory_id = stored.json()["ids"][0]

    reply = httpx.post(
        f"{gw}/v1/embeddings",
        json={"model": EMBEDDING_MODEL, "input": [text, "hello world"]},
        headers=bearer(ann),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and body["model"] == EMBEDDING_MODEL
    assert [d["index"] for d in body["data"]] == [0, 1]
    vector = np.array(body["data"][0]["embedding"], dtype=np.float32)
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-4

    # the memory service finds its stored vector for the text at cosine 1 from ours
    found = httpx.post(
        f"{gw}/v1/memory/search",
        json={"query": text, "mode": "vector", "embedding": vector.tolist(), "top_k": 2},
        headers=bearer(ann),
    ).json()["results"]
    assert found[0]["memory"]["id"] == memory_id
    assert found[0]["vector_score"] == pytest.approx(1.0, abs=1e-4)

    # usage counted with the model's tokenizer: "hello world" is [CLS] hello world [SEP]
    single = httpx.post(
        f"{gw}/v1/embeddings",
        json={"model": EMBEDDING_MODEL, "input": "hello world", "encoding_format": "base64"},
        headers=bearer(ann),
    ).json()
    assert single["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    decoded = np.frombuffer(base64.b64decode(single["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, body["data"][1]["embedding"], atol=1e-6)


def test_a_reader_without_inference_invoke_gets_403(inference_stack: InferenceStack) -> None:
    gw = inference_stack.gateway
    reader = inference_stack.key("infa", "rob", ["memory:read"])[0]
    calls = len(inference_stack.fake.calls)
    for method, path, body in (
        ("POST", "/v1/embeddings", {"model": EMBEDDING_MODEL, "input": "hi"}),
        ("POST", "/v1/chat/completions", {"model": CHAT_MODEL, "messages": []}),
        ("GET", "/v1/models", None),
    ):
        reply = httpx.request(method, f"{gw}{path}", json=body, headers=bearer(reader))
        assert reply.status_code == 403, (path, reply.text)
        assert reply.json()["error"]["code"] == "forbidden"
    assert len(inference_stack.fake.calls) == calls
    # the memory API still takes the same key
    assert httpx.get(f"{gw}/v1/memory/retrieve", headers=bearer(reader)).status_code == 200


def test_models_lists_only_the_plans_models_and_another_is_403(
    inference_stack: InferenceStack, ann: str
) -> None:
    gw = inference_stack.gateway
    listed = httpx.get(f"{gw}/v1/models", headers=bearer(ann)).json()
    assert {m["id"] for m in listed["data"]} == {EMBEDDING_MODEL, CHAT_MODEL, REFUSING_MODEL}
    calls = len(inference_stack.fake.calls)
    refused = httpx.post(
        f"{gw}/v1/chat/completions",
        json={"model": PREMIUM_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers=bearer(ann),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert len(inference_stack.fake.calls) == calls  # the upstream was never called
    unknown = httpx.post(
        f"{gw}/v1/chat/completions", json={"model": "nope", "messages": []}, headers=bearer(ann)
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    # a plan without an allow-list sees every model served
    ben = inference_stack.key("infb", "ben", INVOKER)[0]
    everything = httpx.get(f"{gw}/v1/models", headers=bearer(ben)).json()
    assert PREMIUM_MODEL in {m["id"] for m in everything["data"]}


def _model_rows(report: dict[str, Any], level: str, subject: str) -> list[dict[str, Any]]:
    return [r for r in report["models"] if r["level"] == level and r["subject"] == subject]


def test_streamed_chat_arrives_chunk_by_chunk_and_is_charged_once(
    inference_stack: InferenceStack,
) -> None:
    fake = inference_stack.fake
    key, key_id = inference_stack.key("infa", "ann", INVOKER)
    fake.release.clear()  # the fake holds its last chunk until we have seen the first
    request = {
        "model": CHAT_MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "say the fox line"}],
    }
    received: list[dict[str, Any] | str] = []
    try:
        with httpx.stream(
            "POST",
            f"{inference_stack.gateway}/v1/chat/completions",
            json=request,
            headers=bearer(key),
            timeout=30,
        ) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            stream = events(reply.iter_lines())
            first = next(stream)
            call = fake.calls[-1]
            assert isinstance(first, dict) and first["choices"][0]["delta"]["content"] == PIECES[0]
            # the first byte is here while the upstream has not produced its last chunk
            assert call.produced < len(PIECES) and not call.finished
            fake.release.set()
            received = [first, *stream]
    finally:
        fake.release.set()
    text = "".join(
        e["choices"][0]["delta"].get("content", "")
        for e in received
        if isinstance(e, dict) and e["choices"]
    )
    assert text == "".join(PIECES) and received[-1] == "[DONE]"
    # the gateway asked for usage on the client's behalf and kept the usage chunk to itself
    assert call.body["stream_options"] == {"include_usage": True}
    # no max_tokens named: the default cap the estimate counted was sent upstream
    assert call.body["max_tokens"] == 1024
    assert not any(isinstance(e, dict) and e.get("usage") for e in received)
    # the upstream saw neither the caller's key nor the identity assertion
    assert "hk-" not in call.headers.get("authorization", "")
    assert "x-hanzo-identity" not in call.headers

    def charged() -> list[dict[str, Any]]:
        return _model_rows(inference_stack.usage(key), "key", key_id)

    rows = wait_for(charged)
    assert [(r["model"], r["requests"], r["prompt_tokens"], r["completion_tokens"])
            for r in rows] == [(CHAT_MODEL, 1, PROMPT_TOKENS, COMPLETION_TOKENS)]  # fmt: skip
    time.sleep(1.5)  # one more report interval of the plugin: still charged once
    assert charged() == rows


def test_a_client_that_asked_for_usage_gets_the_usage_chunk(
    inference_stack: InferenceStack, ann: str
) -> None:
    inference_stack.fake.release.set()
    with httpx.stream(
        "POST",
        f"{inference_stack.gateway}/v1/chat/completions",
        json={
            "model": CHAT_MODEL,
            "stream": True,
            "messages": [],
            "stream_options": {"include_usage": True},
        },
        headers=bearer(ann),
        timeout=30,
    ) as reply:
        received = list(events(reply.iter_lines()))
    usage = [e["usage"] for e in received if isinstance(e, dict) and e.get("usage")]
    assert usage == [
        {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
    ]


def test_a_client_disconnect_is_seen_by_the_upstream_and_still_charged(
    inference_stack: InferenceStack,
) -> None:
    fake = inference_stack.fake
    key, key_id = inference_stack.key("infa", "ann", INVOKER)
    messages = [{"role": "user", "content": "x" * 40}]
    fake.release.clear()
    try:
        with httpx.stream(
            "POST",
            f"{inference_stack.gateway}/v1/chat/completions",
            json={"model": CHAT_MODEL, "stream": True, "messages": messages},
            headers=bearer(key),
            timeout=30,
        ) as reply:
            first = next(events(reply.iter_lines()))
            assert isinstance(first, dict)
            call = fake.calls[-1]
        # leaving the block closed our connection to nginx mid-stream
        assert wait_for(lambda: call.disconnected, timeout=20), "upstream never saw it"
        assert not call.finished and call.produced < len(PIECES)
    finally:
        fake.release.set()
    # no usage chunk ever came: charged the estimate (prompt ~4 chars a token, one token per
    # content chunk the gateway relayed before the client left)
    rows = wait_for(lambda: _model_rows(inference_stack.usage(key), "key", key_id))
    assert [(r["requests"], r["prompt_tokens"]) for r in rows] == [
        (1, len(json.dumps(messages)) // 4)
    ]
    assert 1 <= rows[0]["completion_tokens"] < len(PIECES)


def test_upstream_errors_reach_the_client_as_our_error_body(
    inference_stack: InferenceStack, ann: str
) -> None:
    reply = httpx.post(
        f"{inference_stack.gateway}/v1/chat/completions",
        json={"model": REFUSING_MODEL, "messages": [], "temperature": 9},
        headers=bearer(ann),
    )
    assert reply.status_code == 400
    assert reply.json() == {
        "error": {
            "code": "upstream_error",
            "message": "upstream: temperature must be <= 2",
            "request_id": reply.headers["x-request-id"],
        }
    }
    bad = httpx.post(
        f"{inference_stack.gateway}/v1/chat/completions",
        content=b"{not json",
        headers={**bearer(ann), "Content-Type": "application/json"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"


def test_another_tenants_key_is_metered_to_its_own_organization(
    inference_stack: InferenceStack,
) -> None:
    gw = inference_stack.gateway
    ben, ben_key_id = inference_stack.key("infb", "ben", INVOKER)
    chat = httpx.post(
        f"{gw}/v1/chat/completions",
        json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers=bearer(ben),
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["usage"]["prompt_tokens"] == PROMPT_TOKENS
    embedded = httpx.post(
        f"{gw}/v1/embeddings",
        json={"model": EMBEDDING_MODEL, "input": "hello world"},
        headers=bearer(ben),
    )
    assert embedded.status_code == 200, embedded.text

    stack = inference_stack.stack
    env = stack._env(inference_stack.tenant_file)

    def org_rows(org: str) -> list[dict[str, Any]]:
        out = stack._sidecar_cli(env, "audit", "models", "--org", org, "--json")
        return json.loads(out)

    def infb_org() -> dict[str, Any]:
        rows = [r for r in org_rows("infb") if r["level"] == "org"]
        models = {r["model"]: r for r in rows}
        return models if {CHAT_MODEL, EMBEDDING_MODEL} <= set(models) else {}

    models = wait_for(infb_org)
    assert models, "infb's usage never arrived"
    assert models[CHAT_MODEL]["prompt_tokens"] == PROMPT_TOKENS
    assert models[CHAT_MODEL]["completion_tokens"] == COMPLETION_TOKENS
    assert models[EMBEDDING_MODEL]["prompt_tokens"] == 4
    # ben's key and user rows are infb's; infa's report holds nothing of ben's
    own = [r for r in org_rows("infb") if r["subject"] in (ben_key_id, "infb/ben")]
    assert own and all(r["organization"] == "infb" for r in own)
    assert all(r["subject"] not in (ben_key_id, "infb/ben", "infb") for r in org_rows("infa"))


#: a prompt whose estimate (about four bytes of JSON a token) covers what the fake reports
LONG_PROMPT = [{"role": "user", "content": "x" * 40}]
PROMPT_HELD = prompt_estimate(LONG_PROMPT)  # 18 >= PROMPT_TOKENS
SPENT = PROMPT_TOKENS + COMPLETION_TOKENS  # 15: what every call of the fake costs


def _clear_of_midnight() -> None:
    """A day's token window must not roll over mid-test (bounded: at most two minutes)."""
    if DAY - time.time() % DAY < 120:
        time.sleep(DAY - time.time() % DAY + 0.1)


def _chat(gw: str, key: str, max_tokens: int, **extra: Any) -> httpx.Response:
    body = {"model": CHAT_MODEL, "messages": LONG_PROMPT, "max_tokens": max_tokens, **extra}
    return httpx.post(f"{gw}/v1/chat/completions", json=body, headers=bearer(key), timeout=30)


def _assert_quota_refusal(refused: httpx.Response, limit: int) -> None:
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "token_quota_exceeded"
    to_midnight = DAY - int(time.time() % DAY)
    assert abs(int(refused.headers["Retry-After"]) - to_midnight) <= 5
    assert refused.headers["RateLimit-Limit"] == str(limit)


def test_a_token_quota_stops_the_first_call_that_would_exceed_it_and_survives_a_restart(
    inference_stack: InferenceStack,
) -> None:
    gw, fake = inference_stack.gateway, inference_stack.fake
    key = inference_stack.key("infa", "ann", INVOKER, "--tokens-per-day", "40")[0]
    held = PROMPT_HELD + COMPLETION_TOKENS  # 22 held per call, 15 spent
    _clear_of_midnight()
    before = len(fake.calls)
    # 0 -> 15 -> 30: the third call's 22 would not fit in the 10 left, so it never starts
    # (tokens spent so far, 30, are still under 40: a check after the fact would admit it)
    assert [_chat(gw, key, COMPLETION_TOKENS).status_code for _ in range(2)] == [200, 200]
    assert 2 * SPENT + held > 40 > 2 * SPENT
    _assert_quota_refusal(_chat(gw, key, COMPLETION_TOKENS), 40)
    assert len(fake.calls) == before + 2  # the refused call never reached the upstream

    inference_stack.restart_plugin()
    again = _chat(gw, key, COMPLETION_TOKENS)
    assert again.status_code == 429 and again.json()["error"]["code"] == "token_quota_exceeded"
    assert len(fake.calls) == before + 2
    # other keys of the same user are not affected (the quota is this key's)
    other = inference_stack.key("infa", "ann", INVOKER)[0]
    assert _chat(gw, other, COMPLETION_TOKENS).status_code == 200


def test_a_call_whose_max_tokens_alone_exceeds_the_remainder_is_refused_before_the_upstream(
    inference_stack: InferenceStack,
) -> None:
    gw, fake = inference_stack.gateway, inference_stack.fake
    key = inference_stack.key("infa", "ann", INVOKER, "--tokens-per-day", "100")[0]
    _clear_of_midnight()
    before = len(fake.calls)
    _assert_quota_refusal(_chat(gw, key, 101), 100)
    # a call that names no max_tokens is held at the default cap (1024): refused too
    body = {"model": CHAT_MODEL, "messages": LONG_PROMPT}
    default = httpx.post(f"{gw}/v1/chat/completions", json=body, headers=bearer(key))
    _assert_quota_refusal(default, 100)
    assert len(fake.calls) == before  # the fake recorded no call
    # a failed call hands its reservation back: 60 held twice would not fit in 100
    for _ in range(2):
        failed = httpx.post(
            f"{gw}/v1/chat/completions",
            json={"model": REFUSING_MODEL, "messages": LONG_PROMPT, "max_tokens": 60},
            headers=bearer(key),
        )
        assert failed.status_code == 400, failed.text
    assert _chat(gw, key, 100 - PROMPT_HELD).status_code == 200  # all 100 still there


def test_a_stream_settles_once_from_its_usage_chunk_and_refunds_the_rest(
    inference_stack: InferenceStack,
) -> None:
    gw, fake = inference_stack.gateway, inference_stack.fake
    key = inference_stack.key("infa", "ann", INVOKER, "--tokens-per-day", "100")[0]
    _clear_of_midnight()
    fake.release.set()
    with httpx.stream(
        "POST",
        f"{gw}/v1/chat/completions",
        json={"model": CHAT_MODEL, "messages": LONG_PROMPT, "max_tokens": 50, "stream": True},
        headers=bearer(key),
        timeout=30,
    ) as reply:
        assert reply.status_code == 200
        assert list(events(reply.iter_lines()))[-1] == "[DONE]"
    # 68 were held; the usage chunk says 15: 85 are left, exactly (not 100 - 68 = 32, not
    # 70 for a double charge, not 78 for the cut-off estimate of prompt + chunks)
    before = len(fake.calls)

    def left_exactly(n: int) -> bool:
        over = _chat(gw, key, n + 1 - PROMPT_HELD)
        return over.status_code == 429 and len(fake.calls) == before

    assert wait_for(lambda: left_exactly(100 - SPENT), timeout=10)
    assert _chat(gw, key, 100 - SPENT - PROMPT_HELD).status_code == 200  # fits exactly


def test_two_concurrent_calls_that_together_exceed_the_quota_run_one(
    inference_stack: InferenceStack,
) -> None:
    gw, fake = inference_stack.gateway, inference_stack.fake
    key = inference_stack.key("infa", "ann", INVOKER, "--tokens-per-day", "40")[0]
    held = PROMPT_HELD + COMPLETION_TOKENS  # 22 each: one fits in 40, two do not
    _clear_of_midnight()
    fake.release.clear()  # whichever starts holds its stream open until both have answered
    before = len(fake.calls)
    start = threading.Barrier(2)
    statuses: list[int] = []

    def call() -> None:
        body = {"model": CHAT_MODEL, "messages": LONG_PROMPT, "max_tokens": COMPLETION_TOKENS,
                "stream": True}  # fmt: skip
        start.wait(timeout=10)
        with httpx.stream(
            "POST", f"{gw}/v1/chat/completions", json=body, headers=bearer(key), timeout=30
        ) as reply:
            statuses.append(reply.status_code)
            if reply.status_code == 200:  # in flight, its tokens held, until both answered
                wait_for(lambda: len(statuses) == 2, timeout=20)
                fake.release.set()
            reply.read()

    threads = [threading.Thread(target=call) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        fake.release.set()
    assert sorted(statuses) == [200, 429]
    assert len(fake.calls) == before + 1  # exactly one ran
    assert 2 * held > 40 >= held


def test_the_charge_endpoint_is_not_reachable_through_the_gateway(
    inference_stack: InferenceStack, ann: str
) -> None:
    charge = {"principal": {"organization": "infa", "subject": "infa/ann"}, "model": "m"}
    through_nginx = httpx.post(
        f"{inference_stack.gateway}/v1/tokens/charge", json=charge, headers=bearer(ann)
    )
    assert through_nginx.status_code in (403, 404)
    plugin = f"http://127.0.0.1:{inference_stack.info.ports['gateway']}/v1/tokens/charge"
    direct = httpx.post(plugin, json=charge, headers=bearer(ann))
    assert direct.status_code == 401
    assert direct.json()["error"]["code"] == "invalid_charge_token"


def test_metrics_and_readiness_on_the_private_port(inference_stack: InferenceStack) -> None:
    """``/metrics`` counts requests by route and status, each upstream's time and failures,
    and the tokens held and settled per model; ``/readyz`` checks the plugin that holds the
    token counters and the memory service that holds the embedding model."""
    gw = inference_stack.gateway
    private = f"http://{LOOPBACK}:{inference_stack.info.ports['inference']}"
    key = inference_stack.key("infa", "ann", INVOKER, "--tokens-per-day", "100000")[0]
    _clear_of_midnight()
    before = httpx.get(f"{private}/metrics", timeout=10).text
    assert _chat(gw, key, COMPLETION_TOKENS).status_code == 200
    embed = {"model": EMBEDDING_MODEL, "input": "hello world"}
    embedded = httpx.post(f"{gw}/v1/embeddings", json=embed, headers=bearer(key), timeout=30)
    assert embedded.status_code == 200, embedded.text
    refusing = {"model": REFUSING_MODEL, "messages": LONG_PROMPT, "max_tokens": 60}
    refused = httpx.post(f"{gw}/v1/chat/completions", json=refusing, headers=bearer(key))
    assert refused.status_code == 400, refused.text
    scrape = httpx.get(f"{private}/metrics", timeout=10)
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    after = scrape.text

    def grew(name: str, **labels: str) -> float:
        return value(after, f"hanzo_inference_{name}", **labels) - value(
            before, f"hanzo_inference_{name}", **labels
        )

    chat = "/v1/chat/completions"
    assert grew("requests_total", route=chat, status="200") == 1
    assert grew("requests_total", route=chat, status="400") == 1
    assert grew("requests_total", route="/v1/embeddings", status="200") == 1
    assert grew("request_seconds_count", route=chat) == 2
    assert grew("upstream_seconds_count", upstream="fake", path="/chat/completions") == 2
    assert grew("upstream_seconds_count", upstream="memory-embeddings", path="/embeddings") == 1
    assert grew("upstream_errors_total", upstream="fake", code="upstream_error") == 1
    assert grew("upstream_errors_total", upstream="memory-embeddings") == 0
    # held: the estimate; settled: what the upstream reported; the refusal handed back
    assert grew("tokens_reserved_total", model=CHAT_MODEL) == PROMPT_HELD + COMPLETION_TOKENS
    assert grew("tokens_settled_total", model=CHAT_MODEL, kind="prompt") == PROMPT_TOKENS
    assert grew("tokens_settled_total", model=CHAT_MODEL, kind="completion") == COMPLETION_TOKENS
    assert grew("tokens_settled_total", model=EMBEDDING_MODEL, kind="prompt") == 4
    assert grew("reservations_total", model=CHAT_MODEL, outcome="settled") == 1
    assert grew("reservations_total", model=REFUSING_MODEL, outcome="released") == 1
    assert grew("tokens_settled_total", model=REFUSING_MODEL) == 0
    assert key not in after

    ready = httpx.get(f"{private}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "quota": "ok", "upstream:memory-embeddings": "ok"}
    for path in ("/metrics", "/readyz"):  # never through the gateway
        through = httpx.get(gw + path, timeout=10)
        assert through.status_code == 404 and "hanzo_inference" not in through.text, path
