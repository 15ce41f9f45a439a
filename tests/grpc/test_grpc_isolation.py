"""The memory tests' isolation property over gRPC, on every backend: tenant B never reads,
finds, lists or deletes tenant A's memory, whatever ids and filters B tries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hanzo_stack.process import free_port
from memory_service.auth import AssertionAuthenticator
from memory_service.backends.base import MemoryBackend
from memory_service.embeddings.deterministic import DeterministicEmbedder
from memory_service.grpc import memory_pb2 as pb
from memory_service.grpc import memory_pb2_grpc as pb_grpc
from memory_service.grpc.server import start_grpc_server
from memory_service.service import MemoryService
from tests.memory.conftest import DIM, Caller, settings_for
from tests.support.assertions import BindGrpcAssertion

PROPERTY = settings(max_examples=15)
ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)
tags = st.lists(st.sampled_from(["x", "y", "z", "ünï", "a b"]), max_size=3, unique=True)


@pytest.fixture(scope="session")
async def grpc_stub(
    backend: MemoryBackend,
    authenticator: AssertionAuthenticator,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[pb_grpc.MemoryServiceStub]:
    """The gRPC server over the session's backend, on a loopback port of its own; each call's
    assertion is signed for that call (its method's path), as the gateway signs it."""
    service = MemoryService(
        backend,
        DeterministicEmbedder(DIM),
        settings_for(backend.name, tmp_path_factory.mktemp("g")),
    )
    port = free_port()
    server = await start_grpc_server(service, authenticator, "127.0.0.1", port)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=[BindGrpcAssertion()]
        ) as channel:
            yield pb_grpc.MemoryServiceStub(channel)
    finally:
        await server.stop(grace=None)


def _md(caller: Caller) -> tuple[tuple[str, str], ...]:
    """The caller's identity, bound to each call by the channel's interceptor."""
    return tuple((k.lower(), v) for k, v in caller.headers.items())


async def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value.code()


@PROPERTY
@given(
    mid=ids, tag_list=tags, probe_id=ids,
    namespace=st.sampled_from(["", "default", "a"]), filter_tags=tags,
    org_b=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
)  # fmt: skip
async def test_no_rpc_crosses_tenants(grpc_stub, make_caller, mid, tag_list, probe_id,
                                      namespace, filter_tags, org_b):  # fmt: skip
    a: Caller = make_caller()
    b: Caller = make_caller(org=f"{org_b}-{uuid.uuid4().hex[:6]}", user="alice")
    content = f"tenant a secret {uuid.uuid4().hex}"
    stored = await grpc_stub.Store(
        pb.StoreRequest(id=mid, content=content, tags=tag_list, scope="org"), metadata=_md(a)
    )
    assert stored.status == "created"
    for probe in {mid, probe_id}:
        get = grpc_stub.Get(pb.GetRequest(id=probe), metadata=_md(b))
        assert await _code(get) == grpc.StatusCode.NOT_FOUND
        delete = grpc_stub.Delete(pb.DeleteRequest(id=probe), metadata=_md(b))
        assert await _code(delete) == grpc.StatusCode.NOT_FOUND
    for mode in ("vector", "keyword", "hybrid"):
        req = pb.SearchRequest(query=content, mode=mode, namespace=namespace, tags=filter_tags)
        found = await grpc_stub.Search(req, metadata=_md(b))
        assert all(h.memory.content != content for h in found.results)
    listing = await grpc_stub.List(pb.ListRequest(limit=500), metadata=_md(b))
    assert all(m.content != content for m in listing.memories)
    # B storing under the same id makes B's own memory; A's is untouched.
    own = await grpc_stub.Store(pb.StoreRequest(id=mid, content="b's"), metadata=_md(b))
    assert own.status == "created"
    still = await grpc_stub.Get(pb.GetRequest(id=mid), metadata=_md(a))
    assert still.content == content
