"""Limiters against real stores: SQLite-persisted in-process quotas, Valkey shared budgets."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_plugins.limiter import LimiterUnavailable
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.limiter.redis_store import RedisLimiter
from hanzo_contract.principal import Limits
from hanzo_stack.process import LOOPBACK, free_port
from hanzo_stack.servers import ForwardAuthServer
from hanzo_stack.valkey import ValkeyServer
from tests.support.clock import FakeClock, wait_for_window_room


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path / "valkey").start()
    try:
        yield server
    finally:
        server.stop()


async def test_memory_quota_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "quotas.sqlite3"
    limits = Limits(units_per_day=3)
    clock = FakeClock()
    first = MemoryLimiter(db, clock=clock)
    assert [(await first.hit(["key:acme/a"], limits)).allowed for _ in range(2)] == [True, True]
    await first.aclose()

    second = MemoryLimiter(db, clock=clock)
    assert (await second.hit(["key:acme/a"], limits)).allowed
    denied = await second.hit(["key:acme/a"], limits)
    assert not denied.allowed and denied.code == "quota_exceeded"
    assert (await second.hit(["key:acme/b"], limits)).allowed  # other keys untouched
    await second.aclose()


async def _spent_after_restart(db: Path, clock: FakeClock, limits: Limits) -> int:
    """How many units a new limiter on ``db`` finds spent: it is allowed the rest."""
    again = MemoryLimiter(db, clock=clock)
    allowed = 0
    while (await again.hit(["key:acme/a"], limits)).allowed:
        allowed += 1
    await again.aclose()
    return (limits.units_per_day or 0) - allowed


async def test_a_flush_cut_off_at_shutdown_never_writes_over_a_newer_one(tmp_path: Path) -> None:
    """The flusher is cancelled at shutdown while its write runs in a thread; that write
    (3 units) must land before the final flush's (5 units), not after it: else the quota
    restarts with 2 units it already gave away."""
    db, clock, limits = tmp_path / "quotas.sqlite3", FakeClock(), Limits(units_per_day=10)
    limiter = MemoryLimiter(db, clock=clock)
    for _ in range(3):
        await limiter.hit(["key:acme/a"], limits)
    write, entered, gate, done = limiter._write, *(threading.Event() for _ in range(3))

    def held_first(*rows: Any) -> None:  # the first write waits until the test lets it go
        if entered.is_set():
            return write(*rows)
        entered.set()
        gate.wait(10)
        write(*rows)
        done.set()

    limiter._write = held_first  # type: ignore[method-assign]
    cut_off = asyncio.ensure_future(limiter.flush())
    await asyncio.to_thread(entered.wait, 10)
    cut_off.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cut_off
    for _ in range(2):
        await limiter.hit(["key:acme/a"], limits)
    final = asyncio.ensure_future(limiter.aclose())
    await asyncio.sleep(0.05)  # the final flush, had it not waited, would have written now
    gate.set()
    await final
    await asyncio.to_thread(done.wait, 10)  # the cut-off write has landed too
    assert await _spent_after_restart(db, clock, limits) == 5


async def test_counters_a_failed_flush_took_are_written_by_the_next(tmp_path: Path) -> None:
    db, clock, limits = tmp_path / "quotas.sqlite3", FakeClock(), Limits(units_per_day=10)
    limiter = MemoryLimiter(db, clock=clock)
    for _ in range(4):
        await limiter.hit(["key:acme/a"], limits)
    write, failures = limiter._write, [sqlite3.OperationalError("disk I/O error")]

    def fails_once(*rows: Any) -> None:  # a named fault: the disk refuses one write
        if failures:
            raise failures.pop()
        write(*rows)

    limiter._write = fails_once  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        await limiter.flush()
    await limiter.aclose()
    assert await _spent_after_restart(db, clock, limits) == 4


async def test_memory_denied_requests_spend_no_budget(tmp_path: Path) -> None:
    limiter = MemoryLimiter(None, clock=FakeClock())
    both = Limits(requests_per_minute=5, units_per_day=2)
    assert (await limiter.hit(["k"], both)).allowed
    assert (await limiter.hit(["k"], both)).allowed
    for _ in range(3):
        assert not (await limiter.hit(["k"], both)).allowed
    # the per-minute counter only holds the two requests that passed
    result = await limiter.hit(["k"], Limits(requests_per_minute=5))
    assert result.allowed and result.remaining == 2


async def test_memory_org_bucket_is_shared(tmp_path: Path) -> None:
    limiter = MemoryLimiter(None, clock=FakeClock())
    limits = Limits(requests_per_minute=2)
    assert (await limiter.hit(["key:a", "org:acme"], limits)).allowed
    assert (await limiter.hit(["key:b", "org:acme"], limits)).allowed
    assert not (await limiter.hit(["key:c", "org:acme"], limits)).allowed


async def test_redis_budget_is_atomic_across_limiters(valkey: ValkeyServer) -> None:
    # atomicity, not speed, is under test: a generous timeout keeps a busy machine honest
    clock = FakeClock()
    a = RedisLimiter(valkey.url, timeout=5.0, clock=clock)
    b = RedisLimiter(valkey.url, timeout=5.0, clock=clock)
    limits = Limits(requests_per_minute=20)
    try:
        results = await asyncio.gather(
            *[(a if i % 2 else b).hit(["key:acme/shared"], limits) for i in range(60)]
        )
    finally:
        await a.aclose()
        await b.aclose()
    assert sum(r.allowed for r in results) == 20
    denied = [r for r in results if not r.allowed]
    assert all(r.code == "rate_limited" and r.reset >= 1 for r in denied)


async def test_redis_unreachable_raises_quickly() -> None:
    limiter = RedisLimiter(f"redis://{LOOPBACK}:{free_port()}/0", timeout=0.2)
    try:
        with pytest.raises(LimiterUnavailable):
            await limiter.hit(["k"], Limits(requests_per_minute=1))
    finally:
        await limiter.aclose()


def _auth_headers(key: str) -> dict[str, str]:
    return {
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": "/v1/memory/retrieve",
        "X-API-Key": key,
    }


async def test_two_plugin_processes_share_one_budget_then_hold_their_fail_mode(
    stack, make_gateway_env, valkey: ValkeyServer, tmp_path: Path
) -> None:
    common = {"HANZO_GATEWAY_LIMITER_BACKEND": "redis", "HANZO_GATEWAY_REDIS_URL": valkey.url}
    env_open = make_gateway_env(
        stack.sidecar, tmp_path / "a", HANZO_GATEWAY_LIMITER_FAIL_MODE="open", **common
    )
    env_closed = make_gateway_env(
        stack.sidecar, tmp_path / "b", HANZO_GATEWAY_LIMITER_FAIL_MODE="closed", **common
    )
    fail_open = ForwardAuthServer(tmp_path, env_open).start()
    # two real processes on the real clock: all ten requests must fall in one UTC minute
    try:
        fail_closed = ForwardAuthServer(tmp_path, env_closed).start()
        try:
            key, _ = await stack.mint(limits=Limits(requests_per_minute=6))
            await wait_for_window_room(20)
            async with httpx.AsyncClient(timeout=10) as http:
                statuses = []
                for i in range(10):
                    server = fail_open if i % 2 else fail_closed
                    r = await http.get(server.url + "/auth", headers=_auth_headers(key))
                    statuses.append(r.status_code)
                assert statuses.count(200) == 6
                assert statuses[6:] == [429] * 4  # both processes see the same spent budget

                valkey.stop()
                fresh, _ = await stack.mint(limits=Limits(requests_per_minute=6))
                r = await http.get(fail_open.url + "/auth", headers=_auth_headers(fresh))
                assert r.status_code == 200
                r = await http.get(fail_closed.url + "/auth", headers=_auth_headers(fresh))
                assert r.status_code == 503
                assert r.json()["error"]["code"] == "limiter_unavailable"
                metrics = (await http.get(fail_open.url + "/metrics")).text
                assert 'hanzo_gateway_limiter_errors_total{fail_mode="open"} 1.0' in metrics
        finally:
            fail_closed.stop()
    finally:
        fail_open.stop()


async def test_quota_survives_a_plugin_process_restart(
    stack, make_gateway_env, tmp_path: Path
) -> None:
    env = make_gateway_env(stack.sidecar, tmp_path / "restart")
    key, _ = await stack.mint(limits=Limits(units_per_day=3))
    await wait_for_window_room(120, window=86400)  # one UTC day for all four requests
    async with httpx.AsyncClient(timeout=10) as http:
        first = ForwardAuthServer(tmp_path, env).start()
        try:
            for _ in range(2):
                r = await http.get(first.url + "/auth", headers=_auth_headers(key))
                assert r.status_code == 200
        finally:
            first.stop()  # SIGTERM: the service flushes its quota counters on shutdown
        second = ForwardAuthServer(tmp_path, env).start()
        try:
            r = await http.get(second.url + "/auth", headers=_auth_headers(key))
            assert r.status_code == 200
            r = await http.get(second.url + "/auth", headers=_auth_headers(key))
            assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
        finally:
            second.stop()


async def test_memory_minute_window_rolls_over_on_the_clock() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(None, clock=clock)
    limits = Limits(requests_per_minute=1)
    assert (await limiter.hit(["k"], limits)).allowed
    clock.advance(29)  # the last second of the same UTC minute
    denied = await limiter.hit(["k"], limits)
    assert not denied.allowed and denied.reset == 1
    clock.advance(1)  # the next minute: a fresh budget
    assert (await limiter.hit(["k"], limits)).allowed


async def test_redis_windows_come_from_the_handed_clock(valkey: ValkeyServer) -> None:
    clock = FakeClock()
    limiter = RedisLimiter(valkey.url, timeout=5.0, clock=clock)
    limits = Limits(requests_per_minute=1)
    try:
        assert (await limiter.hit(["key:acme/c"], limits)).allowed
        assert not (await limiter.hit(["key:acme/c"], limits)).allowed
        clock.advance(30)  # next minute: the sliding window still holds the last 60 seconds
        denied = await limiter.hit(["key:acme/c"], limits)
        assert not denied.allowed and denied.reset == 60
        clock.advance(60)  # only the handed clock moved: a fresh budget
        assert (await limiter.hit(["key:acme/c"], limits)).allowed
    finally:
        await limiter.aclose()
