"""The plugin over two real sidecar processes: one dies (SIGKILL) or hangs (SIGSTOP) and
keys still verify at the other; a refusal is an answer, never passed on; both gone is the
precise 503.

Both sidecars serve one SQLite key store (as the production profile's two serve one
PostgreSQL store), except where a test gives the second its own copy on purpose."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_plugins import metrics
from gateway_plugins.errors import Rejected, Unavailable
from gateway_plugins.sidecar_client import SidecarClient
from gateway_plugins.usage import UsageReporter
from hanzo_contract.principal import Principal
from hanzo_stack.process import LOOPBACK
from hanzo_stack.servers import ForwardAuthServer, SidecarServer
from iam_sidecar.keys.models import NewKey
from iam_sidecar.keys.store import KeyStore
from tests.gateway.test_gw_hostile import json_error
from tests.support.clock import FakeClock
from tests.support.keys import mint_key

BACKOFF = 5.0


def twin(
    first: SidecarServer, workdir: Path, db_path: Path | None = None, port: int | None = None
) -> SidecarServer:
    """A second sidecar with the first one's secrets, on ``db_path`` (default: the same
    store) and ``port`` (default: its own)."""
    second = SidecarServer(workdir, port=port)
    second.db_path = db_path or first.db_path
    second.hash_secret, second.verify_token = first.hash_secret, first.verify_token
    second.env |= {
        "HANZO_SIDECAR_DB_PATH": str(second.db_path),
        "HANZO_SIDECAR_KEY_HASH_SECRET": first.hash_secret,
        "HANZO_SIDECAR_VERIFY_TOKEN": first.verify_token,
    }
    return second.start()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SidecarServer, SidecarServer]]:
    first = SidecarServer(tmp_path / "a").start()
    try:
        second = twin(first, tmp_path / "b")
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        for server in (first, second):
            server.stop()


async def mint(server: SidecarServer, scopes: tuple[str, ...] = ("memory:read",)) -> tuple:
    new = NewKey(
        organization="acme",
        owner="acme/alice",
        name=f"failover-{secrets.token_hex(4)}",
        scopes=list(scopes),
    )
    return await mint_key(server.db_path, server.hash_secret, new, cap=1000)


async def revoke(server: SidecarServer, key_id: str) -> None:
    store = await KeyStore.open(server.db_path, server.hash_secret.encode())
    try:
        await store.revoke("acme", key_id)
    finally:
        await store.close()


def failovers(url: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "hanzo_gateway_sidecar_failovers_total", {"sidecar": url}
    )
    return value or 0.0


def client(*servers: SidecarServer, clock: FakeClock, timeout: float = 2.0) -> SidecarClient:
    urls = [s.url for s in servers]
    return SidecarClient(urls, servers[0].verify_token, timeout, backoff=BACKOFF, clock=clock)


async def test_keys_verify_at_the_second_sidecar_when_the_first_is_killed(pair) -> None:
    first, second = pair
    clock = FakeClock()
    sidecars = client(first, second, clock=clock)
    try:
        key, key_id = await mint(first)
        assert (await sidecars.verify(key)).principal.key_id == key_id
        before = failovers(first.url)
        first.kill()  # SIGKILL: the connection is refused from now on
        assert (await sidecars.verify(key)).principal.key_id == key_id
        assert failovers(first.url) == before + 1
        # resting: the dead one is not asked again (no second failover) until the backoff ends
        assert (await sidecars.verify(key)).principal.key_id == key_id
        assert failovers(first.url) == before + 1
        clock.advance(BACKOFF + 0.1)
        assert (await sidecars.verify(key)).principal.key_id == key_id
        assert failovers(first.url) == before + 2
        assert failovers(second.url) == 0
    finally:
        await sidecars.aclose()


async def test_a_hung_sidecar_times_out_and_the_next_answers(pair) -> None:
    first, second = pair
    sidecars = client(first, second, clock=FakeClock(), timeout=0.5)
    assert first.process is not None and first.process.pid is not None
    try:
        key, key_id = await mint(first)
        os.killpg(first.process.pid, signal.SIGSTOP)  # accepts connections, never answers
        try:
            assert (await sidecars.verify(key)).principal.key_id == key_id
            assert failovers(first.url) == 1
        finally:
            os.killpg(first.process.pid, signal.SIGCONT)
    finally:
        await sidecars.aclose()


async def test_a_revoked_key_is_refused_by_whichever_sidecar_answers(pair) -> None:
    first, second = pair
    sidecars = client(first, second, clock=FakeClock())
    try:
        key, key_id = await mint(first)
        await revoke(first, key_id)
        with pytest.raises(Rejected):
            await sidecars.verify(key)
        first.kill()
        with pytest.raises(Rejected):
            await sidecars.verify(key)
        # and both gone: no answer at all, never a principal
        second.kill()
        with pytest.raises(Unavailable):
            await sidecars.verify(key)
    finally:
        await sidecars.aclose()


async def test_a_refusal_is_an_answer_never_passed_to_the_next_sidecar(tmp_path: Path) -> None:
    """The second sidecar keeps an old copy of the store where the key is still active: a
    client that asked on after the first one's 401 would get it allowed."""
    first = SidecarServer(tmp_path / "a").start()
    second = None
    sidecars = None
    try:
        key, key_id = await mint(first)
        stale = tmp_path / "stale.db"
        with sqlite3.connect(first.db_path) as source, sqlite3.connect(stale) as copy:
            source.backup(copy)
        await revoke(first, key_id)
        second = twin(first, tmp_path / "b", stale)
        sidecars = client(first, second, clock=FakeClock())
        with pytest.raises(Rejected):
            await sidecars.verify(key)
        assert failovers(first.url) == 0
        # the stale one would have said yes: the refusal above came from the first alone
        first.kill()
        assert (await sidecars.verify(key)).principal.key_id == key_id
    finally:
        if sidecars is not None:
            await sidecars.aclose()
        for server in (first, second):
            if server is not None:
                server.stop()


async def test_plugin_process_fails_over_then_answers_503_json_when_both_are_gone(
    pair, tmp_path: Path, make_gateway_env
) -> None:
    first, second = pair
    env = make_gateway_env(
        first,
        tmp_path / "plugin",
        HANZO_GATEWAY_SIDECAR_URLS=json.dumps([first.url, second.url]),
        HANZO_GATEWAY_POSITIVE_CACHE_MAX_SECONDS="0.001",
        HANZO_GATEWAY_NEGATIVE_CACHE_SECONDS="0.001",
    )
    env.pop("HANZO_GATEWAY_SIDECAR_URL")
    plugin = ForwardAuthServer(tmp_path / "plugin", env).start()
    try:
        async with httpx.AsyncClient(base_url=plugin.url, timeout=10) as http:

            async def decide(key: str) -> httpx.Response:
                headers = {
                    "X-Forwarded-Method": "POST",
                    "X-Forwarded-Uri": "/v1/memory/search",
                    "X-API-Key": key,
                }
                return await http.get("/auth", headers=headers)

            key, _ = await mint(first)
            assert (await decide(key)).status_code == 200
            first.kill()
            fresh, _ = await mint(second)
            assert (await decide(fresh)).status_code == 200
            scraped = (await http.get("/metrics")).text
            line = f'hanzo_gateway_sidecar_failovers_total{{sidecar="{first.url}"}} 1.0'
            assert line in scraped, scraped
            second.kill()
            json_error(await decide(key), 503, "auth_unavailable")
    finally:
        plugin.stop()


async def test_a_lone_sidecar_back_from_the_dead_serves_at_once(tmp_path: Path) -> None:
    """Every sidecar resting: the one resting least is asked anyway, so a restarted lone
    sidecar is not refused unasked for the rest of its backoff."""
    first = SidecarServer(tmp_path / "a").start()
    again = None
    sidecars = client(first, clock=FakeClock())
    try:
        key, key_id = await mint(first)
        first.kill()
        with pytest.raises(Unavailable):
            await sidecars.verify(key)
        again = twin(first, tmp_path / "a-again", port=first.port)  # same store and port
        assert (await sidecars.verify(key)).principal.key_id == key_id
    finally:
        await sidecars.aclose()
        first.stop()
        if again is not None:
            again.stop()


class ClosingRelay:
    """A loopback relay to a real sidecar that plays one race of kept-alive connections:
    the second request on a connection finds it closed by the other side (as when the
    sidecar's keep-alive timer fires while the request is on its way): the connection is
    dropped unanswered. Every other byte passes through unchanged."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self.connections = 0
        self.dropped = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        return self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self._upstream_port)

        async def back() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        answering = asyncio.ensure_future(back())
        requests = 0
        try:
            while data := await reader.read(65536):
                if data.startswith((b"POST ", b"GET ")):
                    requests += 1
                    if requests == 2:
                        self.dropped += 1
                        break
                up_writer.write(data)
                await up_writer.drain()
        finally:
            answering.cancel()
            writer.close()
            up_writer.close()

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def test_a_read_on_a_connection_the_sidecar_just_closed_is_sent_again(
    tmp_path: Path,
) -> None:
    """A hot key's next sidecar call met the connection the sidecar was closing (its
    keep-alive timeout equalled the key cache's life: a 503 every 5 s in CI). The read is
    sent once more on a new connection, and answers."""
    sidecar = SidecarServer(tmp_path / "a").start()
    relay = ClosingRelay(sidecar.port)
    port = await relay.start()
    sidecars = SidecarClient(f"http://{LOOPBACK}:{port}", sidecar.verify_token)
    try:
        key, key_id = await mint(sidecar)
        assert (await sidecars.verify(key)).principal.key_id == key_id
        assert (await sidecars.verify(key)).principal.key_id == key_id  # the closed one
        assert relay.dropped == 1 and relay.connections == 2
        assert failovers(f"http://{LOOPBACK}:{port}") == 0
    finally:
        await sidecars.aclose()
        await relay.stop()
        sidecar.stop()


class AnswerLosingRelay(ClosingRelay):
    """A loopback relay to a real sidecar that passes each request on and, once the
    sidecar's answer has come back, closes the client's connection without it: a report
    applied whose answer was lost."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self._upstream_port)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(
                line.split(b":", 1)[1] for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ))  # fmt: skip
            up_writer.write(head + await reader.readexactly(length))
            await up_writer.drain()
            await up_reader.readuntil(b"\r\n\r\n")  # the sidecar answered: dropped
            self.dropped += 1
        finally:
            writer.close()
            up_writer.close()


async def test_a_usage_report_whose_answer_is_lost_is_never_counted_twice(
    tmp_path: Path,
) -> None:
    """The sidecar records the report, its 202 never arrives: the reporter must not send
    the same counts again next interval (it did: 5 requests counted 10 times)."""
    sidecar = SidecarServer(tmp_path / "a").start()
    relay = AnswerLosingRelay(sidecar.port)
    port = await relay.start()
    sidecars = SidecarClient(f"http://{LOOPBACK}:{port}", sidecar.verify_token)
    usage = UsageReporter(sidecars.report_usage, interval=3600)
    try:
        alice = Principal(organization="acme", subject="acme/alice", key_id="k1")
        for _ in range(5):
            usage.count(alice)
        await usage.flush()  # recorded, answer lost
        await usage.flush()  # the next interval: nothing to send again
        assert relay.dropped == 1
        with sqlite3.connect(sidecar.db_path) as db:
            (counted,) = db.execute(
                "SELECT requests FROM usage_daily WHERE level = 'key' AND subject = 'k1'"
            ).fetchone()
        assert counted == 5
    finally:
        await usage.aclose()
        await sidecars.aclose()
        await relay.stop()
        sidecar.stop()
