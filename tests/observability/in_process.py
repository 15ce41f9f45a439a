"""The parts served by uvicorn in threads of the test process, so that one OpenTelemetry
provider (with the SDK's in-memory exporter) sees the spans of all of them; real nginx in
front, as ``hanzo up`` runs it."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from gateway_plugins.build import build_core
from gateway_plugins.forward_auth import create_app as create_plugin_app
from gateway_plugins.settings import GatewaySettings
from hanzo_contract.assertion import ensure_keypair
from hanzo_stack.process import LOOPBACK, free_port, http_ok
from iam_sidecar.http.app import create_app as create_sidecar_app
from iam_sidecar.keys.models import NewKey
from iam_sidecar.settings import SidecarSettings
from memory_service.app import create_app as create_memory_app
from memory_service.settings import MemorySettings
from tests.support.keys import mint_key


class ThreadServer:
    """One ASGI app on a loopback port, in a thread (lifespan on)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.addr = f"{LOOPBACK}:{self.port}"
        self.url = f"http://{self.addr}"
        config = uvicorn.Config(app, host=LOOPBACK, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self, timeout: float = 30.0) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not http_ok(f"{self.url}/healthz"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"in-process server on {self.addr} did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


class Parts:
    """Sidecar, plugin and memory service in this process, over files under ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.hash_secret = secrets.token_urlsafe(32)
        verify_token = secrets.token_urlsafe(32)
        self.db_path = work / "sidecar.db"
        private, public = ensure_keypair(work / "keys")
        sidecar = SidecarSettings(
            state_dir=work / "sidecar",
            db_path=self.db_path,
            key_hash_secret=self.hash_secret,
            verify_token=verify_token,
            casdoor_url=f"http://{LOOPBACK}:{free_port()}",  # keys verify from the store
        )
        self.sidecar = ThreadServer(create_sidecar_app(sidecar, run_reconcile=False))
        self._gateway = GatewaySettings(
            sidecar_url=self.sidecar.url,
            verify_token=verify_token,
            assertion_key_file=private,
            quota_db_path=work / "quotas.sqlite3",
        )
        memory = MemorySettings(
            backend="sqlite",
            data_dir=work / "memory",
            embedder="deterministic",
            embedding_dim=384,
            assertion_public_key=public,
        )
        self.memory = ThreadServer(create_memory_app(memory))
        self.plugin: ThreadServer | None = None

    def start(self) -> Parts:
        self.sidecar.start()
        self.memory.start()
        self.plugin = ThreadServer(create_plugin_app(build_core(self._gateway))).start()
        return self

    def stop(self) -> None:
        for server in (self.plugin, self.memory, self.sidecar):
            if server is not None:
                server.stop()

    async def mint(self, scopes: tuple[str, ...], organization: str = "acme") -> str:
        new = NewKey(
            organization=organization,
            owner=f"{organization}/alice",
            name=f"k-{secrets.token_hex(6)}",
            scopes=list(scopes),
        )
        return (await mint_key(self.db_path, self.hash_secret, new))[0]
