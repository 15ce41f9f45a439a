"""Per-tenant data keys wrapped by the operator's key: values open only in their tenant and
memory, the key file holds no usable key, and both rotations keep every value readable."""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path

import pytest

from memory_service.sealing import SEALED_PREFIX, SealingError, TenantKeyring


def test_sealed_values_open_only_where_they_were_sealed(tmp_path: Path) -> None:
    kek = secrets.token_bytes(32)
    ring = TenantKeyring(tmp_path / "data-keys.json", {"k1": kek}, "k1")
    sealed = ring.seal("acme", "m_1", "the launch code is 0000")
    assert sealed.startswith(SEALED_PREFIX) and "launch" not in sealed
    assert ring.open("acme", "m_1", sealed) == "the launch code is 0000"
    assert ring.seal("acme", "m_1", "same") != ring.seal("acme", "m_1", "same")  # fresh nonce
    for tenant, memory_id in (("globex", "m_1"), ("acme", "m_2")):
        with pytest.raises(SealingError):
            ring.open(tenant, memory_id, sealed)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealingError):
        ring.open("acme", "m_1", tampered)
    # the key file: private, and no key in it opens anything without the operator's key
    path = tmp_path / "data-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kek.hex() not in path.read_text()
    stranger = TenantKeyring(path, {"k1": secrets.token_bytes(32)}, "k1")
    with pytest.raises(SealingError):
        stranger.open("acme", "m_1", sealed)


def test_rotations_keep_every_value_readable(tmp_path: Path) -> None:
    path = tmp_path / "data-keys.json"
    old_kek, new_kek = secrets.token_bytes(32), secrets.token_bytes(32)
    ring = TenantKeyring(path, {"old": old_kek}, "old")
    first = ring.seal("acme", "m_1", "sealed under data key 1")

    # a new data key: new values use it, the old value still opens
    assert ring.rotate_data_key("acme") == 2
    second = ring.seal("acme", "m_2", "sealed under data key 2")
    assert second.startswith(f"{SEALED_PREFIX}2:") and first.startswith(f"{SEALED_PREFIX}1:")

    # a new operator key, side by side with the old one while the service keeps serving
    both = TenantKeyring(path, {"old": old_kek, "new": new_kek}, "new")
    assert both.open("acme", "m_1", first) == "sealed under data key 1"
    assert both.rewrap() == 2
    stored = json.loads(path.read_text())
    assert {entry["kek"] for entry in stored["acme"]["keys"]} == {"new"}
    # the old operator key is gone: everything still opens with the new one alone
    only_new = TenantKeyring(path, {"new": new_kek}, "new")
    assert only_new.open("acme", "m_1", first) == "sealed under data key 1"
    assert only_new.open("acme", "m_2", second) == "sealed under data key 2"
    with pytest.raises(SealingError):
        TenantKeyring(path, {"old": old_kek}, "old").open("acme", "m_1", first)


def test_operator_commands_rewrap_and_rotate(tmp_path: Path, monkeypatch) -> None:
    import base64

    from typer.testing import CliRunner

    from memory_service.cli import cli
    from memory_service.sealing import keyring_from_file

    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    key_file = tmp_path / "operator-keys.json"

    def write_keys(active: str, **keys: bytes) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in keys.items()}
        key_file.write_text(json.dumps({"active": active, "keys": encoded}))

    monkeypatch.setenv("HANZO_MEMORY_SEALING_KEY_FILE", str(key_file))
    monkeypatch.setenv("HANZO_MEMORY_DATA_DIR", str(tmp_path))
    write_keys("old", old=old)
    ring = keyring_from_file(key_file, tmp_path / "data-keys.json")
    sealed = ring.seal("acme", "m_1", "kept across both rotations")
    runner = CliRunner()
    rotated = runner.invoke(cli, ["rotate-data-key", "--org", "acme"])
    assert rotated.exit_code == 0 and "data key 2" in rotated.output
    write_keys("new", old=old, new=new)
    rewrapped = runner.invoke(cli, ["rewrap-keys"])
    assert rewrapped.exit_code == 0 and "re-wrapped 2" in rewrapped.output
    write_keys("new", new=new)
    after = keyring_from_file(key_file, tmp_path / "data-keys.json")
    assert after.open("acme", "m_1", sealed) == "kept across both rotations"
