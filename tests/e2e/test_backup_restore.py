"""``hanzo backup`` under load, ``hanzo restore`` into a new state dir, and the restored
stack verifies the same key and JWT and returns the same memories."""

from __future__ import annotations

import stat
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hanzo_client.login import PkceLogin
from hanzo_stack.backup import MANIFEST, BackupError, Manifest, backup, restore
from hanzo_stack.cli import app
from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack
from tests.support.headless_login import headless_browser


class StoreLoad:
    """Stores through the gateway from a thread until stopped; remembers each 2xx."""

    def __init__(self, gateway: str, key: str) -> None:
        self.gateway, self.key = gateway, key
        self.acked: list[tuple[float, str, str]] = []  # (acked at, id, content)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.gateway, timeout=10) as client:
            while not self.stop.is_set():
                content = f"backed-up {uuid.uuid4().hex}"
                reply = client.post(
                    "/v1/memory/store",
                    json={"memories": [{"content": content}]},
                    headers={"Authorization": f"Bearer {self.key}"},
                )
                if reply.is_success:
                    self.acked.append((time.monotonic(), reply.json()["ids"][0], content))
                self.stop.wait(0.05)


def test_backup_under_load_then_restore_serves_the_same_keys_jwts_and_memories(
    tmp_path: Path,
) -> None:
    old = Stack(tmp_path / "old", progress=lambda _: None)
    new: Stack | None = None
    try:
        info = old.up(DEFAULT_TENANT_FILE, ui=False)
        seeds = old.layout.seed_passwords(DEFAULT_TENANT_FILE)
        browser = headless_browser(info.casdoor_url, "acme", "alice", seeds["ACME_ALICE_PASSWORD"])
        jwt = PkceLogin(info.casdoor_url, f"{info.cli_client_id}-org-acme").run(
            browser, timeout=30
        )["access_token"]
        minted = httpx.post(
            f"{info.gateway_url}/v1/keys",
            json={"name": "backup", "scopes": ["memory:read", "memory:write"]},
            headers={"Authorization": f"Bearer {jwt}"},
            timeout=10,
        )
        assert minted.status_code == 201, minted.text
        key = minted.json()["key"]

        load = StoreLoad(info.gateway_url, key)
        load.thread.start()
        while len(load.acked) < 20:
            time.sleep(0.05)
        backup_started = time.monotonic()
        result = CliRunner().invoke(
            app, ["backup", str(tmp_path / "bak"), "--state-dir", str(tmp_path / "old")]
        )
        time.sleep(0.5)  # the load keeps writing after the copy too
        load.stop.set()
        load.thread.join(15)
        assert result.exit_code == 0, result.output
        assert key not in result.output
        before = [(i, c) for t, i, c in load.acked if t < backup_started]
        assert len(load.acked) > len(before)  # writes went on during the backup

        # private: every dir 0700, every file 0600
        for path in [tmp_path / "bak", *(tmp_path / "bak").rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), path
        manifest = Manifest.model_validate_json((tmp_path / "bak" / MANIFEST).read_text())
        hows = {Path(f.path).name: f.how for f in manifest.files}
        for db in ("sidecar.db", "casdoor.db", "memory.sqlite3", "quota.db"):
            assert hows.get(db) == "sqlite-backup", (db, sorted(hows))
        assert "key_hash_secret" in hows and "jwt-key.pem" in hows

        old.down(quiet=True)  # the old stack is gone; its backup is all that is left
        result = CliRunner().invoke(
            app, ["restore", str(tmp_path / "bak"), "--state-dir", str(tmp_path / "new")]
        )
        assert result.exit_code == 0, result.output
        new = Stack(tmp_path / "new", progress=lambda _: None)
        restored = new.up(DEFAULT_TENANT_FILE, ui=False)
        gateway = restored.gateway_url
        # really another stack, in another state dir; its ports are state and came along
        assert restored.state_dir != info.state_dir
        assert gateway == info.gateway_url
        with httpx.Client(base_url=gateway, timeout=10) as client:
            by_key = {"Authorization": f"Bearer {key}"}
            # the same key verifies (same HMAC secret, same key store)
            assert client.get("/v1/memory/capabilities", headers=by_key).status_code == 200
            # a JWT issued before the backup verifies (same signing key, same issuer)
            listed = client.get("/v1/keys", headers={"Authorization": f"Bearer {jwt}"})
            assert listed.status_code == 200, listed.text
            # every memory acknowledged before the backup began comes back
            for memory_id, content in before:
                got = client.get("/v1/memory/retrieve", params={"id": memory_id}, headers=by_key)
                assert got.status_code == 200, got.text
                assert got.json()["memories"][0]["content"] == content
            # and a key that never existed is still refused
            refused = client.get(
                "/v1/memory/capabilities", headers={"Authorization": "Bearer hk-" + "x" * 40}
            )
            assert refused.status_code == 401
    finally:
        old.down(quiet=True)
        if new is not None:
            new.down(quiet=True)


def test_restore_refuses_a_damaged_backup_and_a_used_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "sidecar").mkdir(parents=True)
    (state / "sidecar" / "key_hash_secret").write_text("s3cret")
    (state / "logs").mkdir()
    (state / "logs" / "sidecar.log").write_text("not state")
    manifest = backup(state, tmp_path / "bak")
    assert [f.path for f in manifest.files] == ["sidecar/key_hash_secret"]
    with pytest.raises(BackupError, match="not empty"):
        backup(state, tmp_path / "bak")
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "bak", state)
    (tmp_path / "bak" / "sidecar" / "key_hash_secret").write_text("tampered")
    with pytest.raises(BackupError, match="damaged"):
        restore(tmp_path / "bak", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


async def test_lancedb_memories_copied_while_written_come_back(tmp_path: Path) -> None:
    """A LanceDB store written to during the backup: the copy opens, and every batch
    acknowledged before the backup began is in it."""
    import asyncio

    import numpy as np

    from memory_service.backends.base import NEVER, Record
    from memory_service.backends.lance import LanceBackend
    from memory_service.clock import now_us

    dim = 8
    live = LanceBackend(tmp_path / "state" / "memory" / "lancedb", dim)
    await live.open()
    acked: list[tuple[float, list[str]]] = []
    rng = np.random.default_rng(1)

    def batch(n: int) -> list[Record]:
        vecs = rng.standard_normal((10, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        t0 = now_us()
        return [
            Record(tenant="acme", id=f"m{n}_{i}", user="u", namespace="ns",
                   content=f"batch {n} row {i}", content_hash=f"{n}-{i}", metadata={},
                   tags=[], importance=0.5, created_at=t0 + i, updated_at=t0,
                   expires_at=NEVER, vector=vecs[i])
            for i in range(10)
        ]  # fmt: skip

    warmed = asyncio.Event()

    async def writer(stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            records = batch(n)
            await live.upsert(records)
            acked.append((time.monotonic(), [r.id for r in records]))
            n += 1
            if n == 5:
                warmed.set()

    try:
        stop = asyncio.Event()
        task = asyncio.create_task(writer(stop))
        await warmed.wait()
        started = time.monotonic()
        manifest = await asyncio.to_thread(backup, tmp_path / "state", tmp_path / "bak")
        await asyncio.sleep(0.2)
        stop.set()
        await task
    finally:
        await live.close()
    assert any(f.how == "lance" for f in manifest.files)
    assert acked[-1][0] > started  # the writer really wrote during the backup
    restore(tmp_path / "bak", tmp_path / "new")
    copy = LanceBackend(tmp_path / "new" / "memory" / "lancedb", dim)
    await copy.open()
    try:
        wanted = [i for t, ids in acked if t < started for i in ids]
        got = {r.id for r in await copy.get("acme", wanted)}
        assert got == set(wanted)
    finally:
        await copy.close()
