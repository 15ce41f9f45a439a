"""The memory service without a gateway: keys checked in-process by the same decision core."""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hanzo_contract.assertion import MEMORY_AUDIENCE, AssertionSigner
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok
from hanzo_stack.servers import SidecarServer
from iam_sidecar.keys.models import NewKey
from tests.support.keys import mint_key


class DirectMemory:
    def __init__(self, workdir: Path) -> None:
        self.state = workdir / "state"
        self.sidecar = SidecarServer(workdir / "sidecar").start()
        self.port = free_port()
        env = {
            "HANZO_STATE_DIR": str(workdir / "state"),
            "HANZO_MEMORY_AUTH_MODE": "direct",
            "HANZO_MEMORY_EMBEDDER": "deterministic",
            "HANZO_MEMORY_DATA_DIR": str(workdir / "memory"),
            "HANZO_GATEWAY_SIDECAR_URL": self.sidecar.url,
            "HANZO_GATEWAY_VERIFY_TOKEN": self.sidecar.verify_token,
            "HANZO_GATEWAY_QUOTA_DB_PATH": str(workdir / "quota.db"),
        }
        argv = [
            sys.executable,
            "-m",
            "hanzo_stack",
            "memory-service",
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
        ]
        self.process = ManagedProcess(
            "memory-direct", argv, log_path=workdir / "memory.log", env=env
        ).start()
        self.process.wait_ready(lambda: http_ok(f"{self.url}/healthz"), 60)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def mint(self, *scopes: str, org: str = "acme", user: str = "alice") -> str:
        new = NewKey(
            organization=org,
            owner=f"{org}/{user}",
            name=f"k-{secrets.token_hex(4)}",
            scopes=list(scopes),
        )
        return (await mint_key(self.sidecar.db_path, self.sidecar.hash_secret, new))[0]

    def stop(self) -> None:
        self.process.stop()
        self.sidecar.stop()


@pytest.fixture(scope="module")
async def direct(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DirectMemory]:
    server = DirectMemory(tmp_path_factory.mktemp("direct"))
    try:
        yield server
    finally:
        server.stop()


async def test_keys_work_without_a_gateway_and_scopes_still_apply(direct: DirectMemory) -> None:
    writer = await direct.mint("memory:read", "memory:write")
    reader = await direct.mint("memory:read")
    other_tenant = await direct.mint("memory:read", org="globex", user="carol")
    async with httpx.AsyncClient(base_url=direct.url, timeout=10) as http:
        assert (await http.get("/v1/memory/capabilities")).status_code == 401
        r = await http.post(
            "/v1/memory/store",
            headers={"X-API-Key": writer, "X-User-Id": "globex/mallory", "X-Org-Id": "globex"},
            json={"memories": [{"content": "direct mode works"}]},
        )
        assert r.status_code == 200, r.text
        memory_id = r.json()["ids"][0]
        got = await http.get(
            "/v1/memory/retrieve",
            params={"id": memory_id},
            headers={"Authorization": f"Bearer {reader}"},
        )
        assert got.status_code == 200
        assert got.json()["memories"][0]["user"] == "alice"  # not the forged header
        refused = await http.post(
            "/v1/memory/store", headers={"X-API-Key": reader}, json={"memories": [{"content": "x"}]}
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        hidden = await http.get(
            "/v1/memory/retrieve", params={"id": memory_id}, headers={"X-API-Key": other_tenant}
        )
        assert hidden.status_code == 404
        wrong = await http.get("/v1/memory/capabilities", headers={"X-API-Key": "hk-nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"]
        assert (await http.get("/healthz")).status_code == 200


async def test_client_sent_assertion_of_another_tenant_is_stripped(direct: DirectMemory) -> None:
    """A genuine assertion of globex, signed by the gateway key for this very request (say
    captured from a log), sent by an acme key holder: direct mode strips it, in every
    spelling, and the app sees only the identity of the key. Guards the strip in
    ``replace_identity_headers_raw``: without it the client's assertion comes first."""
    carol = await direct.mint("memory:read", "memory:write", org="globex", user="carol")
    alice = await direct.mint("memory:read", org="acme", user="alice")
    signer = AssertionSigner((direct.state / "assertion.key").read_bytes())
    globex = Principal(
        organization="globex", subject="globex/carol", scopes=frozenset({"memory:read"})
    )
    captured = signer.sign(
        globex, audience=MEMORY_AUDIENCE, method="GET", path="/v1/memory/retrieve"
    )
    async with httpx.AsyncClient(base_url=direct.url, timeout=10) as http:
        stored = await http.post("/v1/memory/store", headers={"X-API-Key": carol},
                                 json={"content": "globex board minutes"})  # fmt: skip
        assert stored.status_code == 200, stored.text
        for name in (ASSERTION, ASSERTION.lower(), ASSERTION.upper(), "X_Hanzo_Identity"):
            r = await http.get("/v1/memory/retrieve", headers={name: captured, "X-API-Key": alice})
            assert r.status_code == 200, (name, r.text)
            contents = [m["content"] for m in r.json()["memories"]]
            assert "globex board minutes" not in contents, name
        # the captured assertion alone is refused as a credential
        r = await http.get("/v1/memory/retrieve", headers={ASSERTION: captured})
        assert r.status_code == 401
