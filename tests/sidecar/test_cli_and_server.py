"""The CLI and ``python -m iam_sidecar serve`` as real processes against the real Casdoor,
sharing one store: a SQLite file, or a PostgreSQL database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok

from .helpers import SEED_PASSWORDS, StoreTarget, unique_example

REPO = Path(__file__).resolve().parents[2]


def _env(casdoor: CasdoorServer, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANZO_")}
    env.update(
        HANZO_STATE_DIR=str(state_dir),
        HANZO_SIDECAR_CASDOOR_URL=casdoor.url,
        HANZO_SIDECAR_CASDOOR_CLIENT_ID=casdoor.client_id,
        HANZO_SIDECAR_CASDOOR_CLIENT_SECRET=casdoor.client_secret,
        HANZO_SIDECAR_CASDOOR_RETRIES="1",
        **SEED_PASSWORDS,
        **extra,
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iam_sidecar", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def test_cli_and_server_round_trip(
    casdoor: CasdoorServer, tmp_path: Path, store_target: StoreTarget
) -> None:
    path, names = unique_example(tmp_path)
    acme = names["acme"]
    state = tmp_path / "state"
    env = _env(casdoor, state, **store_target.env())

    assert "+ create organization" in _ok(_cli(env, "tenants", "plan", str(path)))
    applied = json.loads(_ok(_cli(env, "tenants", "apply", str(path), "--json")))
    assert len(applied["applied"]) == 20
    assert "no changes" in _ok(_cli(env, "tenants", "plan", str(path), "--exit-code"))

    created = json.loads(
        _ok(
            _cli(
                env,
                *("keys", "create", "--org", acme, "--owner", "bob", "--name", "cli"),
                *("--scope", "memory:read", "--rpm", "5", "--json"),
            )
        )
    )
    key, key_id = created["key"], created["record"]["key_id"]
    refused = _cli(
        env,
        *("keys", "create", "--org", acme, "--owner", "bob", "--name", "x"),
        *("--scope", "memory:write"),
    )
    assert refused.returncode == 1 and "scope_escalation" in refused.stderr

    app_key = json.loads(
        _ok(
            _cli(
                {**env, "HANZO_SIDECAR_TENANT_FILE": str(path)},
                *("keys", "create", "--org", acme, "--owner", f"{acme}-indexer", "--app"),
                *("--name", "indexer", "--scope", "memory:write", "--json"),
            )
        )
    )
    assert app_key["record"]["owner_kind"] == "application"

    port = free_port()
    server = ManagedProcess(
        "sidecar",
        [sys.executable, "-m", "iam_sidecar", "serve", "--host", LOOPBACK, "--port", str(port)],
        log_path=tmp_path / "sidecar.log",
        cwd=REPO,
        env=_env(casdoor, state, HANZO_SIDECAR_TENANT_FILE=str(path), **store_target.env()),
    ).start()
    base = f"http://{LOOPBACK}:{port}"
    try:
        server.wait_ready(lambda: http_ok(f"{base}/healthz"), timeout=30)
        token = (state / "sidecar" / "verify_token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}

        def verify(k: str) -> httpx.Response:
            return httpx.post(f"{base}/v1/keys/verify", json={"key": k}, headers=auth)

        first = verify(key)
        assert first.status_code == 200, first.text
        limits = first.json()["principal"]["limits"]
        assert {name: value for name, value in limits.items() if value is not None} == {
            "requests_per_minute": 5,
            "units_per_day": 100000,
            "units_per_month": 2000000,
        }
        as_app = verify(app_key["key"])
        assert as_app.status_code == 200, as_app.text
        assert as_app.json()["principal"]["scopes"] == ["memory:write"]
        assert as_app.json()["principal"]["kind"] == "application"
        table = _ok(_cli(env, "keys", "list", "--org", acme))
        assert f"hk-{key_id}" in table and key.split("_", 1)[1] not in table
        rotated = json.loads(
            _ok(_cli(env, "keys", "rotate", "--org", acme, key_id, "--grace", "0", "--json"))
        )
        assert verify(rotated["key"]).status_code == 200
        assert verify(key).status_code == 401
        _ok(_cli(env, "keys", "revoke", "--org", acme, key_id))
        revoked = verify(rotated["key"])
        assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "revoked_key"
        shown = json.loads(_ok(_cli(env, "keys", "show", "--org", acme, key_id, "--json")))
        assert shown["state"] == "revoked"
        assert httpx.get(f"{base}/readyz").json()["casdoor"] == "ok"
    finally:
        server.stop()
    events = json.loads(_ok(_cli(env, "audit", "--org", acme, "--json", "--limit", "100")))
    actions = {e["action"] for e in events}
    assert {"sync.create", "key.create", "key.rotate", "key.revoke"} <= actions
    assert "audit log" in _ok(_cli(env, "audit", "--org", acme))
    usage = json.loads(_ok(_cli(env, "audit", "usage", "--org", acme, "--json")))
    counted = {(r["level"], r["subject"]): r["verifications"] for r in usage}
    assert counted[("key", key_id)] == 2  # the two successful verifications of bob's key
    assert counted[("org", acme)] == 3  # plus the indexer's
    log_text = (tmp_path / "sidecar.log").read_text()
    secrets = [key, rotated["key"], casdoor.client_secret, token]
    if store_target.migrate_dsn is not None:  # the database passwords
        secrets += [
            urlsplit(dsn).password for dsn in (store_target.migrate_dsn, store_target.target)
        ]
    for secret in secrets:
        assert secret and secret not in log_text


def test_cli_reports_casdoor_down_and_bad_files_clearly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANZO_")}
    env.update(
        HANZO_STATE_DIR=str(tmp_path / "state"),
        HANZO_SIDECAR_CASDOOR_URL=f"http://{LOOPBACK}:{free_port()}",
        HANZO_SIDECAR_CASDOOR_RETRIES="1",
    )
    path, _ = unique_example(tmp_path)
    down = _cli(env, "tenants", "apply", str(path))
    assert down.returncode == 1
    assert "casdoor_unavailable" in down.stderr and "nothing was read or changed" in down.stderr
    key = _cli(
        env,
        *("keys", "create", "--org", "acme", "--owner", "bob", "--name", "k", "-s", "memory:read"),
    )
    assert key.returncode == 1 and "casdoor_unavailable" in key.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\norganizations:\n  - name: ok\n    plan: missing\n")
    invalid = _cli(env, "tenants", "plan", str(bad))
    assert invalid.returncode == 1
    assert f"{bad}:4: organizations[0].plan: unknown plan 'missing'" in invalid.stderr


def test_wrong_casdoor_credentials_are_a_clean_error(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, _ = unique_example(tmp_path)
    env = {
        **_env(casdoor, tmp_path / "state"),
        "HANZO_SIDECAR_CASDOOR_CLIENT_SECRET": "wrong-secret",
    }
    result = _cli(env, "tenants", "plan", str(path))
    assert result.returncode == 1
    assert "casdoor_error" in result.stderr and "Traceback" not in result.stderr
    assert "wrong-secret" not in result.stderr + result.stdout
