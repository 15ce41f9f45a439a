"""The compose file's own env runs our services together, on the production topology.

The env compose renders for the sidecar, the plugin service and the memory service, with
container hostnames and paths mapped onto this machine, starts the real services against
the real Casdoor, a real PostgreSQL whose databases the compose ``postgres-init`` one-shot
makes (its own command and env, the superuser mapped onto the local server's), and a real
three-primary Valkey cluster asking for the compose password (``ValkeyCluster`` forms it
with the CLUSTER commands ``valkey-init``'s ``valkey-cli --cluster create`` sends: the
wheel ships no valkey-cli). The sidecar and memory run as two replicas each, as compose
runs them; the plugin runs once (its replicas share nothing but the cluster). A key minted
with the sidecar CLI then stores and searches memories through the plugin, with
``ApisixForwardAuthFake`` standing in for APISIX (it cannot run here) and applying the
deployed ``apisix.yaml``. Each process gets its own state dir, like its tmpfs.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from redis.cluster import RedisCluster

from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.postgres import PostgresServer
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok
from hanzo_stack.valkey import ValkeyCluster

from .apisix_fake import ApisixForwardAuthFake, FakeResponse
from .conftest import COMPOSE_DIR, REPO, compose, compose_init_script, read_env_file

pytestmark = pytest.mark.casdoor

SERVICES = ("sidecar", "auth", "memory")
#: the processes run: compose's replicas of the sidecar and memory (deploy.replicas: 2)
REPLICAS = {
    "sidecar": ("sidecar", "sidecar_b"),
    "auth": ("auth",),
    "memory": ("memory", "memory_b"),
}
#: container names and paths of compose.yaml that must all be mapped (none may remain)
CONTAINER_REFS = re.compile(
    r"casdoor:8000|sidecar:8090|postgres:5432|valkey-\d:6379|/var/lib/hanzo|/etc/hanzo|/app/"
)


@dataclass
class Deployed:
    org: str
    key: str
    read_only_key: str
    gateway: ApisixForwardAuthFake
    #: the same gateway with memory routed to the second replica
    gateway_b: ApisixForwardAuthFake
    urls: dict[str, str]
    redis: RedisCluster
    postgres: PostgresServer


def _tenant_file(path: Path, org: str) -> None:
    path.write_text(
        "version: 1\n"
        "plans:\n  pro: {requests_per_minute: 600, units_per_day: 100000}\n"
        "organizations:\n"
        f"  - name: {org}\n    plan: pro\n"
        "    roles:\n"
        "      - {name: writer, scopes: ['memory:read', 'memory:write']}\n"
        "      - {name: reader, scopes: ['memory:read']}\n"
        "    users:\n"
        "      - {name: dana, roles: [writer], password_env: DEPLOYTEST_DANA_PASSWORD}\n"
    )


def _render(filled_env: Path, work: Path, casdoor: CasdoorServer, tenants: Path) -> dict[str, Any]:
    """compose config with the operator's .env, pointed at this machine's Casdoor."""
    values = read_env_file(filled_env)
    values.update(
        CASDOOR_ORIGIN=casdoor.url,
        CASDOOR_SIDECAR_CLIENT_ID=casdoor.client_id,
        CASDOOR_SIDECAR_CLIENT_SECRET=casdoor.client_secret,
        HANZO_TENANT_FILE=str(tenants),
    )
    env_file = work / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    proc = compose(["config", "--format", "json"], env_file, work)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _mapper(
    work: Path,
    ports: dict[str, int],
    casdoor: CasdoorServer,
    tenants: Path,
    postgres: PostgresServer,
    cluster: ValkeyCluster,
) -> Any:
    def local(service: str, value: str) -> str:
        pairs = [
            ("http://casdoor:8000", casdoor.url),
            ("http://sidecar:8090", f"http://{LOOPBACK}:{ports['sidecar']}"),
            ("postgres:5432", f"{LOOPBACK}:{postgres.port}"),
            *((f"valkey-{i}:6379", f"{LOOPBACK}:{n.port}") for i, n in enumerate(cluster.nodes)),
            ("/var/lib/hanzo", str(work / service / "state")),
            ("/etc/hanzo/assertion-public", str(work / "etc" / "hanzo" / "assertion-public")),
            ("/etc/hanzo/assertion", str(work / "etc" / "hanzo" / "assertion")),
            ("/etc/hanzo/tenants.yaml", str(tenants)),
            ("/app/", f"{REPO}/"),
        ]
        table = dict(pairs)
        pattern = re.compile("|".join(re.escape(old) for old, _ in pairs))
        leftover = pattern.sub("", value)
        assert not CONTAINER_REFS.search(leftover), f"{service}: unmapped {value}"
        return pattern.sub(lambda m: table[m.group(0)], value)  # one pass: no re-mapping

    return local


def _process_env(service: str, work: Path, env: dict[str, str]) -> dict[str, str]:
    state = work / service / "state"
    state.mkdir(parents=True, exist_ok=True)
    # the image's ENV (Dockerfile): HOME and HANZO_STATE_DIR are the service's volume
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "HOME": str(state),
        "HANZO_STATE_DIR": str(state),
        **env,
    }


def _run_python(env: dict[str, str], *args: str) -> str:
    """``python <args>`` with exactly ``env``, as a container runs a command; must succeed."""
    proc = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _cli(env: dict[str, str], *args: str) -> str:
    return _run_python(env, "-m", "hanzo_stack", *args)


def _start(name: str, argv: list[str], env: dict[str, str], log: Path) -> ManagedProcess:
    process = ManagedProcess(name, argv, log_path=log, cwd=REPO)
    process.env = env  # exactly the deployment's env, nothing from this shell
    return process.start()


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, casdoor: CasdoorServer, filled_env: Path
) -> Iterator[Deployed]:
    work = tmp_path_factory.mktemp("deployed")
    org = f"deploy-{secrets.token_hex(4)}"
    tenants = work / "tenants.yaml"
    _tenant_file(tenants, org)
    model = _render(filled_env, work, casdoor, tenants)
    services = model["services"]
    ports = {name: free_port() for names in REPLICAS.values() for name in names}
    started: list[ManagedProcess] = []
    # the compose `postgres` (a superuser, its databases made by `postgres-init` below) and
    # the `valkey-N` nodes (the password from .env, for clients and peers)
    postgres = PostgresServer(work / "postgres")
    password = services["valkey-0"]["environment"]["VALKEY_PASSWORD"]
    assert {services[f"valkey-{i}"]["environment"]["VALKEY_PASSWORD"] for i in range(3)} == {
        password
    }
    cluster = ValkeyCluster(work / "valkey", primaries=3, password=password)
    try:
        postgres.start()
        cluster.start()
        local = _mapper(work, ports, casdoor, tenants, postgres, cluster)
        # the compose `postgres-init` one-shot: its command, its env with the image's
        # superuser (POSTGRES_USER) mapped onto the local server's
        init_env = dict(services["postgres-init"]["environment"])
        assert init_env["POSTGRES_HOST"] == "postgres"
        init_env.update(
            POSTGRES_HOST=LOOPBACK,
            POSTGRES_PORT=str(postgres.port),
            POSTGRES_USER="postgres",
            POSTGRES_PASSWORD=postgres.password,
        )
        command = services["postgres-init"]["command"]
        assert command[0] == "python"
        _run_python(_process_env("postgres-init", work, init_env), *command[1:])
        # the compose `init` one-shot: the assertion key pair
        script, args = compose_init_script(model, work)
        init_env = dict(services["init"]["environment"])
        _run_python(_process_env("init", work, init_env), "-c", script, *args)
        envs = {
            name: _process_env(
                name, work, {k: local(name, v) for k, v in services[name]["environment"].items()}
            )
            for name in SERVICES
        }
        envs["sidecar"]["DEPLOYTEST_DANA_PASSWORD"] = secrets.token_urlsafe(16)
        # what an operator runs in the sidecar container: apply tenants, mint keys
        _cli(envs["sidecar"], "tenants", "apply", str(tenants))
        for name in SERVICES:
            command = services[name]["command"]
            for replica in REPLICAS[name]:
                port = command.index("--port") + 1
                argv = [sys.executable, *command[1:]]
                argv[command.index("--host") + 1] = LOOPBACK
                argv[port] = str(ports[replica])
                env = _process_env(
                    replica,
                    work,
                    {k: local(replica, v) for k, v in services[name]["environment"].items()},
                )
                env["DEPLOYTEST_DANA_PASSWORD"] = envs["sidecar"]["DEPLOYTEST_DANA_PASSWORD"]
                process = _start(replica, argv, env, work / f"{replica}.log")
                started.append(process)
                process.wait_ready(
                    lambda p=ports[replica]: http_ok(f"http://{LOOPBACK}:{p}/healthz"), 180
                )

        def mint(*scopes: str) -> str:
            args = ["keys", "create", "--org", org, "--owner", "dana", "--json"]
            args += ["--name", f"k-{secrets.token_hex(3)}"]
            for scope in scopes:
                args += ["--scope", scope]
            return json.loads(_cli(envs["sidecar"], *args))["key"]

        hosts = {
            "auth:8200": f"{LOOPBACK}:{ports['auth']}",
            "memory:8600": f"{LOOPBACK}:{ports['memory']}",
            "sidecar:8090": f"{LOOPBACK}:{ports['sidecar']}",
            "casdoor:8000": casdoor.url.removeprefix("http://"),
        }
        hosts_b = {
            **hosts,
            "memory:8600": f"{LOOPBACK}:{ports['memory_b']}",
            "sidecar:8090": f"{LOOPBACK}:{ports['sidecar_b']}",
        }
        apisix_yaml = COMPOSE_DIR / "apisix" / "apisix.yaml"
        limiter = RedisCluster.from_url(local("auth", envs["auth"]["HANZO_GATEWAY_REDIS_URL"]))
        try:
            yield Deployed(
                org=org,
                key=mint("memory:read", "memory:write"),
                read_only_key=mint("memory:read"),
                gateway=ApisixForwardAuthFake(apisix_yaml, hosts),
                gateway_b=ApisixForwardAuthFake(apisix_yaml, hosts_b),
                urls={r: f"http://{LOOPBACK}:{ports[r]}" for rs in REPLICAS.values() for r in rs},
                redis=limiter,
                postgres=postgres,
            )
        finally:
            limiter.close()
    finally:
        for process in reversed(started):
            process.stop()
        cluster.stop()
        postgres.stop()


def test_services_are_healthy_and_the_sidecar_reaches_casdoor(deployed: Deployed) -> None:
    for name, url in deployed.urls.items():
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200, name
    for replica in REPLICAS["sidecar"]:
        ready = httpx.get(f"{deployed.urls[replica]}/readyz", timeout=10)
        assert ready.status_code == 200, replica
        assert ready.json()["store"] == "ok"
        assert ready.json()["casdoor"] == "ok"


def _store(deployed: Deployed, content: str) -> FakeResponse:
    """One memory stored through the gateway (to the first memory replica)."""
    stored = deployed.gateway.request(
        "POST",
        "/v1/memory/store",
        headers={"X-API-Key": deployed.key},
        json={"memories": [{"content": content}]},
    )
    assert stored.status_code in (200, 201), stored.body
    return stored


def test_each_part_keeps_its_state_in_its_own_database(deployed: Deployed) -> None:
    """The sidecar's keys and the memory service's memories are in their PostgreSQL
    databases, written as the application roles postgres-init made (not the owners)."""
    _store(deployed, "kept in the memory database")
    for part in ("sidecar", "memory"):
        name = f"hanzo_{part}"
        with psycopg.connect(deployed.postgres.dsn(database=name)) as conn:
            owners = conn.execute(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
            # the owner role migrated; the replicas are connected as the app role
            assert owners == [(f"{name}_owner",)], part
            users = conn.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
            assert (f"{name}_app",) in users, part


def test_a_write_through_one_memory_replica_is_read_through_the_other(
    deployed: Deployed,
) -> None:
    stored = _store(deployed, "replica a saw the green lantern")
    (memory_id,) = stored.json()["ids"]
    found = deployed.gateway_b.request(
        "POST",
        "/v1/memory/search",
        headers={"X-API-Key": deployed.key},
        json={"query": "green lantern", "top_k": 3},
    )
    assert found.status_code == 200, found.body
    assert memory_id in [h["memory"]["id"] for h in found.json()["results"]]


def test_store_and_search_through_the_gateway(deployed: Deployed) -> None:
    gw, key = deployed.gateway, deployed.key
    forged = {"X-Org-Id": "someone-else", "X-User-Id": "someone-else/root"}
    stored = gw.request(
        "POST",
        "/v1/memory/store",
        headers={"Authorization": f"Bearer {key}", **forged},
        json={"memories": [{"content": "the deploy test remembers the blue door"}]},
    )
    assert stored.status_code in (200, 201), stored.body
    (memory_id,) = stored.json()["ids"]
    found = gw.request(
        "POST",
        "/v1/memory/search",
        headers={"X-API-Key": key},
        json={"query": "which door", "top_k": 3},
    )
    assert found.status_code == 200, found.body
    hits = found.json()["results"]
    assert [h["memory"]["id"] for h in hits][:1] == [memory_id]


def test_denials_reach_the_client_as_the_plugin_wrote_them(deployed: Deployed) -> None:
    gw = deployed.gateway
    body = {"memories": [{"content": "nope"}]}
    missing = gw.request("POST", "/v1/memory/store", json=body)
    assert missing.status_code == 401
    assert missing.headers["content-type"].startswith("application/json")
    assert missing.json()["error"]["code"]
    unknown = {"X-API-Key": "hk-000000000000_x"}
    bad = gw.request("POST", "/v1/memory/store", headers=unknown, json=body)
    assert bad.status_code == 401
    read_only = gw.request(
        "POST", "/v1/memory/store", headers={"X-API-Key": deployed.read_only_key}, json=body
    )
    assert read_only.status_code == 403
    assert read_only.json()["error"]["code"]
    # the memory service itself refuses a request that skipped the plugin
    direct = httpx.post(f"{deployed.urls['memory']}/v1/memory/store", json=body, timeout=10)
    assert direct.status_code == 401


def _cluster_keys(cluster: RedisCluster) -> int:
    """Keys on every primary (``DBSIZE`` on a cluster client asks one node only)."""
    return len(cluster.keys(target_nodes=RedisCluster.PRIMARIES))


def test_rate_limit_state_lives_in_the_deployment_valkey_cluster(deployed: Deployed) -> None:
    assert len(deployed.redis.get_primaries()) == 3
    before = _cluster_keys(deployed.redis)
    r = deployed.gateway.request(
        "POST", "/v1/memory/search", headers={"X-API-Key": deployed.key}, json={"query": "x"}
    )
    assert r.status_code == 200, r.body
    # the limiter fails open, so only the counters themselves show it reached the cluster
    assert _cluster_keys(deployed.redis) >= max(before, 1)
