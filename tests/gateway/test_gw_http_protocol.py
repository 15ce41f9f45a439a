"""The plugin's HTTP protocol (``gateway_plugins.http_protocol``) answers the auth endpoints
in place: the same answer as uvicorn's ASGI path, in order behind a request that waits on
the sidecar, the connection closed when the client asked, and never a header that could
split the answer. The protocols run in process over :class:`RecordingTransport`, a named
stand-in for the socket that records what is written; the served tests
(``test_gw_*`` through nginx, Caddy, Traefik) run the same protocol on real sockets.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway_plugins.cli import SERVER_OPTIONS
from gateway_plugins.core import DecisionCore
from gateway_plugins.forward_auth import ForwardAuthApp, create_app
from gateway_plugins.http_protocol import AuthHttpProtocol, UnsafeHeader, header_lines
from gateway_plugins.limiter.redis_store import RedisLimiter
from gateway_plugins.routes import RouteTable
from hanzo_contract.assertion import AssertionSigner, AssertionVerifier
from hanzo_contract.principal import Limits, Principal
from hanzo_stack.valkey import ValkeyServer
from tests.gateway.conftest import ALICE_KEY, ROUTES, FakeSidecar, unit_core
from tests.support.clock import FakeClock, wait_for_window_room

BOB_KEY = "hk-bbbbbbbbbbbb_" + "B" * 43


class RecordingTransport:
    """What uvicorn's protocol needs of a socket; records the bytes written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8200), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    @property
    def data(self) -> bytes:
        return b"".join(self.written)


def connect(app: Any, protocol: type[HttpToolsProtocol]) -> tuple[Any, RecordingTransport]:
    config = Config(app, **{**SERVER_OPTIONS, "loop": "none"})
    config.load()
    served = protocol(config, ServerState(), {})  # type: ignore[arg-type]
    transport = RecordingTransport()
    served.connection_made(transport)  # type: ignore[arg-type]
    return served, transport


def auth_request(key: str | None, request_id: str, version: str = "1.1", extra: str = "") -> bytes:
    credential = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"GET /auth/nginx HTTP/{version}\r\nHost: auth\r\n"
        "X-Original-Method: GET\r\nX-Original-URI: /v1/memory/retrieve\r\n"
        f"X-Request-Id: {request_id}\r\n{credential}{extra}\r\n"
    ).encode()


async def settle(state_of: Any) -> None:
    """Until the connection's tasks (answers that waited) are done."""
    for _ in range(200):
        if not state_of.tasks:
            return
        await asyncio.gather(*list(state_of.tasks))
    raise AssertionError("tasks never settled")


def answers(data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """Each answer's status line, headers (lower-case) and body, in the order written."""
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        length = int(headers["content-length"])
        out.append((status, headers, data[:length]))
        data = data[length:]
    return out


async def test_the_answer_in_place_is_the_answer_served_as_asgi(
    sidecar: FakeSidecar,
    alice: Principal,
    assertion_keys: tuple[Path, Path],
    verifier: AssertionVerifier,
    tmp_path: Path,
) -> None:
    """Allowed (after the cache miss, and from the cache), limited (429, answered 403 to
    nginx), no credential (401), unknown key (401): status, every header but the signed
    identity (signed at a different second), and body alike; the identity verifies."""
    sequence = [
        auth_request(ALICE_KEY, "a" * 32),
        auth_request(ALICE_KEY, "b" * 32),
        auth_request(None, "c" * 32),
        auth_request("hk-zzzzzzzzzzzz_" + "Z" * 43, "d" * 32),
    ]
    alice_twice = Principal(**{**alice.model_dump(), "limits": Limits(requests_per_minute=1)})
    sidecar.keys[ALICE_KEY] = alice_twice
    seen = {}
    for name, protocol in (("asgi", HttpToolsProtocol), ("in_place", AuthHttpProtocol)):
        core = unit_core(sidecar, assertion_keys, (tmp_path / name), FakeClock())
        served, transport = connect(create_app(core), protocol)
        for raw in sequence:
            served.data_received(raw)
            await settle(served.server_state)
        seen[name] = answers(transport.data)
        await core.aclose()
    assert [status for status, _, _ in seen["in_place"]] == [
        "HTTP/1.1 200 OK",
        "HTTP/1.1 403 Forbidden",
        "HTTP/1.1 401 Unauthorized",
        "HTTP/1.1 401 Unauthorized",
    ]
    assert seen["in_place"][1][1]["x-hanzo-status"] == "429"
    for (s1, h1, b1), (s2, h2, b2) in zip(seen["asgi"], seen["in_place"], strict=True):
        identity = h2.pop("x-hanzo-identity", None)
        h1.pop("x-hanzo-identity", None)
        assert (s1, h1, b1) == (s2, h2, b2)
        if identity is not None:
            assert verifier.verify(identity).subject == alice.subject


class GatedSidecar(FakeSidecar):
    """The fake sidecar, whose answers wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def verify(self, key: str) -> Any:
        await self.gate.wait()
        return await super().verify(key)


async def _alice_cached(
    alice: Principal, assertion_keys: tuple[Path, Path], tmp_path: Path
) -> tuple[GatedSidecar, DecisionCore, Any, RecordingTransport]:
    """Alice's and Bob's keys on a gated sidecar (closed: Bob waits), a connection to the
    protocol, and Alice's key cached through it."""
    sidecar = GatedSidecar()
    sidecar.keys[ALICE_KEY] = alice.model_copy(update={"limits": Limits()})
    sidecar.keys[BOB_KEY] = alice.model_copy(
        update={"subject": "acme/bob", "key_id": "bbbbbbbbbbbb", "limits": Limits()}
    )
    sidecar.gate.set()
    core = unit_core(sidecar, assertion_keys, tmp_path, FakeClock())
    served, transport = connect(create_app(core), AuthHttpProtocol)
    served.data_received(auth_request(ALICE_KEY, "a" * 32))  # cached from here on
    await settle(served.server_state)
    transport.written.clear()
    sidecar.gate.clear()
    return sidecar, core, served, transport


async def test_an_answer_in_place_waits_its_turn_behind_one_that_waits(
    alice: Principal, assertion_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two pipelined requests: Bob's key is not cached (the sidecar is slow), Alice's is.
    Alice's answer, ready at once, is written after Bob's, as HTTP/1.1 requires."""
    sidecar, core, served, transport = await _alice_cached(alice, assertion_keys, tmp_path)

    served.data_received(auth_request(BOB_KEY, "b" * 32) + auth_request(ALICE_KEY, "c" * 32))
    await asyncio.sleep(0.05)
    assert transport.written == []  # Alice's answer is ready but not Bob's: nothing yet
    sidecar.gate.set()
    await settle(served.server_state)
    got = answers(transport.data)
    assert [(h["x-user-id"], h["x-request-id"]) for _, h, _ in got] == [
        ("acme/bob", "b" * 32),
        ("acme/alice", "c" * 32),
    ]
    await core.aclose()


async def test_a_long_pipeline_behind_one_that_waits_is_answered_whole_and_in_order(
    alice: Principal, assertion_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """1,000 cached requests queued behind a miss: each answer in place started the next
    from inside itself, and past about 470 the recursion limit dropped the rest."""
    sidecar, core, served, transport = await _alice_cached(alice, assertion_keys, tmp_path)
    ids = [f"{i:032d}" for i in range(1000)]
    served.data_received(
        auth_request(BOB_KEY, "b" * 32) + b"".join(auth_request(ALICE_KEY, i) for i in ids)
    )
    sidecar.gate.set()
    await settle(served.server_state)
    got = answers(transport.data)
    assert [h["x-request-id"] for _, h, _ in got] == ["b" * 32, *ids]
    assert {status for status, _, _ in got} == {"HTTP/1.1 200 OK"} and not transport.closed
    await core.aclose()


async def test_no_keep_alive_timer_runs_while_a_pipelined_request_waits(
    alice: Principal, assertion_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """An answer in place arms the idle timer; the pipelined request after it, waiting on
    the sidecar, must disarm it, or an idle close could cut it off unanswered."""
    sidecar, core, served, transport = await _alice_cached(alice, assertion_keys, tmp_path)
    served.data_received(auth_request(ALICE_KEY, "c" * 32) + auth_request(BOB_KEY, "b" * 32))
    assert served.server_state.tasks and served.timeout_keep_alive_task is None
    sidecar.gate.set()
    await settle(served.server_state)
    assert served.timeout_keep_alive_task is not None  # idle again: armed
    assert [h["x-request-id"] for _, h, _ in answers(transport.data)][-2:] == ["c" * 32, "b" * 32]
    served.connection_lost(None)
    await core.aclose()


@pytest.mark.parametrize(
    ("version", "extra"), [("1.1", "Connection: close\r\n"), ("1.0", "")], ids=["close", "1.0"]
)
async def test_a_client_that_asks_to_close_gets_its_answer_then_the_close(
    core: DecisionCore, alice: Principal, version: str, extra: str
) -> None:
    served, transport = connect(create_app(core), AuthHttpProtocol)
    served.data_received(auth_request(ALICE_KEY, "a" * 32))  # the miss, through a task
    await settle(served.server_state)
    assert not transport.closed
    transport.written.clear()
    served.data_received(auth_request(ALICE_KEY, "b" * 32, version, extra))
    assert served.server_state.tasks == set()  # answered in place, not as a task
    ((_, headers, _),) = answers(transport.data)
    assert headers["connection"] == "close" and headers["x-hanzo-status"] == "429"
    assert transport.closed


async def test_a_header_that_could_split_the_answer_is_never_written(
    core: DecisionCore, sidecar: FakeSidecar
) -> None:
    """A role name with CR LF (Casdoor's roles are data an admin types): the answer is a
    500 with the error body, and no header line the role tried to add."""
    sidecar.keys[BOB_KEY] = Principal(
        organization="acme",
        subject="acme/bob",
        roles=("reader\r\nx-hanzo-org-id: other",),
        scopes=frozenset({"memory:read"}),
        key_id="bbbbbbbbbbbb",
    )
    app = create_app(core)
    # the miss is answered as ASGI: uvicorn refuses the header and drops the connection
    served, transport = connect(app, AuthHttpProtocol)
    served.data_received(auth_request(BOB_KEY, "a" * 32))
    await settle(served.server_state)
    assert transport.closed and b"x-hanzo-org-id" not in transport.data
    # cached now, so answered in place: a 500 and the error body instead
    served, transport = connect(app, AuthHttpProtocol)
    served.data_received(auth_request(BOB_KEY, "b" * 32))
    assert served.server_state.tasks == set()
    ((status, _, body),) = answers(transport.data)
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert b"x-hanzo-org-id" not in transport.data and b"reader" not in transport.data
    assert json.loads(body)["error"]["code"] == "internal_error"


def test_header_lines_refuse_control_characters_and_separators() -> None:
    ok = [(b"X-A", b"value with\ttab"), (b"content-length", b"0")]
    assert header_lines(ok) == b"x-a: value with\ttab\r\ncontent-length: 0\r\n"
    for bad in ([(b"x-a", b"v\r\nx-b: 1")], [(b"x-a", b"v\x00")], [(b"x a", b"v")]):
        with pytest.raises(UnsafeHeader):
            header_lines(bad)


async def test_a_traced_or_head_request_is_served_as_asgi(
    core: DecisionCore, alice: Principal
) -> None:
    """``answer_now`` leaves HEAD (no body may be written) and everything but the auth
    endpoints to the ASGI app."""
    app: ForwardAuthApp = create_app(core)
    scope = {"type": "http", "method": "HEAD", "path": "/auth/nginx", "headers": []}
    assert app.answer_now(scope) is None
    assert app.answer_now({**scope, "method": "GET", "path": "/metrics"}) is None


async def test_a_shared_limiter_answers_through_a_task_and_still_counts(
    sidecar: FakeSidecar, alice: Principal, assertion_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """With Valkey counting (its client needs the task it runs in), every answer waits in a
    task, and the limit holds: Alice's second request in the minute is limited, not let
    through (fail open) nor refused as a limiter failure (503)."""
    valkey = ValkeyServer(tmp_path / "valkey").start()
    core = DecisionCore(
        routes=RouteTable.from_yaml(ROUTES),
        keys=sidecar,
        resolver=sidecar,
        limiter=RedisLimiter(valkey.url, 2.0),
        signer=AssertionSigner(assertion_keys[0].read_bytes(), 60),
        assertion_ttl=60,
    )
    assert not core.runs_in_place  # its client is not asked outside a task
    try:
        await wait_for_window_room(5)
        served, transport = connect(create_app(core), AuthHttpProtocol)
        for request_id in ("a" * 32, "b" * 32):
            served.data_received(auth_request(ALICE_KEY, request_id))
            await settle(served.server_state)
        got = [h["x-hanzo-status"] for _, h, _ in answers(transport.data)]
        assert got == ["200", "429"]
    finally:
        await core.aclose()
        valkey.stop()
