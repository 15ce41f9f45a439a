"""The gRPC API through the real gateway: nginx's http2 listener, the plugin's auth
subrequest, the memory service's grpc.aio server, with keys minted as `hanzo login` does;
and straight at the memory service's gRPC port, which checks the assertion's audience and
its binding to the call exactly as the REST routes do."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from google.protobuf.struct_pb2 import Struct

from hanzo_contract.assertion import (
    MEMORY_AUDIENCE,
    SIDECAR_AUDIENCE,
    AssertionSigner,
    generate_keypair,
)
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from memory_service.auth import READ, WRITE
from memory_service.grpc import memory_pb2 as pb
from memory_service.grpc import memory_pb2_grpc as pb_grpc
from memory_service.grpc.server import PERMISSIONS, SERVICE, method_path
from tests.e2e.support import MemoryKeys as Keys
from tests.e2e.support import RunningStack, gateway_assertion

REPO = Path(__file__).resolve().parents[2]
ROUTE_TABLES = [
    REPO / "deploy" / "stack" / "routes.yaml",
    REPO / "gateway_plugins" / "routes.default.yaml",
]


@pytest.fixture(scope="module")
def keys(running_stack: RunningStack) -> Keys:
    return Keys.mint(running_stack, "grpc")


@pytest.fixture
async def stub(running_stack: RunningStack) -> AsyncIterator[pb_grpc.MemoryServiceStub]:
    target = f"127.0.0.1:{running_stack.info.ports['nginx_grpc']}"
    async with grpc.aio.insecure_channel(target) as channel:
        yield pb_grpc.MemoryServiceStub(channel)


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value.code()


async def test_store_search_get_list_delete(stub: pb_grpc.MemoryServiceStub, keys: Keys) -> None:
    fact = f"grpc launch word {uuid.uuid4().hex}"
    meta = Struct()
    meta.update({"source": "grpc"})
    auth = _auth(keys.alice)
    stored = await stub.Store(
        pb.StoreRequest(content=fact, tags=["grpc"], metadata=meta), metadata=auth, timeout=30
    )
    assert stored.status == "created" and stored.id
    again = await stub.Store(pb.StoreRequest(content=fact, tags=["grpc"]), metadata=auth)
    assert (again.id, again.status) == (stored.id, "duplicate")

    found = await stub.Search(pb.SearchRequest(query=fact, mode="keyword", top_k=3), metadata=auth)
    assert found.results[0].memory.id == stored.id
    got = await stub.Get(pb.GetRequest(id=stored.id), metadata=auth)
    assert (got.content, got.user, list(got.tags)) == (fact, "alice", ["grpc"])
    assert got.metadata["source"] == "grpc"
    listed = await stub.List(pb.ListRequest(tags=["grpc"]), metadata=auth)
    assert stored.id in [m.id for m in listed.memories]

    caps = await stub.Capabilities(pb.CapabilitiesRequest(), metadata=auth)
    assert caps.backend == "sqlite" and "hybrid" in caps.search_modes
    assert caps.embedding_dimensions == 384 and caps.limits["max_top_k"] > 0

    deleted = await stub.Delete(pb.DeleteRequest(id=stored.id), metadata=auth)
    assert deleted.deleted
    code = await _code(stub.Get(pb.GetRequest(id=stored.id), metadata=auth))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_other_tenants_memory_is_not_found(
    stub: pb_grpc.MemoryServiceStub, keys: Keys
) -> None:
    secret = f"acme grpc secret {uuid.uuid4().hex}"
    alice, carol = _auth(keys.alice), _auth(keys.carol)
    memory_id = (await stub.Store(pb.StoreRequest(content=secret), metadata=alice)).id

    code = await _code(stub.Get(pb.GetRequest(id=memory_id), metadata=carol))
    assert code == grpc.StatusCode.NOT_FOUND
    # carol's upsert with alice's id makes carol's own memory, never touches alice's
    mine = await stub.Store(pb.StoreRequest(content="carol's", id=memory_id), metadata=carol)
    assert (await stub.Get(pb.GetRequest(id=mine.id), metadata=carol)).content == "carol's"
    hits = await stub.Search(pb.SearchRequest(query=secret, mode="keyword"), metadata=carol)
    assert all(h.memory.content != secret for h in hits.results)
    listed = await stub.List(pb.ListRequest(limit=500), metadata=carol)
    assert all(m.content != secret for m in listed.memories)

    assert (await stub.Get(pb.GetRequest(id=memory_id), metadata=alice)).content == secret


async def test_no_key_or_a_bad_key_is_unauthenticated(
    stub: pb_grpc.MemoryServiceStub, keys: Keys
) -> None:
    request = pb.SearchRequest(query="anything")
    assert await _code(stub.Search(request)) == grpc.StatusCode.UNAUTHENTICATED
    bad = _auth("hk-not-a-real-key")
    assert await _code(stub.Search(request, metadata=bad)) == grpc.StatusCode.UNAUTHENTICATED
    # a forged assertion sent by the client is replaced by the gateway's (empty: refused)
    forged = (("x-hanzo-identity", "eyJhbGciOiJFZERTQSJ9.e30.c2ln"),)
    assert await _code(stub.Search(request, metadata=forged)) == grpc.StatusCode.UNAUTHENTICATED


async def test_read_only_key_storing_is_permission_denied(
    stub: pb_grpc.MemoryServiceStub, keys: Keys
) -> None:
    ro = _auth(keys.alice_read_only)
    code = await _code(stub.Store(pb.StoreRequest(content="not allowed"), metadata=ro))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code = await _code(stub.Delete(pb.DeleteRequest(id="m_whatever"), metadata=ro))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert (await stub.List(pb.ListRequest(), metadata=ro)) is not None


async def test_bad_input_is_invalid_argument(stub: pb_grpc.MemoryServiceStub, keys: Keys) -> None:
    auth = _auth(keys.alice)
    for call in (
        stub.Store(pb.StoreRequest(content="   "), metadata=auth),
        stub.Search(pb.SearchRequest(query="x", mode="telepathy"), metadata=auth),
        stub.List(pb.ListRequest(limit=100_000), metadata=auth),
        stub.List(pb.ListRequest(cursor="not-a-cursor"), metadata=auth),
    ):
        assert await _code(call) == grpc.StatusCode.INVALID_ARGUMENT


def test_committed_generated_code_matches_the_proto(tmp_path: Path) -> None:
    shutil.copytree(REPO / "memory_service" / "grpc", tmp_path / "memory_service" / "grpc")
    generated = [p.name for p in (tmp_path / "memory_service" / "grpc").glob("memory_pb2*")]
    assert sorted(generated) == ["memory_pb2.py", "memory_pb2.pyi", "memory_pb2_grpc.py"]
    for name in generated:
        (tmp_path / "memory_service" / "grpc" / name).unlink()
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.",
         "--grpc_python_out=.", "memory_service/grpc/memory.proto"],
        cwd=tmp_path, check=True,
    )  # fmt: skip
    for name in generated:
        fresh, committed = (
            tmp_path / "memory_service" / "grpc" / name,
            REPO / "memory_service" / "grpc" / name,
        )
        assert filecmp.cmp(fresh, committed, shallow=False), f"{name} is stale: scripts/gen_grpc.sh"


async def test_memory_grpc_port_trusts_only_the_gateways_assertion(
    running_stack: RunningStack, stub: pb_grpc.MemoryServiceStub, keys: Keys
) -> None:
    """Straight at the memory service's own gRPC port (no nginx, no plugin): it verifies the
    signed assertion and the method's permission itself, exactly as its REST routes do."""
    stored = await stub.Store(pb.StoreRequest(content=f"direct {uuid.uuid4().hex}"),
                              metadata=_auth(keys.alice))  # fmt: skip
    signer = AssertionSigner((Path(running_stack.info.state_dir) / "assertion.key").read_bytes())

    def identity(
        method: str, org: str, user: str, *scopes: str, audience: str = MEMORY_AUDIENCE
    ) -> tuple[tuple[str, str], ...]:
        p = Principal(organization=org, subject=f"{org}/{user}", scopes=frozenset(scopes))
        token = signer.sign(p, audience=audience, method="POST", path=method_path(method))
        return (("x-hanzo-identity", token),)

    forged_signer = AssertionSigner(generate_keypair()[0])
    forged = Principal(organization="acme", subject="acme/alice", scopes=frozenset({READ}))
    target = f"127.0.0.1:{running_stack.info.ports['memory_grpc']}"
    async with grpc.aio.insecure_channel(target) as channel:
        direct = pb_grpc.MemoryServiceStub(channel)
        get = pb.GetRequest(id=stored.id)
        assert await _code(direct.Get(get)) == grpc.StatusCode.UNAUTHENTICATED
        wrong_key = forged_signer.sign(
            forged, audience=MEMORY_AUDIENCE, method="POST", path=method_path("Get")
        )
        code = await _code(direct.Get(get, metadata=(("x-hanzo-identity", wrong_key),)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # the gateway's key, but for another upstream, or for no request in particular
        other = identity("Get", "acme", "alice", READ, audience=SIDECAR_AUDIENCE)
        assert await _code(direct.Get(get, metadata=other)) == grpc.StatusCode.UNAUTHENTICATED
        unbound = (("x-hanzo-identity", signer.sign(forged, audience=MEMORY_AUDIENCE)),)
        assert await _code(direct.Get(get, metadata=unbound)) == grpc.StatusCode.UNAUTHENTICATED
        # bare identity headers mean nothing without the signature
        bare = (("x-org-id", "acme"), ("x-user-id", "alice"), ("x-scopes", READ))
        assert await _code(direct.Get(get, metadata=bare)) == grpc.StatusCode.UNAUTHENTICATED

        mine = identity("Get", "acme", "alice", READ)
        assert (await direct.Get(get, metadata=mine)).id == stored.id
        code = await _code(direct.Get(get, metadata=identity("Get", "globex", "alice", READ)))
        assert code == grpc.StatusCode.NOT_FOUND
        store_ro = identity("Store", "acme", "alice", READ)
        code = await _code(direct.Store(pb.StoreRequest(content="x"), metadata=store_ro))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        delete_ro = identity("Delete", "acme", "alice", READ)
        code = await _code(direct.Delete(pb.DeleteRequest(id=stored.id), metadata=delete_ro))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code = await _code(direct.Get(get, metadata=identity("Get", "acme", "alice", WRITE)))
        assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_captured_assertion_is_refused_for_any_other_call(
    running_stack: RunningStack, stub: pb_grpc.MemoryServiceStub, keys: Keys
) -> None:
    """The assertion the gateway obtained for one gRPC method, replayed at the memory
    service's own ports: accepted for that method only, never for another method or a REST
    route, although its key holds every memory scope."""
    stored = await stub.Store(pb.StoreRequest(content=f"replay {uuid.uuid4().hex}"),
                              metadata=_auth(keys.alice))  # fmt: skip
    captured = gateway_assertion(running_stack, keys.alice, "POST", method_path("Get"))
    replay = (("x-hanzo-identity", captured),)
    target = f"127.0.0.1:{running_stack.info.ports['memory_grpc']}"
    async with grpc.aio.insecure_channel(target) as channel:
        direct = pb_grpc.MemoryServiceStub(channel)
        # the call it was issued for: a genuine assertion of alice's
        got = await direct.Get(pb.GetRequest(id=stored.id), metadata=replay)
        assert got.id == stored.id
        for call in (
            direct.Delete(pb.DeleteRequest(id=stored.id), metadata=replay),
            direct.Store(pb.StoreRequest(content="planted"), metadata=replay),
            direct.List(pb.ListRequest(), metadata=replay),
        ):
            assert await _code(call) == grpc.StatusCode.UNAUTHENTICATED
    memory = f"http://127.0.0.1:{running_stack.info.ports['memory']}"
    async with httpx.AsyncClient(headers={ASSERTION: captured}, timeout=30) as http:
        for method, path in (("GET", "/v1/memory/retrieve"), ("DELETE", f"/v1/memory/{stored.id}")):
            r = await http.request(method, f"{memory}{path}")
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["code"] == "invalid_assertion"
    # still there: nothing the replays tried happened
    assert (await stub.Get(pb.GetRequest(id=stored.id), metadata=_auth(keys.alice))).id


def test_route_tables_name_every_rpc_with_its_permission() -> None:
    """The gateway's route tables and the server agree on each method's path, permission
    and audience, and on the set of methods the proto defines."""
    rpcs = set(pb.DESCRIPTOR.services_by_name["MemoryService"].methods_by_name)
    assert set(PERMISSIONS) == rpcs
    for table in ROUTE_TABLES:
        routes = {
            r["path"]: r for r in yaml.safe_load(table.read_text())["routes"]
            if r["path"].startswith(f"/{SERVICE}/")
        }  # fmt: skip
        assert set(routes) == {method_path(m) for m in rpcs}, table
        for method in rpcs:
            route = routes[method_path(method)]
            assert route["methods"] == ["POST"], (table, method)
            assert route["permission"] == PERMISSIONS[method], (table, method)
            assert route["audience"] == MEMORY_AUDIENCE, (table, method)
