"""deploy/compose: renders with the operator's .env, refuses without a secret, publishes
only the gateway, health-checks and limits every long-running service."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_stack.casdoor.install import CASDOOR_VERSION

from . import service_env
from .conftest import COMPOSE_DIR, COMPOSE_FILE, DEPLOY, compose, empty_keys, read_env_file

EXAMPLE = COMPOSE_DIR / ".env.example"
VALKEY_NODES = {"valkey-0", "valkey-1", "valkey-2"}
LONG_RUNNING = {"postgres", *VALKEY_NODES, "casdoor", "sidecar", "auth", "memory", "apisix"}
ONE_SHOT = {"init", "casdoor-bootstrap", "postgres-init", "valkey-init"}
SERVICE_PORTS = {"sidecar": 8090, "auth": 8200, "memory": 8600}


def _required_vars() -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_FILE.read_text()))


def _optional_vars() -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+):-\}", COMPOSE_FILE.read_text()))


def test_readme_one_liner_fills_every_secret(filled_env: Path) -> None:
    filled = read_env_file(filled_env)
    secrets = empty_keys(EXAMPLE)
    assert len(secrets) >= 10
    values = [filled[k] for k in secrets]
    assert all(re.fullmatch(r"[0-9a-f]{48}", v) for v in values)
    assert len(set(values)) == len(values), "every secret gets its own value"
    # the non-secret settings keep the example's values
    example = read_env_file(EXAMPLE)
    assert {k: filled[k] for k in example if example[k]} == {k: v for k, v in example.items() if v}


def test_renders_every_service(compose_model: dict[str, Any]) -> None:
    assert set(compose_model["services"]) == LONG_RUNNING | ONE_SHOT


@pytest.mark.parametrize("name", sorted(_required_vars()))
def test_missing_required_value_stops_with_its_name(
    name: str, filled_env: Path, home: Path, tmp_path: Path
) -> None:
    broken = tmp_path / ".env"
    broken.write_text(re.sub(rf"(?m)^{name}=.*$", f"{name}=", filled_env.read_text()))
    proc = compose(["config", "--quiet"], broken, home)
    assert proc.returncode != 0
    assert f"required variable {name} is missing a value" in proc.stderr
    assert f"set {name} in deploy/compose/.env" in proc.stderr


def test_every_secret_is_required_and_has_no_default() -> None:
    text = COMPOSE_FILE.read_text()
    secrets = set(empty_keys(EXAMPLE))
    optional = _optional_vars()
    # seed-user passwords are the only optional ones: exactly those the example tenants name
    tenants = yaml.safe_load((DEPLOY / "tenants" / "example.yaml").read_text())
    seeds = {
        user["password_env"]
        for org in tenants["organizations"]
        for user in org.get("users", [])
        if user.get("password_env")
    }
    assert optional == seeds
    assert secrets - optional <= _required_vars()
    for name in secrets:
        defaults = re.findall(rf"\$\{{{name}:?-([^}}]+)\}}", text)
        assert defaults == [], f"{name} has a default: {defaults}"


def test_only_the_gateway_is_published_and_on_loopback(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"apisix"}
    (port,) = services["apisix"]["ports"]
    assert port["host_ip"] == "127.0.0.1"
    assert port["target"] == 9080
    # everything but the gateway and Casdoor sits on the internal network only
    assert compose_model["networks"]["backend"].get("internal") is True
    for name, svc in services.items():
        nets = set(svc.get("networks") or {})
        if name == "apisix":
            assert nets == {"backend", "edge"}
        elif name == "casdoor":
            assert nets == {"backend", "egress"}
        elif name == "init":
            assert svc["network_mode"] == "none"
        else:
            assert nets == {"backend"}, name
        for port in svc.get("expose") or []:
            pytest.fail(f"{name} exposes {port}")


def test_gateway_defaults_to_loopback_without_bind_settings(
    filled_env: Path, home: Path, tmp_path: Path
) -> None:
    env = tmp_path / ".env"
    env.write_text(re.sub(r"(?m)^HANZO_GATEWAY_(BIND|PORT)=.*\n", "", filled_env.read_text()))
    proc = compose(["config", "--format", "json"], env, home)
    assert proc.returncode == 0, proc.stderr
    (port,) = json.loads(proc.stdout)["services"]["apisix"]["ports"]
    assert (port["host_ip"], port["published"]) == ("127.0.0.1", "9080")


def test_long_running_services_have_health_checks_and_limits(
    compose_model: dict[str, Any],
) -> None:
    services = compose_model["services"]
    for name in LONG_RUNNING:
        svc = services[name]
        test = svc.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), f"{name} has no limits"
        assert svc["restart"] == "unless-stopped"
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no"
    # one-shots are waited for to succeed; everything else waits for health
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond["condition"] == expected, f"{name} -> {dep}"


def test_our_probes_hit_real_routes(compose_model: dict[str, Any]) -> None:
    for name, port in SERVICE_PORTS.items():
        test = " ".join(compose_model["services"][name]["healthcheck"]["test"])
        url = urlparse(re.search(r"http://[^' ]+", test).group(0))  # type: ignore[union-attr]
        assert url.port == port
        service_env.probe_paths_exist(name, {url.path})


def test_images_are_pinned_and_casdoor_matches_the_stack(compose_model: dict[str, Any]) -> None:
    for name, svc in compose_model["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
    assert compose_model["services"]["casdoor"]["image"] == f"casbin/casdoor:{CASDOOR_VERSION}"


def test_services_run_as_non_root_with_least_privilege(compose_model: dict[str, Any]) -> None:
    for name, svc in compose_model["services"].items():
        assert svc.get("cap_drop") == ["ALL"] or name == "postgres", name
        if "build" in svc:  # our image: read-only root, writable only where mounted
            assert svc["read_only"] is True, name
            assert "no-new-privileges:true" in svc["security_opt"]


def test_commands_and_env_match_the_services(
    compose_model: dict[str, Any], filled_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose_model["services"]
    for name, port in SERVICE_PORTS.items():
        service_env.check_command(name, services[name]["command"], port)
    secrets = read_env_file(filled_env)
    envs = {name: dict(services[name]["environment"]) for name in SERVICE_PORTS}
    service_env.check_agreement(monkeypatch, envs, secrets, secrets["CASDOOR_ORIGIN"], VALKEY_NODES)


def test_apisix_routes_reach_the_services() -> None:
    routes = yaml.safe_load((COMPOSE_DIR / "apisix" / "apisix.yaml").read_text())
    nodes = {u["id"]: next(iter(u["nodes"])) for u in routes["upstreams"]}
    assert nodes == {
        "memory": f"memory:{SERVICE_PORTS['memory']}",
        "sidecar": f"sidecar:{SERVICE_PORTS['sidecar']}",
        "casdoor": "casdoor:8000",
    }
    (plugins,) = routes["plugin_configs"]
    assert plugins["plugins"]["forward-auth"]["uri"] == f"http://auth:{SERVICE_PORTS['auth']}/auth"
    by_id = {r["id"]: r for r in routes["routes"]}
    assert by_id["memory-api"]["uris"] == ["/v1/memory/*"]
    assert "/v1/keys" in by_id["keys-api"]["uris"]
    for rid in ("memory-api", "keys-api"):
        assert by_id[rid]["plugin_config_id"] == plugins["id"]
    # a client cannot smuggle identity headers past the plugin: forward-auth overwrites
    # each of them with the plugin's answer, and nothing removes them afterwards
    forward_auth = plugins["plugins"]["forward-auth"]
    assert set(IDENTITY_HEADERS) <= set(forward_auth["upstream_headers"])
    assert set(plugins["plugins"]) == {"forward-auth"}
    assert {"Authorization", "X-API-Key"} == set(forward_auth["request_headers"])
    assert forward_auth["allow_degradation"] is False
    assert (COMPOSE_DIR / "apisix" / "apisix.yaml").read_text().rstrip().endswith("#END")


def test_forward_auth_agrees_with_the_gateway_teams_apisix_config() -> None:
    """deploy/apisix is the APISIX integration the gateway plugin documents; the deployed
    copy may only differ in where the services are and in passing more denial headers."""
    ours = yaml.safe_load((COMPOSE_DIR / "apisix" / "apisix.yaml").read_text())
    theirs = yaml.safe_load((DEPLOY / "apisix" / "apisix.yaml").read_text())
    (mine,) = ours["plugin_configs"]
    (reference,) = theirs["plugin_configs"]
    a, b = mine["plugins"]["forward-auth"], reference["plugins"]["forward-auth"]
    for key in ("request_method", "request_headers", "allow_degradation", "status_on_error"):
        assert a[key] == b[key], key
    assert set(a["upstream_headers"]) >= set(b["upstream_headers"])
    assert set(a["client_headers"]) >= set(b["client_headers"])
    assert urlparse(a["uri"]).path == urlparse(b["uri"]).path
    assert set(mine["plugins"]) == set(reference["plugins"])


#: forward-auth's attributes (apache/apisix apisix/plugins/forward-auth.lua schema)
FORWARD_AUTH_ATTRIBUTES = {
    "uri", "allow_degradation", "status_on_error", "ssl_verify", "request_method",
    "request_headers", "extra_headers", "upstream_headers", "client_headers",
    "consumer_header", "timeout", "keepalive", "keepalive_timeout", "keepalive_pool",
}  # fmt: skip


def test_apisix_runs_standalone_with_known_plugin_settings() -> None:
    config = yaml.safe_load((COMPOSE_DIR / "apisix" / "config.yaml").read_text())
    assert config["deployment"] == {
        "role": "data_plane",
        "role_data_plane": {"config_provider": "yaml"},
    }
    assert config["apisix"]["enable_admin"] is False
    assert config["apisix"]["node_listen"] == [{"port": 9080}]
    routes = yaml.safe_load((COMPOSE_DIR / "apisix" / "apisix.yaml").read_text())
    (plugins,) = routes["plugin_configs"]
    forward_auth = plugins["plugins"]["forward-auth"]
    assert set(forward_auth) <= FORWARD_AUTH_ATTRIBUTES
    assert forward_auth["request_method"] in ("GET", "POST")
    assert 1 <= forward_auth["timeout"] <= 60000


def test_topology_is_the_production_profiles(compose_model: dict[str, Any]) -> None:
    """Two stateless replicas each of the sidecar, the plugin and memory; their databases
    made by postgres-init first; the limiter's cluster of three primaries formed by
    valkey-init from exactly those nodes, before the plugin starts."""
    services = compose_model["services"]
    for name in ("sidecar", "auth", "memory"):
        assert services[name]["deploy"]["replicas"] == 2, name
    for name in ("sidecar", "memory"):
        assert "postgres-init" in services[name]["depends_on"], name
        # no writable named volume: a replica keeps nothing the other must see
        mounts = services[name].get("volumes", [])
        assert all(v.get("read_only") for v in mounts if v["type"] == "volume"), name
    init = services["postgres-init"]
    assert init["command"] == ["python", "-m", "hanzo_stack.deploy_databases"]
    assert init["environment"]["POSTGRES_HOST"] == "postgres"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert set(services["auth"]["depends_on"]) >= {"valkey-init"}
    script = services["valkey-init"]["command"][-1]
    create = re.search(r"--cluster create ((?:\S+:6379 ?)+)", script)
    assert create is not None
    assert set(create.group(1).replace(":6379", "").split()) == VALKEY_NODES
    assert "--cluster-replicas 0" in script
    for node in VALKEY_NODES:
        svc = services[node]
        assert svc["environment"]["VALKEY_NODE"] == node
        command = svc["command"][-1]
        assert "--cluster-enabled yes" in command
        assert '--cluster-announce-hostname "$$VALKEY_NODE"' in command
        # the password is in the node's 0600 file (clients and peers), never on argv
        assert "requirepass" in command and "masterauth" in command and "umask 077" in command
        assert "--requirepass" not in command
