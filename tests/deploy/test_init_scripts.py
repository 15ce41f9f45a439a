"""The scripts the deployments run at start, executed here: Casdoor's init_data render,
the assertion key pair, the built-in admin password replacement (against the real
Casdoor), and the README's openssl key-pair one-liner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hanzo_contract.assertion import AssertionSigner, AssertionVerifier
from hanzo_contract.principal import Principal, PrincipalKind
from hanzo_stack.casdoor import state as casdoor_state
from hanzo_stack.casdoor.server import CasdoorServer

from .conftest import (
    COMPOSE_DIR,
    DEPLOY,
    REPO,
    compose_init_script,
    read_env_file,
    readme_line,
    run_shell,
)

TEMPLATE = COMPOSE_DIR / "casdoor" / "init_data.template.json"


def _run(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _casdoor_env(filled_env: Path) -> dict[str, str]:
    return {k: v for k, v in read_env_file(filled_env).items() if k.startswith("CASDOOR_")}


def _k8s_render_script(k8s_objects: list[dict[str, Any]]) -> list[str]:
    (casdoor,) = [
        o for o in k8s_objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "casdoor"
    ]
    (init,) = casdoor["spec"]["template"]["spec"]["initContainers"]
    return init["command"]


def _check_init_data(path: Path, env: dict[str, str]) -> None:
    assert path.stat().st_mode & 0o777 == 0o640
    data = json.loads(path.read_text())
    apps = {a["name"]: a for a in data["applications"]}
    sidecar, cli = apps[casdoor_state.SIDECAR_APP], apps[casdoor_state.CLI_APP]
    assert sidecar["clientId"] == env["CASDOOR_SIDECAR_CLIENT_ID"]
    assert sidecar["clientSecret"] == env["CASDOOR_SIDECAR_CLIENT_SECRET"]
    assert cli["clientId"] == env["CASDOOR_CLI_CLIENT_ID"]
    assert cli["clientSecret"] == env["CASDOOR_CLI_CLIENT_SECRET"]
    (admin,) = data["users"]
    assert admin["password"] == env["CASDOOR_ADMIN_PASSWORD"]
    assert admin["owner"] == casdoor_state.ORGANIZATION
    # the cert the tenant file names; no PEMs, so Casdoor generates it once into Postgres
    (cert,) = data["certs"]
    tenants = yaml.safe_load((DEPLOY / "tenants" / "example.yaml").read_text())
    assert cert["name"] == casdoor_state.CERT_NAME == tenants["casdoor"]["cert"]
    assert cert["certificate"] == cert["privateKey"] == ""


def test_deployment_init_data_matches_the_local_stack() -> None:
    """Same organization, applications, grants and token formats as casdoor/ (hanzo up)."""
    ours = json.loads(TEMPLATE.read_text())
    stack = json.loads((REPO / "casdoor" / "init_data.template.json").read_text())

    def shape(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "apps": {
                a["name"]
                .replace("{{SIDECAR_APP}}", casdoor_state.SIDECAR_APP)
                .replace("{{CLI_APP}}", casdoor_state.CLI_APP): (
                    sorted(a["grantTypes"]),
                    a["tokenFormat"],
                    a["enablePassword"],
                )
                for a in data["applications"]
            },
            "orgs": len(data["organizations"]),
            "users": [(u["name"], u["isAdmin"]) for u in data["users"]],
        }

    assert shape(ours) == shape(stack)


def test_compose_init_renders_init_data_and_one_key_pair(
    compose_model: dict[str, Any], filled_env: Path, tmp_path: Path
) -> None:
    env = _casdoor_env(filled_env)
    script, args = compose_init_script(compose_model, tmp_path)
    first = _run(script, args, env)
    assert first.returncode == 0, first.stderr
    _check_init_data(Path(args[1]), env)
    keys = tmp_path / "etc" / "hanzo"
    private = (keys / "assertion" / "assertion.key").read_bytes()
    public = (keys / "assertion-public" / "assertion.pub").read_bytes()
    assert (keys / "assertion" / "assertion.key").stat().st_mode & 0o077 == 0
    principal = Principal(
        organization="acme",
        subject="acme/alice",
        kind=PrincipalKind.USER,
        scopes=frozenset({"memory:read"}),
    )
    assert AssertionVerifier(public).verify(AssertionSigner(private).sign(principal)).subject == (
        "acme/alice"
    )
    # a restart keeps the key pair (tokens in flight stay valid) and re-renders the data
    again = _run(script, args, env)
    assert again.returncode == 0, again.stderr
    assert (keys / "assertion" / "assertion.key").read_bytes() == private
    assert (keys / "assertion-public" / "assertion.pub").read_bytes() == public


def test_k8s_init_container_renders_the_same_init_data(
    k8s_objects: list[dict[str, Any]], filled_env: Path, tmp_path: Path
) -> None:
    command = _k8s_render_script(k8s_objects)
    assert command[:2] == ["python", "-c"]
    env = _casdoor_env(filled_env)
    out = tmp_path / "init_data.json"
    proc = _run(command[2], [str(TEMPLATE), str(out)], env)
    assert proc.returncode == 0, proc.stderr
    _check_init_data(out, env)


def test_render_escapes_values_and_refuses_a_missing_one(
    k8s_objects: list[dict[str, Any]], filled_env: Path, tmp_path: Path
) -> None:
    script = _k8s_render_script(k8s_objects)[2]
    env = _casdoor_env(filled_env)
    tricky = {**env, "CASDOOR_ADMIN_PASSWORD": 'quo"te\\back\nslash'}
    out = tmp_path / "init_data.json"
    proc = _run(script, [str(TEMPLATE), str(out)], tricky)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["users"][0]["password"] == tricky["CASDOOR_ADMIN_PASSWORD"]

    missing = {k: v for k, v in env.items() if k != "CASDOOR_CLI_CLIENT_SECRET"}
    out.unlink()
    proc = _run(script, [str(TEMPLATE), str(out)], missing)
    assert proc.returncode != 0
    assert "CASDOOR_CLI_CLIENT_SECRET" in proc.stderr
    assert not out.exists()
    for value in missing.values():
        assert value not in proc.stderr + proc.stdout


def _bootstrap_scripts(compose_model: dict[str, Any], k8s_objects: list[dict[str, Any]]) -> str:
    compose_script = compose_model["services"]["casdoor-bootstrap"]["command"][2]
    (job,) = [
        o
        for o in k8s_objects
        if o["kind"] == "Job" and o["metadata"]["name"] == "casdoor-bootstrap"
    ]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][2] == compose_script
    return compose_script


@pytest.mark.casdoor
def test_bootstrap_sets_the_builtin_admin_password_on_real_casdoor(
    casdoor: CasdoorServer, compose_model: dict[str, Any], k8s_objects: list[dict[str, Any]]
) -> None:
    script = _bootstrap_scripts(compose_model, k8s_objects)
    assert casdoor.secrets is not None
    # the stack's own password for built-in/admin, so the shared server is left as it was
    password = casdoor.secrets.builtin_admin_password.get_secret_value()
    env = {
        "CASDOOR_URL": casdoor.url,
        "CASDOOR_SIDECAR_CLIENT_ID": casdoor.client_id,
        "CASDOOR_SIDECAR_CLIENT_SECRET": casdoor.client_secret,
        "CASDOOR_BUILTIN_ADMIN_PASSWORD": password,
    }
    proc = _run(script, [], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "built-in/admin password set" in proc.stdout

    wrong = {**env, "CASDOOR_SIDECAR_CLIENT_SECRET": "not-the-secret"}
    proc = _run(script, [], wrong)
    assert proc.returncode == 1
    assert "NOT set" in proc.stdout
    assert password not in proc.stdout + proc.stderr


def test_readme_openssl_key_pair_works_with_the_contract(tmp_path: Path) -> None:
    run_shell(readme_line("openssl genpkey", "assertion.pub"), tmp_path)
    signer = AssertionSigner((tmp_path / "assertion.key").read_bytes())
    verifier = AssertionVerifier((tmp_path / "assertion.pub").read_bytes())
    principal = Principal(organization="globex", subject="globex/carol", kind=PrincipalKind.USER)
    assert verifier.verify(signer.sign(principal)).organization == "globex"
