"""The Redis limiter on a real three-primary Valkey cluster.

Sliding window at the minute's edge (driven clock), every key of a decision in one slot and
one script call per decision, exact counts and bounded overshoot through two plugin
processes, and each route's fail mode with the cluster down, counted in metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import ValidationError

from gateway_plugins.limiter import LimiterUnavailable
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.limiter.redis_store import RedisLimiter, hash_tag
from gateway_plugins.routes import RouteTable
from hanzo_contract.principal import Limits
from hanzo_stack.process import LOOPBACK, free_port
from hanzo_stack.servers import ForwardAuthServer
from hanzo_stack.valkey import CLUSTER_SLOTS, ValkeyCluster
from tests.support.clock import FakeClock, wait_for_window_room

#: 2027-01-15 08:00:59 UTC: the last second of a minute
LAST_SECOND = 1_800_000_059.0


def _nodes(cluster: ValkeyCluster) -> list[redis.Redis]:
    return [redis.Redis(host=LOOPBACK, port=n.port, socket_timeout=5) for n in cluster.nodes]


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    """A cluster this test may stop."""
    cluster = ValkeyCluster(tmp_path / "cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def _admitted(limiter: object, bucket: str, limits: Limits, tries: int) -> int:
    hits = [await limiter.hit([bucket], limits) for _ in range(tries)]  # type: ignore[attr-defined]
    return sum(r.allowed for r in hits)


async def test_sliding_window_admits_no_second_budget_at_the_minute_edge(
    valkey_cluster: ValkeyCluster,
) -> None:
    limits = Limits(requests_per_minute=10)
    clock = FakeClock(LAST_SECOND)
    fixed = MemoryLimiter(None, clock=clock)  # the fixed window, for contrast
    sliding = RedisLimiter(valkey_cluster.url, timeout=5.0, clock=clock, cluster=True)
    try:
        assert await _admitted(fixed, "key:edge/a", limits, 15) == 10
        assert await _admitted(sliding, "key:edge/a", limits, 15) == 10
        clock.advance(1)  # :00 of the next minute
        # a fixed window hands out a second full budget one second later: 20 in 2 s
        assert await _admitted(fixed, "key:edge/a", limits, 15) == 10
        denied = await sliding.hit(["key:edge/a"], limits)
        assert not denied.allowed and denied.code == "rate_limited"
        # Retry-After: 10 * w <= 9 once w <= 0.9, 6 s on (an upper bound: the estimate's
        # rounding down may free the unit sooner)
        assert denied.reset == 6
        assert await _admitted(sliding, "key:edge/a", limits, 15) == 0
        clock.advance(15)  # :15: a quarter of the last minute has slid out
        assert await _admitted(sliding, "key:edge/a", limits, 15) == 3  # 10 - floor(7.5)
        clock.advance(45)  # :00 again: this minute's 3 now weigh in full, the old 10 not
        assert await _admitted(sliding, "key:edge/a", limits, 15) == 7
    finally:
        await sliding.aclose()
        await fixed.aclose()


async def test_a_window_full_of_this_minute_retries_after_it_has_slid_out(
    valkey_cluster: ValkeyCluster,
) -> None:
    clock = FakeClock()  # :30 of a minute
    limiter = RedisLimiter(valkey_cluster.url, timeout=5.0, clock=clock, cluster=True)
    limits = Limits(requests_per_minute=10)
    try:
        assert await _admitted(limiter, "key:retry/a", limits, 10) == 10
        denied = await limiter.hit(["key:retry/a"], limits)
        # 30 s to the minute's end, then 10 * w <= 9 once w <= 0.9: 6 s more
        assert not denied.allowed and denied.reset == 36
        assert denied.headers()["Retry-After"] == "36"
        clock.advance(36)
        assert (await limiter.hit(["key:retry/a"], limits)).allowed
    finally:
        await limiter.aclose()


async def test_every_counter_of_a_decision_is_in_one_slot_and_one_call(
    valkey_cluster: ValkeyCluster,
) -> None:
    limits = Limits(requests_per_minute=100, units_per_day=100, units_per_month=100)
    plan = Limits(requests_per_minute=1000, units_per_day=1000)
    limiter = RedisLimiter(valkey_cluster.url, timeout=5.0, clock=FakeClock(), cluster=True)
    nodes = _nodes(valkey_cluster)
    orgs = [f"slot{i}" for i in range(12)]
    try:
        await limiter.hit(["key:warm/k"], limits)  # loads the script on every primary
        for node in nodes:
            node.config_resetstat()
        for org in orgs:
            buckets = [f"key:{org}/k1", f"org:{org}"]
            result = await limiter.hit(buckets, limits, bucket_limits={f"org:{org}": plan})
            assert result.allowed
        calls = sum(
            n.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0) for n in nodes
        )
        assert calls == len(orgs)  # one round trip per decision, NOSCRIPT retries included
        holders: dict[str, set[int]] = {org: set() for org in orgs}
        for index, node in enumerate(nodes):
            for raw in node.scan_iter(match="hanzo:gw:{slot*", count=1000):
                key = raw.decode()
                org = key.split("{", 1)[1].split("}", 1)[0]
                holders[org].add(index)
                assert key.startswith(f"hanzo:gw:{{{org}}}:")
        # 5 counters (3 key windows, 2 org windows) per org, all on one primary
        assert all(len(h) == 1 for h in holders.values())
        assert len({next(iter(h)) for h in holders.values()}) > 1  # orgs spread over nodes
    finally:
        await limiter.aclose()
        for node in nodes:
            node.close()


async def test_buckets_of_two_organizations_are_counted_per_slot_and_refunded(
    valkey_cluster: ValkeyCluster,
) -> None:
    """Not what the core sends (one principal, one organization), but a correct count when a
    caller mixes organizations: the first slot's count is handed back when the second
    slot denies."""
    assert hash_tag("key:acme/abc") == hash_tag("org:acme") == hash_tag("user:acme/al") == "acme"
    assert hash_tag("org:a{b}") == "a(b)"
    limiter = RedisLimiter(valkey_cluster.url, timeout=5.0, clock=FakeClock(), cluster=True)
    limits = Limits(units_per_day=5)
    try:
        assert (await limiter.hit(["org:mixb"], limits, cost=5)).allowed
        refused = await limiter.hit(["org:mixa", "org:mixb"], limits)
        assert not refused.allowed and refused.code == "quota_exceeded"
        # org:mixa was counted then refunded: its whole budget is still there
        assert (await limiter.hit(["org:mixa"], limits, cost=5)).allowed
    finally:
        await limiter.aclose()


def test_on_limiter_down_is_validated_per_route() -> None:
    table = RouteTable.from_yaml(
        "routes:\n"
        "  - {methods: [GET], path: /a, permission: memory:read, on_limiter_down: local}\n"
        "  - {methods: [GET], path: /b, permission: memory:read}\n"
    )
    assert table.match("GET", "/a").on_limiter_down == "local"  # type: ignore[union-attr]
    assert table.match("GET", "/b").on_limiter_down is None  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="on_limiter_down"):
        RouteTable.from_yaml(
            "routes:\n  - {methods: [GET], path: /a, permission: null, on_limiter_down: maybe}\n"
        )


def _auth(key: str, path: str = "/v1/memory/retrieve", method: str = "GET") -> dict[str, str]:
    return {"X-Forwarded-Method": method, "X-Forwarded-Uri": path, "X-API-Key": key}


#: burst size per limit: three times the limit, split over both plugin processes
BURST_FACTOR = 3


async def test_two_plugin_processes_share_exact_counts_under_a_concurrent_burst(
    stack, make_gateway_env, valkey_cluster: ValkeyCluster, tmp_path: Path
) -> None:
    common = {
        "HANZO_GATEWAY_LIMITER_BACKEND": "redis",
        "HANZO_GATEWAY_REDIS_URL": valkey_cluster.url,
        "HANZO_GATEWAY_REDIS_CLUSTER": "true",
        "HANZO_GATEWAY_REDIS_TIMEOUT_SECONDS": "5",
        "HANZO_GATEWAY_LIMITER_FAIL_MODE": "closed",  # a store error must not pass as room
    }
    servers = [
        ForwardAuthServer(tmp_path, make_gateway_env(stack.sidecar, tmp_path / n, **common))
        for n in ("a", "b")
    ]
    try:
        for server in servers:
            server.start()
        per_minute, _ = await stack.mint(limits=Limits(requests_per_minute=40))
        per_day, _ = await stack.mint(limits=Limits(units_per_day=30))
        await wait_for_window_room(40)  # one UTC minute for the whole burst
        limits = {per_minute: 40, per_day: 30}
        async with httpx.AsyncClient(timeout=30) as http:
            for key, limit in limits.items():
                burst = [
                    http.get(servers[i % 2].url + "/auth", headers=_auth(key))
                    for i in range(limit * BURST_FACTOR)
                ]
                statuses = [r.status_code for r in await asyncio.gather(*burst)]
                allowed = statuses.count(200)
                overshoot = (allowed - limit) / limit
                print(f"limit {limit}: {allowed} admitted, overshoot {overshoot:.1%}")
                assert set(statuses) <= {200, 429}
                assert overshoot <= 0.05
                assert allowed == limit  # one atomic script per decision: exact
    finally:
        for server in servers:
            server.stop()


async def test_each_route_holds_its_fail_mode_with_the_cluster_down(
    stack, make_gateway_env, own_cluster: ValkeyCluster, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "routes:\n"
        "  - {methods: [GET], path: /open, permission: memory:read, on_limiter_down: open}\n"
        "  - {methods: [GET], path: /closed, permission: memory:read, on_limiter_down: closed}\n"
        "  - {methods: [GET], path: /local, permission: memory:read, on_limiter_down: local}\n"
        "  - {methods: [GET], path: /default, permission: memory:read}\n"
    )
    env = make_gateway_env(
        stack.sidecar,
        tmp_path / "gw",
        HANZO_GATEWAY_LIMITER_BACKEND="redis",
        HANZO_GATEWAY_REDIS_URL=own_cluster.url,
        HANZO_GATEWAY_REDIS_CLUSTER="true",
        HANZO_GATEWAY_REDIS_TIMEOUT_SECONDS="0.5",
        HANZO_GATEWAY_LIMITER_FAIL_MODE="closed",
        HANZO_GATEWAY_LIMITER_LOCAL_SHARE="0.5",
        HANZO_GATEWAY_ROUTES_FILE=str(routes),
    )
    gateway = ForwardAuthServer(tmp_path, env).start()
    try:
        key, _ = await stack.mint(limits=Limits(requests_per_minute=4))
        await wait_for_window_room(30)
        async with httpx.AsyncClient(timeout=10) as http:

            async def status(path: str) -> httpx.Response:
                return await http.get(gateway.url + "/auth", headers=_auth(key, path))

            assert (await status("/closed")).status_code == 200  # the cluster counts
            own_cluster.stop()
            assert [(await status("/open")).status_code for _ in range(3)] == [200] * 3
            for path in ("/closed", "/default"):
                r = await status(path)
                assert r.status_code == 503, path
                assert r.json()["error"]["code"] == "limiter_unavailable"
            # local: this process alone admits half the limit (local_share 0.5), then 429
            local = [await status("/local") for _ in range(3)]
            assert [r.status_code for r in local] == [200, 200, 429]
            assert local[2].json()["error"]["code"] == "rate_limited"
            metrics = (await http.get(gateway.url + "/metrics")).text
        for mode, count in (("open", 3), ("closed", 2), ("local", 3)):
            assert f'hanzo_gateway_limiter_errors_total{{fail_mode="{mode}"}} {count}.0' in metrics
    finally:
        gateway.stop()


async def _until_marked_failed(node: redis.Redis, port: int, limit: float = 20.0) -> None:
    """Wait (bounded) until the surviving primaries have agreed that ``port`` failed: only
    then would a cluster that requires full coverage stop serving every slot."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        nodes = node.execute_command("CLUSTER", "NODES")
        text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
        line = next(x for x in text.splitlines() if f":{port}@" in x)
        if " fail " in f" {line.split()[2].replace(',', ' ')} ":
            return
        assert asyncio.get_running_loop().time() < deadline, line
        await asyncio.sleep(0.2)


async def test_a_lost_primary_fails_only_its_own_slots(own_cluster: ValkeyCluster) -> None:
    limiter = RedisLimiter(own_cluster.url, timeout=1.0, clock=FakeClock(), cluster=True)
    limits = Limits(units_per_day=3)
    seed = _nodes(own_cluster)[0]
    try:
        lost = own_cluster.nodes[2]
        by_node: dict[bool, list[str]] = {True: [], False: []}
        for i in range(40):
            org = f"lose{i}"
            slot = int(seed.execute_command("CLUSTER", "KEYSLOT", f"{{{org}}}"))
            # ValkeyCluster gives the last third of the slots to its third node
            by_node[slot >= 2 * (CLUSTER_SLOTS // 3)].append(org)
        assert by_node[True] and by_node[False]
        for org in by_node[True][:3] + by_node[False][:3]:
            assert (await limiter.hit([f"org:{org}"], limits)).allowed
        lost.stop()
        await _until_marked_failed(seed, lost.port)
        for org in by_node[False][:3]:  # live primaries keep exact counts
            assert (await limiter.hit([f"org:{org}"], limits, cost=2)).allowed
            refused = await limiter.hit([f"org:{org}"], limits)
            assert not refused.allowed and refused.code == "quota_exceeded"
        for org in by_node[True][:3]:
            with pytest.raises(LimiterUnavailable):
                await limiter.hit([f"org:{org}"], limits)
    finally:
        await limiter.aclose()
        seed.close()


async def test_a_cluster_unreachable_from_the_start_raises_quickly() -> None:
    limiter = RedisLimiter(f"redis://{LOOPBACK}:{free_port()}/0", timeout=0.2, cluster=True)
    try:
        for _ in range(2):  # the failed mapping is retried, and fails as fast again
            started = time.monotonic()
            with pytest.raises(LimiterUnavailable):
                await limiter.hit(["key:down/k"], Limits(requests_per_minute=1))
            assert time.monotonic() - started < 2.0
        with pytest.raises(LimiterUnavailable):
            await limiter.settle_tokens(["key:down/k"], Limits(tokens_per_day=5), None, 3)
        with pytest.raises(LimiterUnavailable):
            await limiter.check_tokens(["key:down/k"], Limits(tokens_per_day=5))
    finally:
        await limiter.aclose()


async def test_token_quotas_are_charged_and_checked_on_the_cluster(
    valkey_cluster: ValkeyCluster,
) -> None:
    limiter = RedisLimiter(valkey_cluster.url, timeout=5.0, clock=FakeClock(), cluster=True)
    limits = Limits(tokens_per_day=100, tokens_per_month=1000)
    buckets = ["key:tok/k", "org:tok"]
    try:
        assert (await limiter.check_tokens(buckets, limits)).allowed
        await limiter.settle_tokens(buckets, limits, None, 60)
        still = await limiter.check_tokens(buckets, limits)
        assert still.allowed and still.remaining == 40
        await limiter.settle_tokens(buckets, limits, None, 40)  # spent already: counted in full
        spent = await limiter.check_tokens(buckets, limits)
        assert not spent.allowed and spent.code == "token_quota"
        assert (await limiter.check_tokens(["key:tok/other"], limits)).allowed
    finally:
        await limiter.aclose()


async def test_token_reservations_are_held_settled_and_expired_on_the_cluster(
    valkey_cluster: ValkeyCluster,
) -> None:
    """Each script touches one slot: the organization's counters and its reservations."""
    clock = FakeClock()
    limiter = RedisLimiter(valkey_cluster.url, timeout=5.0, clock=clock, cluster=True)
    limits = Limits(tokens_per_day=100, tokens_per_month=1000)
    buckets = ["key:resv/k", "org:resv"]
    try:
        held, reservation = await limiter.reserve_tokens(buckets, limits, 80, 60)
        assert held.allowed and reservation
        assert not (await limiter.reserve_tokens(buckets, limits, 21, 60))[0].allowed
        await limiter.settle_tokens(buckets, limits, reservation, 15)
        assert (await limiter.check_tokens(buckets, limits)).remaining == 85
        _, abandoned = await limiter.reserve_tokens(buckets, limits, 85, 60)
        assert abandoned and not (await limiter.check_tokens(buckets, limits)).allowed
        clock.advance(61)  # never settled: handed back by the next script on that slot
        assert (await limiter.check_tokens(buckets, limits)).remaining == 85
    finally:
        await limiter.aclose()
