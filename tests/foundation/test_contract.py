"""The shared contract: key format, identity headers, assertions, settings."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from hanzo_contract import Limits, Principal
from hanzo_contract.apikey import generate_key, hash_key, parse_key_id
from hanzo_contract.assertion import (
    AssertionSigner,
    AssertionVerifier,
    InvalidAssertion,
    ensure_keypair,
    generate_keypair,
)
from hanzo_contract.headers import USER_ID, replace_identity_headers
from hanzo_contract.settings import HanzoSettings

ALICE = Principal(
    organization="acme",
    subject="acme/alice",
    roles=("reader",),
    scopes=frozenset({"memory:read"}),
    key_id="abcdefghijkl",
    limits=Limits(requests_per_minute=60),
)


def test_keys_are_unique_well_formed_and_hashed_with_the_server_secret() -> None:
    keys = {generate_key()[0] for _ in range(200)}
    assert len(keys) == 200
    key, key_id = generate_key()
    assert key.startswith("hk-") and parse_key_id(key) == key_id
    assert parse_key_id(key + "x") is None and parse_key_id("hk-short") is None
    assert hash_key(b"s1", key) != hash_key(b"s2", key)
    assert key not in hash_key(b"s1", key)


def test_identity_headers_strip_client_values_case_insensitively() -> None:
    sent = [("x-user-id", "acme/mallory"), ("X-ORG-ID", "other"), ("Accept", "*/*")]
    out = replace_identity_headers(sent, ALICE, "assertion")
    names = [k.lower() for k, _ in out]
    assert names.count("x-user-id") == 1 and names.count("x-org-id") == 1
    assert dict(out)[USER_ID] == "acme/alice" and ("Accept", "*/*") in out


def test_assertion_round_trip_and_rejections(tmp_path: Path) -> None:
    private, public = ensure_keypair(tmp_path)
    assert ensure_keypair(tmp_path) == (private, public)  # created once, then reused
    assert private.stat().st_mode & 0o777 == 0o600
    signer = AssertionSigner(private.read_bytes(), ttl_seconds=60)
    verifier = AssertionVerifier(public.read_bytes(), leeway_seconds=0)
    assert verifier.verify(signer.sign(ALICE)) == ALICE

    other_private, _ = generate_keypair()
    with pytest.raises(InvalidAssertion):
        verifier.verify(AssertionSigner(other_private).sign(ALICE))
    with pytest.raises(InvalidAssertion):
        verifier.verify(AssertionSigner(private.read_bytes(), ttl_seconds=-10).sign(ALICE))
    with pytest.raises(InvalidAssertion):
        verifier.verify("not-a-token")
    forged = jwt.encode(
        {"sub": "acme/alice", "org": "acme", "exp": time.time() + 60}, "k" * 32, algorithm="HS256"
    )
    with pytest.raises(InvalidAssertion):
        verifier.verify(forged)


def test_key_limits_only_tighten_plan_limits_field_by_field() -> None:
    plan = Limits(requests_per_minute=100, units_per_day=1000)
    assert plan.tightened_by(Limits(units_per_day=10)) == Limits(
        requests_per_minute=100, units_per_day=10
    )
    # a key asking for more than its plan gets the plan; unset plan fields take the key's
    assert plan.tightened_by(
        Limits(requests_per_minute=1_000_000_000, units_per_month=5)
    ) == Limits(requests_per_minute=100, units_per_day=1000, units_per_month=5)
    assert plan.tightened_by(None) == plan
    assert Limits(requests_per_minute=101).looser_than(plan) == ["requests_per_minute"]
    assert Limits(units_per_day=1001, units_per_month=9).looser_than(plan) == ["units_per_day"]
    assert Limits().looser_than(plan) == []  # unset fields take the plan's
    assert Limits(requests_per_minute=1, units_per_day=1000).looser_than(plan) == []


class _Demo(HanzoSettings):
    model_config = HanzoSettings.model_config | {"env_prefix": "HANZO_DEMO_"}
    config_section = "demo"
    port: int = 1
    name: str = "x"


def test_settings_env_wins_over_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hanzo.toml"
    config.write_text('[demo]\nport = 7\nname = "from-file"\n')
    monkeypatch.setenv("HANZO_CONFIG", str(config))
    monkeypatch.setenv("HANZO_DEMO_PORT", "9")
    settings = _Demo()
    assert settings.port == 9 and settings.name == "from-file"
