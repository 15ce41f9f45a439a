"""Token reservations in both limiter stores, with the clock the test drives: an estimate
is held only if it fits every counter, settled to what the call spent, handed back when
never settled; atomic across two clients of one Valkey; kept across a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_plugins.forward_auth import create_app as create_plugin_app
from gateway_plugins.limiter.base import Limiter
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.limiter.redis_store import RedisLimiter
from hanzo_contract.principal import Limits
from hanzo_contract.tokens import TOKEN_CHARGE_PATH, TOKEN_RESERVE_PATH
from hanzo_stack.valkey import ValkeyServer
from tests.support.clock import FakeClock

DAY_CAP = Limits(tokens_per_day=100, tokens_per_month=1000)
KEY = ["key:acme/k1"]
TTL = 60.0

MakeLimiter = Callable[[FakeClock], Limiter]


@pytest.fixture(params=["memory", "redis"])
async def make(
    request: pytest.FixtureRequest, tmp_path: Path, valkey: ValkeyServer
) -> AsyncIterator[MakeLimiter]:
    made: list[Limiter] = []
    prefix = f"t{id(request)}:"  # one key space per test: the Valkey is shared

    def build(clock: FakeClock) -> Limiter:
        limiter: Limiter
        if request.param == "memory":
            limiter = MemoryLimiter(tmp_path / "quota.db", clock=clock)
        else:
            limiter = RedisLimiter(valkey.url, timeout=5.0, prefix=prefix, clock=clock)
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.aclose()


async def remaining(limiter: Limiter, buckets: list[str] = KEY) -> int | None:
    return (await limiter.check_tokens(buckets, DAY_CAP)).remaining


async def test_a_reservation_is_held_only_if_it_fits(make: MakeLimiter) -> None:
    limiter = make(FakeClock())
    held, first = await limiter.reserve_tokens(KEY, DAY_CAP, 60, TTL)
    assert held.allowed and first is not None
    refused, none = await limiter.reserve_tokens(KEY, DAY_CAP, 41, TTL)  # 60 + 41 > 100
    assert not refused.allowed and none is None
    assert refused.code == "token_quota" and refused.limit == 100
    assert 0 < refused.reset <= 86400 and refused.headers()["Retry-After"] == str(refused.reset)
    assert await remaining(limiter) == 40  # the refused one held nothing
    exact, second = await limiter.reserve_tokens(KEY, DAY_CAP, 40, TTL)  # fits exactly
    assert exact.allowed and second not in (None, first)
    assert not (await limiter.check_tokens(KEY, DAY_CAP)).allowed  # all held: nothing starts


async def test_settling_refunds_the_difference_or_adds_the_excess(make: MakeLimiter) -> None:
    limiter = make(FakeClock())
    _, reservation = await limiter.reserve_tokens(KEY, DAY_CAP, 80, TTL)
    await limiter.settle_tokens(KEY, DAY_CAP, reservation, 15)
    assert await remaining(limiter) == 85  # N - actual
    _, bigger = await limiter.reserve_tokens(KEY, DAY_CAP, 10, TTL)
    await limiter.settle_tokens(KEY, DAY_CAP, bigger, 25)  # spent more than held: counted
    assert await remaining(limiter) == 60
    _, nothing = await limiter.reserve_tokens(KEY, DAY_CAP, 50, TTL)
    await limiter.settle_tokens(KEY, DAY_CAP, nothing, 0)  # released whole
    assert await remaining(limiter) == 60
    month = await limiter.check_tokens(KEY, Limits(tokens_per_month=1000))
    assert month.remaining == 1000 - 40  # both windows settled alike


async def test_a_reservation_never_settled_expires(make: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make(clock)
    _, crashed = await limiter.reserve_tokens(KEY, DAY_CAP, 90, TTL)
    clock.advance(TTL - 1)
    assert not (await limiter.reserve_tokens(KEY, DAY_CAP, 20, TTL))[0].allowed
    clock.advance(2)  # past its TTL: what it held is handed back
    assert await remaining(limiter) == 100
    later, _ = await limiter.reserve_tokens(KEY, DAY_CAP, 20, TTL)
    assert later.allowed
    # a settlement that arrives after the expiry still counts what was spent, once
    await limiter.settle_tokens(KEY, DAY_CAP, crashed, 15)
    assert await remaining(limiter) == 100 - 20 - 15


async def test_the_organizations_bucket_is_held_at_its_plan(make: MakeLimiter) -> None:
    limiter = make(FakeClock())
    buckets = ["key:acme/k1", "org:acme"]
    plan = {"org:acme": Limits(tokens_per_day=50)}
    roomy = Limits(tokens_per_day=1000)
    refused, _ = await limiter.reserve_tokens(buckets, roomy, 60, TTL, plan)
    assert not refused.allowed and refused.policy == "org-tokens-day"
    held, reservation = await limiter.reserve_tokens(buckets, roomy, 50, TTL, plan)
    assert held.allowed and reservation
    other_key = ["key:acme/k2", "org:acme"]  # another key of the organization: no room left
    assert not (await limiter.reserve_tokens(other_key, roomy, 1, TTL, plan))[0].allowed
    await limiter.settle_tokens(buckets, roomy, reservation, 10, plan)
    assert (await limiter.reserve_tokens(other_key, roomy, 40, TTL, plan))[0].allowed


async def test_reservations_are_atomic_across_two_clients(make: MakeLimiter) -> None:
    clock = FakeClock()
    a, b = make(clock), make(clock)  # two plugin processes' stores (one Valkey for redis)
    shared = a if isinstance(a, MemoryLimiter) else b
    attempts = [
        (a if i % 2 else shared).reserve_tokens(["key:acme/k1", "org:acme"], DAY_CAP, 7, TTL)
        for i in range(40)
    ]
    results = await asyncio.gather(*attempts)
    granted = [r for r, rid in results if rid is not None]
    assert len(granted) == 100 // 7  # 14 fit, never a 15th
    assert all(not r.allowed for r, rid in results if rid is None)


async def test_memory_reservations_survive_a_restart(tmp_path: Path) -> None:
    clock, db = FakeClock(), tmp_path / "quota.db"
    first = MemoryLimiter(db, clock=clock)
    _, settled_later = await first.reserve_tokens(KEY, DAY_CAP, 50, TTL)
    _, abandoned = await first.reserve_tokens(KEY, DAY_CAP, 30, TTL)
    await first.aclose()
    second = MemoryLimiter(db, clock=clock)
    assert not (await second.reserve_tokens(KEY, DAY_CAP, 21, TTL))[0].allowed
    await second.settle_tokens(KEY, DAY_CAP, settled_later, 5)  # settled after the restart
    assert await remaining(second) == 100 - 5 - 30
    clock.advance(TTL + 1)
    assert await remaining(second) == 95  # the abandoned one expired after the restart
    await second.aclose()
    third = MemoryLimiter(db, clock=clock)
    assert await remaining(third) == 95 and abandoned
    await third.aclose()


async def test_the_reserve_endpoint_refuses_with_the_quotas_reset(token_core: Any) -> None:
    core, principal, clock = token_core  # 10 tokens a day
    app = create_plugin_app(core, "charge-secret")
    who = principal.model_dump(mode="json")
    good = {"Authorization": "Bearer charge-secret"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://plugin") as client:
        body = {"principal": who, "model": "m", "tokens": 7}
        unauthenticated = await client.post(TOKEN_RESERVE_PATH, json=body)
        assert unauthenticated.status_code == 401
        held = await client.post(TOKEN_RESERVE_PATH, json=body, headers=good)
        assert held.status_code == 200, held.text
        reservation = held.json()["reservation"]
        assert held.json()["tokens"] == 7 and held.headers["RateLimit-Remaining"] == "3"
        refused = await client.post(TOKEN_RESERVE_PATH, json=body, headers=good)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "token_quota_exceeded"
        assert 0 < int(refused.headers["Retry-After"]) <= 86400
        settle = {"principal": who, "model": "m", "prompt_tokens": 1, "completion_tokens": 1,
                  "reservation": reservation}  # fmt: skip
        settled = await client.post(TOKEN_CHARGE_PATH, json=settle, headers=good)
        assert settled.status_code == 202
        again = await client.post(TOKEN_RESERVE_PATH, json=body, headers=good)
        assert again.status_code == 200 and again.headers["RateLimit-Remaining"] == "1"
        bad = await client.post(
            TOKEN_CHARGE_PATH, json={**settle, "reservation": "x y"}, headers=good
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_charge"
        # the plugin's reservation TTL (60 s here) hands an abandoned one back
        clock.advance(61)
        fresh = await client.post(TOKEN_RESERVE_PATH, json=body, headers=good)
        assert fresh.status_code == 200 and fresh.headers["RateLimit-Remaining"] == "1"
