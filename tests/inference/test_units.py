"""The parts of token metering, each with a clock the test drives: the plan's model list,
the limiter's token counters (in-process with SQLite, and Redis), the decision core's
token check, the plugin's charge endpoint, the inference gateway's own refusals, and the
relay's handling of the usage chunk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_plugins.forward_auth import create_app as create_plugin_app
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.limiter.redis_store import RedisLimiter
from gateway_plugins.request import AuthRequest
from hanzo_contract.assertion import INFERENCE_AUDIENCE, AssertionSigner, ensure_keypair
from hanzo_contract.principal import Limits, Principal
from hanzo_contract.tokens import TOKEN_CHARGE_PATH, TokenCharge
from hanzo_stack.process import LOOPBACK, free_port
from hanzo_stack.stack import _toml, parse_chat_upstream
from hanzo_stack.valkey import ValkeyServer
from inference_gateway.app import create_app as create_inference_app
from inference_gateway.errors import InferenceError
from inference_gateway.estimate import chat_estimate
from inference_gateway.relay import UsageWatch
from inference_gateway.settings import InferenceSettings
from tests.support.clock import FakeClock

from .conftest import TOKEN_KEY as KEY

DAY = 86400
CAPPED = Limits(tokens_per_day=100, tokens_per_month=1000)


def test_a_keys_model_list_only_narrows_the_plans() -> None:
    plan = Limits(models=("a", "b"))
    assert plan.tightened_by(Limits(models=("b", "z"))).models == ("b",)
    assert plan.tightened_by(Limits(requests_per_minute=5)).models == ("a", "b")
    assert Limits().tightened_by(Limits(models=("z",))).models == ("z",)
    assert not plan.allows_model("z") and Limits().allows_model("z")


async def test_memory_token_counters_persist_and_reset_by_day(tmp_path: Path) -> None:
    db, clock = tmp_path / "quotas.sqlite3", FakeClock()
    first = MemoryLimiter(db, clock=clock)
    assert (await first.check_tokens(["key:a"], CAPPED)).allowed
    await first.settle_tokens(["key:a"], CAPPED, None, 99)
    assert (await first.check_tokens(["key:a"], CAPPED)).allowed  # 99 < 100
    await first.settle_tokens(["key:a"], CAPPED, None, 5)  # spent: counted past the cap
    await first.aclose()

    second = MemoryLimiter(db, clock=clock)
    refused = await second.check_tokens(["key:a"], CAPPED)
    assert not refused.allowed and refused.limit == 100
    assert 0 < refused.reset <= DAY and refused.headers()["Retry-After"] == str(refused.reset)
    assert (await second.check_tokens(["key:b"], CAPPED)).allowed  # other keys untouched
    clock.advance(DAY)
    assert (await second.check_tokens(["key:a"], CAPPED)).allowed  # a new UTC day
    # the month still holds the 104 of yesterday
    monthly = Limits(tokens_per_month=1000)
    month = await second.check_tokens(["key:a"], monthly)
    assert month.allowed and month.remaining == 896
    await second.settle_tokens(["key:a"], monthly, None, 896)
    spent = await second.check_tokens(["key:a"], monthly)
    assert not spent.allowed and spent.limit == 1000
    await second.aclose()


async def test_uncapped_limits_count_no_tokens(tmp_path: Path) -> None:
    limiter = MemoryLimiter(None, clock=FakeClock())
    await limiter.settle_tokens(["key:a"], Limits(), None, 10**6)
    assert (await limiter.check_tokens(["key:a"], Limits())).allowed
    assert (await limiter.check_tokens(["key:a"], CAPPED)).allowed


async def test_redis_token_counters_are_shared_by_gateways(valkey: ValkeyServer) -> None:
    clock = FakeClock()
    a = RedisLimiter(valkey.url, timeout=5.0, clock=clock)
    b = RedisLimiter(valkey.url, timeout=5.0, clock=clock)
    try:
        await a.settle_tokens(["key:x", "org:o"], CAPPED, None, 60)
        await b.settle_tokens(["key:y", "org:o"], CAPPED, None, 40)
        assert (await a.check_tokens(["key:x"], CAPPED)).allowed
        refused = await b.check_tokens(["key:z", "org:o"], CAPPED)  # the org spent 100
        assert not refused.allowed and refused.limit == 100
        clock.advance(DAY)
        assert (await b.check_tokens(["key:z", "org:o"], CAPPED)).allowed
    finally:
        await a.aclose()
        await b.aclose()


def _request(path: str) -> AuthRequest:
    return AuthRequest("POST", path, {"authorization": f"Bearer {KEY}"}, "127.0.0.1")


async def test_core_refuses_token_routes_once_the_quota_is_used(token_core: Any) -> None:
    c, principal, _ = token_core
    assert (await c.decide(_request("/v1/chat/completions"))).allowed
    await c.charge(
        TokenCharge(principal=principal, model="m", prompt_tokens=6, completion_tokens=4)
    )
    refused = await c.decide(_request("/v1/chat/completions"))
    assert refused.status == 429 and refused.code == "token_quota_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    # a route that spends no tokens is not held by the token quota
    assert (await c.decide(_request("/v1/memory/store"))).allowed


async def test_the_charge_endpoint_takes_only_the_charge_token(token_core: Any) -> None:
    c, principal, _ = token_core
    app = create_plugin_app(c, "charge-secret")
    body = TokenCharge(principal=principal, model="m", prompt_tokens=10).model_dump(mode="json")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://plugin") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "charge-secret"}):
            refused = await client.post(TOKEN_CHARGE_PATH, json=body, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_charge_token"
        assert (await c.decide(_request("/v1/chat/completions"))).allowed  # nothing charged
        good = {"Authorization": "Bearer charge-secret"}
        bad = await client.post(TOKEN_CHARGE_PATH, json={"model": "m"}, headers=good)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_charge"
        ok = await client.post(TOKEN_CHARGE_PATH, json=body, headers=good)
        assert ok.status_code == 202 and ok.json() == {"charged": 10}
    assert (await c.decide(_request("/v1/chat/completions"))).status == 429
    # without a configured token the endpoint takes nothing at all
    off = create_plugin_app(c, "")
    transport = httpx.ASGITransport(app=off)
    async with httpx.AsyncClient(transport=transport, base_url="http://plugin") as client:
        empty = await client.post(
            TOKEN_CHARGE_PATH, json=body, headers={"Authorization": "Bearer "}
        )
        assert empty.status_code == 401


async def test_the_inference_gateway_trusts_only_the_signed_assertion(tmp_path: Path) -> None:
    private, public = ensure_keypair(tmp_path / "keys")
    upstream_calls: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        upstream_calls.append(request)
        return httpx.Response(200, json={"usage": {"prompt_tokens": 1}})

    settings = InferenceSettings(
        upstreams=[{"name": "u", "base_url": "http://u/v1", "models": ["m"]}],
        assertion_public_key=public,
        plugin_url="http://127.0.0.1:9",
    )
    app = create_inference_app(settings, transport=httpx.MockTransport(upstream))
    signer = AssertionSigner(private.read_bytes(), 60)
    body = {"model": "m", "messages": []}
    forged = {"X-User-Id": "acme/ann", "X-Org-Id": "acme", "X-Scopes": "inference:invoke"}
    chat = {"audience": INFERENCE_AUDIENCE, "method": "POST", "path": "/v1/chat/completions"}
    reader = signer.sign(
        Principal(organization="acme", subject="acme/r", scopes=frozenset()), **chat
    )
    other_key, _ = ensure_keypair(tmp_path / "other")
    invoker = Principal(
        organization="acme", subject="acme/x", scopes=frozenset({"inference:invoke"})
    )
    foreign = AssertionSigner(other_key.read_bytes(), 60).sign(invoker, **chat)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inference") as client:
        for headers, status in (
            (forged, 401),
            ({"X-Hanzo-Identity": foreign}, 401),
            ({"X-Hanzo-Identity": reader}, 403),
        ):
            reply = await client.post("/v1/chat/completions", json=body, headers=headers)
            assert reply.status_code == status, reply.text
            assert set(reply.json()) == {"error"}
    assert upstream_calls == []


async def test_usage_chunk_is_charged_once_and_hidden_unless_asked() -> None:
    charged: list[dict[str, Any]] = []

    async def on_usage(usage: dict[str, Any]) -> None:
        charged.append(usage)

    def event(chunk: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    usage_chunk = event({"choices": [], "usage": {"prompt_tokens": 3}})
    content = event({"choices": [{"delta": {"content": "x"}}]})
    hidden = UsageWatch(client_asked=False, on_usage=on_usage)
    assert await hidden.event(content) == content
    assert await hidden.event(usage_chunk) is None
    assert await hidden.event(usage_chunk) is None  # a repeated usage chunk charges nothing
    assert await hidden.event(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"
    shown = UsageWatch(client_asked=True, on_usage=on_usage)
    assert await shown.event(usage_chunk) == usage_chunk
    assert charged == [{"prompt_tokens": 3}, {"prompt_tokens": 3}]


@pytest.mark.parametrize(
    ("upstream_says", "status", "code"),
    [
        (httpx.Response(500, text="<html>oops</html>"), 502, "upstream_error"),
        (
            httpx.Response(401, json={"error": {"message": "bad key"}}),
            502,
            "upstream_error",
        ),
        (httpx.Response(429, json={"error": {"message": "slow down"}}), 429, "upstream_error"),
        (httpx.ConnectError("refused"), 502, "upstream_unavailable"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
    ],
)
async def test_upstream_failures_are_our_error_body(
    tmp_path: Path, upstream_says: httpx.Response | Exception, status: int, code: str
) -> None:
    private, public = ensure_keypair(tmp_path / "keys")

    def upstream(_request: httpx.Request) -> httpx.Response:
        if isinstance(upstream_says, Exception):
            raise upstream_says
        return upstream_says

    settings = InferenceSettings(
        upstreams=[{"name": "u", "base_url": "http://u/v1", "models": ["m"]}],
        assertion_public_key=public,
    )
    app = create_inference_app(settings, transport=httpx.MockTransport(upstream))
    invoker = Principal(
        organization="acme", subject="acme/x", scopes=frozenset({"inference:invoke"})
    )
    assertion = AssertionSigner(private.read_bytes(), 60).sign(
        invoker, audience=INFERENCE_AUDIENCE, method="POST", path="/v1/chat/completions"
    )
    headers = {"X-Hanzo-Identity": assertion}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inference") as client:
        reply = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": []}, headers=headers
        )
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["code"] == code
    assert "<html>" not in reply.text


def test_hanzo_up_chat_upstreams_reach_the_inference_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-test-not-real")
    upstream = parse_chat_upstream("https://models.example/v1=gpt-a,gpt-b@UPSTREAM_KEY")
    config = tmp_path / "hanzo.toml"
    config.write_text(_toml({"inference": {"upstreams": [upstream], "plugin_url": "http://p"}}))
    monkeypatch.setenv("HANZO_CONFIG", str(config))
    settings = InferenceSettings()
    [read] = settings.upstreams
    assert (read.base_url, read.models) == ("https://models.example/v1", ["gpt-a", "gpt-b"])
    assert read.api_key is not None and read.api_key.get_secret_value() == "sk-test-not-real"
    assert "sk-test" not in repr(settings)  # a secret in settings never prints
    monkeypatch.delenv("UPSTREAM_KEY")
    with pytest.raises(ValueError, match="UPSTREAM_KEY"):
        parse_chat_upstream("https://models.example/v1=gpt-a@UPSTREAM_KEY")
    for bad in ("models.example=gpt", "https://models.example/v1", "https://m/v1="):
        with pytest.raises(ValueError, match="BASE_URL=MODEL"):
            parse_chat_upstream(bad)


async def test_a_stream_cut_off_before_its_usage_is_charged_an_estimate() -> None:
    charged: list[dict[str, Any]] = []

    async def on_usage(usage: dict[str, Any]) -> None:
        charged.append(usage)

    def content(text: str) -> bytes:
        chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    cut = UsageWatch(client_asked=False, on_usage=on_usage, prompt_estimate=12)
    for text in ("a", "b"):
        await cut.event(content(text))
    await cut.event(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
    await cut.settle()
    await cut.settle()  # once only
    whole = UsageWatch(client_asked=False, on_usage=on_usage, prompt_estimate=12)
    await whole.event(content("a"))
    await whole.event(b'data: {"choices": [], "usage": {"prompt_tokens": 3}}\n\n')
    await whole.settle()  # the real usage was charged: nothing more
    assert charged == [{"prompt_tokens": 12, "completion_tokens": 2}, {"prompt_tokens": 3}]


def test_the_estimate_holds_the_prompt_and_the_most_the_completion_may_produce() -> None:
    messages = [{"role": "user", "content": "héllo"}]  # non-ASCII: six bytes of JSON
    body: dict[str, Any] = {"messages": messages, "n": 3, "max_tokens": 10}
    held = chat_estimate(body, default_max_tokens=1024)
    assert held.prompt == len(json.dumps(messages)) // 4 and held.completion == 30
    both = chat_estimate({"max_tokens": 5, "max_completion_tokens": 50}, 1024)
    assert both.completion == 50  # the larger cap: an over-estimate is refunded, not lost
    unnamed: dict[str, Any] = {"messages": []}
    assert chat_estimate(unnamed, 256).completion == 256
    assert unnamed["max_tokens"] == 256  # sent upstream, so the estimate holds
    for bad in ({"max_tokens": "9"}, {"max_tokens": -1}, {"n": 0}, {"max_tokens": True}):
        with pytest.raises(InferenceError) as refused:
            chat_estimate(dict(bad), 1024)
        assert refused.value.status == 400 and refused.value.code.startswith("invalid_")


async def test_readyz_names_each_dependency_that_is_down_in_the_shared_error_body(
    tmp_path: Path,
) -> None:
    """Nothing listens where the plugin and the embeddings upstream should be (real
    refused connections): 503, ``not_ready``, each check saying why, the request id."""
    _, public = ensure_keypair(tmp_path / "keys")
    gone = f"http://{LOOPBACK}:{free_port()}"
    settings = InferenceSettings(
        upstreams=[
            {"name": "emb", "base_url": f"{gone}/v1", "models": ["e"], "ready_url": gone},
            {"name": "chat", "base_url": f"{gone}/v1", "models": ["c"]},  # names no check
        ],
        assertion_public_key=public,
        plugin_url=gone,
    )
    app = create_inference_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inference") as client:
        reply = await client.get("/readyz", headers={"X-Request-Id": "ready-inf-1"})
    assert reply.status_code == 503
    assert reply.json() == {
        "error": {
            "code": "not_ready",
            "message": "a dependency of the inference gateway is not ready",
            "details": {
                "quota": "unreachable: ConnectError",
                "upstream:emb": "unreachable: ConnectError",
            },
            "request_id": "ready-inf-1",
        }
    }
