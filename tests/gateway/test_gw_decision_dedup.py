"""A decision nginx retries at the other plugin is counted once; a client's own id never
spares it a count.

On both limiter stores (in-process, and the Redis limiter on a real three-primary Valkey
cluster), then through real nginx: a named fake, ``CountThenDrop``, stands in for a plugin
that counted a request and died before answering (it forwards the decision to the real
plugin, which counts it, and closes nginx's connection without the answer), so nginx asks
the real plugin again with the same id."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway_plugins.limiter.base import DEDUP_SECONDS, dedup_key
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.limiter.redis_store import RedisLimiter
from hanzo_contract.headers import DECISION_ID
from hanzo_contract.principal import Limits
from hanzo_stack.gateway_install import nginx as nginx_install
from hanzo_stack.gateway_install.layout import one_upstream
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, tcp_open
from hanzo_stack.servers import ForwardAuthServer
from hanzo_stack.valkey import ValkeyCluster
from tests.support.clock import FakeClock, wait_for_window_room

KEY = "key:acme/dedup"


@pytest.fixture(params=["memory", "cluster"])
async def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator:
    if request.param == "memory":
        store = MemoryLimiter(None, clock=clock)
    else:
        cluster: ValkeyCluster = request.getfixturevalue("valkey_cluster")
        store = RedisLimiter(cluster.url, timeout=5.0, clock=clock, cluster=True)
    try:
        yield store
    finally:
        await store.aclose()


async def test_the_same_decision_id_counts_once(limiter, clock: FakeClock) -> None:
    bucket = f"{KEY}-{clock.now}-{id(limiter)}"
    limits = Limits(requests_per_minute=2)
    first = await limiter.hit([bucket], limits, request_id="nginx-made-1")
    again = await limiter.hit([bucket], limits, request_id="nginx-made-1")
    assert first.allowed and again.allowed
    assert again.remaining == first.remaining == 1  # the first answer, not a second count
    assert (await limiter.hit([bucket], limits, request_id="nginx-made-2")).allowed
    denied = await limiter.hit([bucket], limits, request_id="nginx-made-3")
    assert not denied.allowed and denied.code == "rate_limited"
    # a denial is not remembered: nothing was counted, so its retry is decided afresh
    assert not (await limiter.hit([bucket], limits, request_id="nginx-made-3")).allowed


async def test_an_id_counts_once_per_credential_only(limiter, clock: FakeClock) -> None:
    """The id is remembered with the credential's bucket: another credential's decision
    with the same id is its own and is counted."""
    limits = Limits(requests_per_minute=1)
    one, two = f"{KEY}-a-{id(limiter)}", f"{KEY}-b-{id(limiter)}"
    assert (await limiter.hit([one], limits, request_id="shared-id")).allowed
    assert (await limiter.hit([two], limits, request_id="shared-id")).allowed
    assert not (await limiter.hit([two], limits, request_id="other-id")).allowed


async def test_without_an_id_every_call_counts(limiter, clock: FakeClock) -> None:
    bucket = f"{KEY}-noid-{id(limiter)}"
    limits = Limits(requests_per_minute=2)
    results = [await limiter.hit([bucket], limits) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]


async def test_an_id_is_forgotten_after_its_time(clock: FakeClock) -> None:
    """The in-process store, on the clock it is handed (Redis expires the key itself)."""
    limiter = MemoryLimiter(None, clock=clock)
    limits = Limits(units_per_day=5)
    assert (await limiter.hit([KEY], limits, request_id="late")).remaining == 4
    clock.advance(DEDUP_SECONDS + 1)
    assert (await limiter.hit([KEY], limits, request_id="late")).remaining == 3


async def test_the_record_of_ids_costs_the_collector_nothing_and_expires_as_it_goes(
    clock: FakeClock,
) -> None:
    """Thousands of decisions a second are remembered for DEDUP_SECONDS: as objects the
    garbage collector tracks, each full collection walked them all (the gateway's p99 went
    from 2 to 35 ms under wrk). Kept as plain tuples it stops tracking them; the old ones
    go as new ones come, not in a pass over the whole record."""
    limiter = MemoryLimiter(None, clock=clock)
    limits = Limits(requests_per_minute=1_000_000)
    first = [await limiter.hit([KEY], limits, request_id=f"id-{i}") for i in range(500)]
    for _ in range(3):  # a pass untracks a tuple once what it holds is untracked
        gc.collect()
    assert not any(gc.is_tracked(entry) for entry in limiter._seen.values())
    again = await limiter.hit([KEY], limits, request_id="id-7")  # the same answer back
    assert again == first[7]
    clock.advance(DEDUP_SECONDS + 1)
    await limiter.hit([KEY], limits, request_id="late")
    assert list(limiter._seen) == [dedup_key([KEY], "late")]


# ---- through real nginx -----------------------------------------------------------------


class CountThenDrop:
    """A named fake of a plugin that counted a decision, then died: each auth subrequest
    is sent on to the real plugin (which counts it) and nginx's connection is closed with
    no answer, so nginx asks its next server. Records the decision ids it saw."""

    def __init__(self, plugin_port: int) -> None:
        self.plugin_port = plugin_port
        self.port = free_port()
        self.decision_ids: list[str] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CountThenDrop:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")  # the subrequest has no body
            found = re.search(rb"(?im)^x-hanzo-decision-id: *([^\r\n]*)", head)
            self.decision_ids.append(found.group(1).decode() if found else "")
            upstream_reader, upstream = await asyncio.open_connection(LOOPBACK, self.plugin_port)
            # one request on its own connection: the plugin answers and closes
            upstream.write(head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
            await upstream.drain()
            await upstream_reader.read()  # the decision is made (and counted)
            upstream.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()  # nginx gets no answer: "upstream prematurely closed"


@pytest.fixture
def cluster_limiter_env(valkey_cluster: ValkeyCluster) -> dict[str, str]:
    return {
        "HANZO_GATEWAY_LIMITER_BACKEND": "redis",
        "HANZO_GATEWAY_REDIS_URL": valkey_cluster.url,
        "HANZO_GATEWAY_REDIS_CLUSTER": "true",
    }


@contextlib.contextmanager
def nginx_in_front(workdir: Path, auth_servers: str, upstream: str) -> Iterator[str]:
    """The shipped nginx config, its ``hanzo_auth`` upstream's servers as given."""
    workdir.mkdir(parents=True)
    port = free_port()
    layout = one_upstream(f"{LOOPBACK}:{port}", f"{LOOPBACK}:1", upstream)
    files = nginx_install.render(layout, workdir, 1, "")
    conf = files["nginx.conf"]
    assert f"server {LOOPBACK}:1;" in conf
    files["nginx.conf"] = conf.replace(f"server {LOOPBACK}:1;", f"server {auth_servers};", 1)
    for name, text in files.items():
        (workdir / name).write_text(text)
    argv = ["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf")]
    process = ManagedProcess("nginx", argv, log_path=workdir / "stdout.log")
    process.start().wait_ready(lambda: tcp_open(port), 15)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        process.stop()


@pytest.mark.parametrize("store", ["memory", "cluster"])
async def test_a_decision_nginx_retries_at_the_other_plugin_is_counted_once(
    store: str, stack, make_gateway_env, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    extra = request.getfixturevalue("cluster_limiter_env") if store == "cluster" else {}
    env = make_gateway_env(stack.sidecar, tmp_path / "plugin", **extra)
    plugin = ForwardAuthServer(tmp_path / "plugin", env).start()
    key, _ = await stack.mint(limits=Limits(requests_per_minute=3))
    try:
        async with CountThenDrop(plugin.port) as dropper:
            # every decision goes to the dropper first (never rested: max_fails=0), then,
            # after its closed connection, to the real plugin: the second try nginx makes
            servers = f"{LOOPBACK}:{dropper.port} max_fails=0; server {plugin.addr} backup"
            with nginx_in_front(tmp_path / "nginx", servers, stack.upstream.addr) as front:
                await wait_for_window_room(20)
                async with httpx.AsyncClient(base_url=front, timeout=10) as http:
                    # a client repeating its own ids gains nothing from them
                    sent = {"X-API-Key": key, "X-Request-Id": "fixed", DECISION_ID: "fixed"}
                    codes = [
                        (await http.get("/v1/memory/retrieve", headers=sent)).status_code
                        for _ in range(4)
                    ]
        # each request counted once though each was decided twice: 3 a minute, then 429
        assert codes == [200, 200, 200, 429], codes
        # nginx made each id itself, one per request, and not the client's
        assert len(dropper.decision_ids) == 4
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in dropper.decision_ids)
        assert len(set(dropper.decision_ids)) == 4
    finally:
        plugin.stop()


async def test_a_client_repeating_ids_through_nginx_is_counted_every_time(stack) -> None:
    """The shipped config straight to the plugin: the client sends the same X-Request-Id
    and X-Hanzo-Decision-Id on every call, and every call is counted."""
    key, _ = await stack.mint(limits=Limits(requests_per_minute=2))
    await wait_for_window_room(20)
    sent = {"X-API-Key": key, "X-Request-Id": "replayed", DECISION_ID: "d" * 32}
    async with httpx.AsyncClient(base_url=stack.nginx.url, timeout=10) as http:
        codes = [
            (await http.get("/v1/memory/retrieve", headers=sent)).status_code for _ in range(3)
        ]
    assert codes == [200, 200, 429], codes
