"""One check for both deployments: the env they give our three services is what the
services' settings classes read, parses, and agrees across services."""

from __future__ import annotations

import importlib
import os
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import pytest
import typer

from gateway_plugins.routes import RouteTable
from gateway_plugins.settings import GatewaySettings
from hanzo_contract.settings import CONFIG_ENV, HanzoSettings
from hanzo_stack.production import DATABASES
from iam_sidecar.settings import SidecarSettings
from memory_service.settings import MemorySettings

from .conftest import REPO

#: deployment service name -> (env prefix, settings class, module run with ``python -m``)
SERVICES: dict[str, tuple[str, type[HanzoSettings], str]] = {
    "sidecar": ("HANZO_SIDECAR_", SidecarSettings, "iam_sidecar"),
    "auth": ("HANZO_GATEWAY_", GatewaySettings, "gateway_plugins"),
    "memory": ("HANZO_MEMORY_", MemorySettings, "memory_service.cli"),
}
#: where the image puts the repo (Dockerfile WORKDIR)
IMAGE_APP = PurePosixPath("/app")


def check_names(service: str, env: dict[str, str]) -> None:
    """Every HANZO_<AREA>_* name the deployment sets is a field the service reads."""
    prefix, settings_cls, _ = SERVICES[service]
    ours = [k for k in env if k.startswith("HANZO_")]
    assert ours, f"{service}: no HANZO_* settings at all"
    for name in ours:
        reader = settings_cls.__name__
        assert name.startswith(prefix), f"{service}: {name} is not read by {reader}"
        field = name[len(prefix) :].lower()
        assert field in settings_cls.model_fields, f"{service}: {name} is no setting of {reader}"


def load(
    monkeypatch: pytest.MonkeyPatch, settings_cls: type[HanzoSettings], env: dict[str, str]
) -> HanzoSettings:
    for key in list(os.environ):
        if key.startswith("HANZO_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return settings_cls()


def check_command(service: str, command: list[str], port: int) -> None:
    """``python -m <module> serve --host 0.0.0.0 --port N``, and the module has that CLI."""
    _, _, module = SERVICES[service]
    everywhere = "0.0.0.0"  # noqa: S104 - inside the container network, by design
    assert command == ["python", "-m", module, "serve", "--host", everywhere, "--port", str(port)]
    cli_module = importlib.import_module(module if module.endswith(".cli") else f"{module}.cli")
    serve = typer.main.get_command(cli_module.cli).commands["serve"]  # type: ignore[attr-defined]
    assert {"host", "port"} <= {p.name for p in serve.params}
    runnable = module.endswith(".cli") or (REPO / module.replace(".", "/") / "__main__.py").exists()
    assert runnable, f"python -m {module} has nothing to run"


def probe_paths_exist(service: str, paths: set[str]) -> None:
    """The health paths probed are routes the service's package declares."""
    package = SERVICES[service][2].split(".")[0]
    source = "\n".join(p.read_text() for p in (REPO / package).rglob("*.py"))
    for path in paths:
        assert f'"{path}"' in source, f"{service} declares no route {path}"


def check_database(url: str, part: str, role: str, password: str) -> None:
    """``url`` reaches ``part``'s database of the production profile on the deployment's
    PostgreSQL service, as ``role`` (owner or app) with the secret file's password."""
    parsed = urlparse(url)
    name = DATABASES[part]
    assert parsed.scheme in ("postgresql", "postgres"), url
    assert (parsed.hostname, parsed.port, parsed.path) == ("postgres", 5432, f"/{name}")
    assert parsed.username == f"{name}_{role}"
    assert unquote(parsed.password or "") == password


def check_agreement(
    monkeypatch: pytest.MonkeyPatch,
    envs: dict[str, dict[str, str]],
    secrets: dict[str, str],
    origin: str,
    valkey_nodes: set[str],
) -> None:
    """Load each service's settings from the deployment's env and check they fit together,
    on the production profile's topology: the sidecar and memory on their PostgreSQL
    databases, the limiter on the Valkey cluster whose node hosts are ``valkey_nodes``."""
    for service, env in envs.items():
        check_names(service, env)
    sidecar = load(monkeypatch, SidecarSettings, envs["sidecar"])
    gateway = load(monkeypatch, GatewaySettings, envs["auth"])
    memory = load(monkeypatch, MemorySettings, envs["memory"])
    assert isinstance(sidecar, SidecarSettings)
    assert isinstance(gateway, GatewaySettings)
    assert isinstance(memory, MemorySettings)

    # the plugin and the sidecar share the verify token; the sidecar has its hash secret
    assert sidecar.verify_token is not None
    token = sidecar.verify_token.get_secret_value()
    assert token == gateway.verify_token.get_secret_value() == secrets["HANZO_VERIFY_TOKEN"]
    assert sidecar.hash_secret_bytes == secrets["HANZO_KEY_HASH_SECRET"].encode()
    # Casdoor: the sidecar's application credentials, the plugin's accepted audiences
    assert sidecar.casdoor_url == gateway.casdoor_url == "http://casdoor:8000"
    assert sidecar.casdoor_client_id == secrets["CASDOOR_SIDECAR_CLIENT_ID"]
    assert sidecar.casdoor_client_secret is not None
    assert (
        sidecar.casdoor_client_secret.get_secret_value() == secrets["CASDOOR_SIDECAR_CLIENT_SECRET"]
    )
    assert gateway.jwt_audiences == [
        secrets["CASDOOR_SIDECAR_CLIENT_ID"],
        secrets["CASDOOR_CLI_CLIENT_ID"],
    ]
    assert gateway.issuer() == origin.rstrip("/")
    # shared limits on the Valkey cluster, authenticated with the deployment's password
    assert gateway.limiter_backend == "redis"
    assert gateway.redis_cluster is True
    seed = urlparse(gateway.redis_url)
    assert seed.hostname in valkey_nodes and seed.port == 6379
    assert unquote(seed.password or "") == secrets["REDIS_PASSWORD"]
    # the key store on PostgreSQL: the app role serves, the owner role migrates
    assert sidecar.database_url is not None and sidecar.database_migrate_url is not None
    sidecar_url = sidecar.database_url.get_secret_value()
    check_database(sidecar_url, "sidecar", "app", secrets["SIDECAR_DB_PASSWORD"])
    migrate = sidecar.database_migrate_url.get_secret_value()
    check_database(migrate, "sidecar", "owner", secrets["SIDECAR_DB_OWNER_PASSWORD"])
    assert set(gateway.limit_levels) == {"credential", "organization"}
    # the route table baked into the image routes the memory and key APIs
    assert gateway.routes_file is not None
    routes_in_repo = REPO / PurePosixPath(gateway.routes_file).relative_to(IMAGE_APP)
    table = RouteTable.load(Path(routes_in_repo))
    for method, path in (("POST", "/v1/memory/store"), ("POST", "/v1/keys"), ("GET", "/v1/usage")):
        assert table.match(method, path) is not None, f"{method} {path} not routed"
    # one key pair: private half in the plugin, public half in the sidecar and memory
    assert gateway.assertion_key_file is not None
    assert sidecar.assertion_public_key_path is not None
    assert gateway.assertion_key_file.name == "assertion.key"
    assert sidecar.assertion_public_key_path == memory.assertion_public_key
    assert memory.assertion_public_key.name == "assertion.pub"
    # memories on PostgreSQL (shared by the replicas) with the bundled embedder
    assert memory.backend == "postgres"
    assert memory.postgres_dsn is not None and memory.postgres_migrate_dsn is not None
    dsn = memory.postgres_dsn.get_secret_value()
    check_database(dsn, "memory", "app", secrets["MEMORY_DB_PASSWORD"])
    migrate = memory.postgres_migrate_dsn.get_secret_value()
    check_database(migrate, "memory", "owner", secrets["MEMORY_DB_OWNER_PASSWORD"])
    assert memory.embedder == "local"
    assert sidecar.tenant_file is not None
