"""``hanzo up|down|status``: the whole stack on embedded defaults and loopback ports.

Casdoor (installed if missing), the IAM sidecar, the forward-auth plugin service, the
memory service and an nginx gateway routing ``/v1/memory/*`` and ``/v1/keys*`` through the
plugin. Every process is detached with a pid file and a log under the state dir, so ``down``
and ``status`` work from any later shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from hanzo_contract.assertion import ensure_keypair
from hanzo_contract.settings import ensure_secret, write_private
from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.casdoor.ui import casdoor_ui_dir
from hanzo_stack.process import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    http_ok,
    pid_alive,
    tcp_open,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TENANT_FILE = REPO / "deploy" / "tenants" / "example.yaml"
SERVICES = ("sidecar", "gateway", "memory", "nginx")


class StackInfo(BaseModel):
    """What ``up`` started, written to ``<state>/stack.json`` (no secrets in it)."""

    state_dir: str
    casdoor_url: str
    cli_client_id: str
    gateway_url: str
    ports: dict[str, int]
    logs_dir: str
    tenant_file: str
    demo_key_path: str | None = None
    demo_organization: str | None = None


@dataclass
class StackLayout:
    state_dir: Path
    run_dir: Path = field(init=False)
    logs_dir: Path = field(init=False)
    info_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.run_dir = self.state_dir / "run"
        self.logs_dir = self.state_dir / "logs"
        self.info_path = self.state_dir / "stack.json"
        self.config_path = self.state_dir / "hanzo.toml"

    def seed_passwords(self, tenant_file: Path) -> dict[str, str]:
        """Passwords for the tenant file's dev seed users (``password_env``), made once."""
        import yaml

        path = self.state_dir / "seed-passwords.json"
        known = json.loads(path.read_text()) if path.exists() else {}
        data = yaml.safe_load(tenant_file.read_text()) or {}
        wanted = [
            user["password_env"]
            for org in data.get("organizations", [])
            for user in org.get("users", [])
            if user.get("password_env")
        ]
        if any(name not in known for name in wanted):
            known |= {n: secrets.token_urlsafe(12) for n in wanted if n not in known}
            write_private(path, json.dumps(known, indent=2))
        return known

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"


def _toml(sections: dict[str, dict[str, object]]) -> str:
    """TOML for flat tables of strings, numbers and string lists (JSON literals are valid
    TOML basic strings and arrays for these)."""
    lines: list[str] = ["# written by `hanzo up`; read by every part and by the hanzo CLI"]
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hanzo_stack", *args]


class Stack:
    def __init__(self, state_dir: Path, progress: Callable[[str], None] = print) -> None:
        self.layout = StackLayout(state_dir)
        self.casdoor = CasdoorServer(state_dir)
        self.say = progress

    # ------------------------------------------------------------------ configuration
    def _write_config(self, ports: dict[str, int], tenant_file: Path) -> Path:
        """One ``<state>/hanzo.toml`` (0600) for every part, and for the CLI afterwards."""
        state = self.layout.state_dir
        casdoor = self.casdoor
        assert casdoor.secrets is not None
        ensure_keypair(state)  # assertion.key for the plugin, assertion.pub for upstreams
        sections: dict[str, dict[str, object]] = {
            "sidecar": {
                "casdoor_url": casdoor.url,
                "casdoor_client_id": casdoor.client_id,
                "casdoor_client_secret": casdoor.client_secret,
                "tenant_file": str(tenant_file),
            },
            "gateway": {
                "sidecar_url": f"http://{LOOPBACK}:{ports['sidecar']}",
                # the sidecar keeps its generated verify token in <state>/sidecar/
                "verify_token": ensure_secret(state / "sidecar", "verify_token"),
                "casdoor_url": casdoor.url,
                "jwt_audiences": [casdoor.client_id],
                "jwt_shared_audiences": [casdoor.secrets.cli_client_id],
                "routes_file": str(REPO / "deploy" / "stack" / "routes.yaml"),
                "quota_db_path": str(state / "quota.db"),
            },
            "memory": {
                "backend": "sqlite",
                "data_dir": str(state / "memory"),
                "grpc_port": ports["memory_grpc"],
            },
            "stack": {"gateway_url": f"http://{LOOPBACK}:{ports['nginx']}"},
        }
        path = self.layout.config_path
        write_private(path, _toml(sections))
        return path

    def _env(self, tenant_file: Path | None = None) -> dict[str, str]:
        """What a child gets: the state dir and the config file; with ``tenant_file``
        (the sidecar and its CLI only) also the dev seed users' passwords."""
        seeds = self.layout.seed_passwords(tenant_file) if tenant_file else {}
        return {
            "HANZO_STATE_DIR": str(self.layout.state_dir),
            "HANZO_CONFIG": str(self.layout.config_path),
            **seeds,
        }

    def _nginx_conf(self, ports: dict[str, int], inference: str | None) -> Path:
        prefix = self.layout.run_dir / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        for name in ("hanzo-auth-locations.conf", "hanzo-protect.conf"):
            shutil.copy(REPO / "deploy" / "nginx" / name, prefix / name)
        text = (REPO / "deploy" / "nginx" / "stack.conf.template").read_text()
        values = {
            "PREFIX": str(prefix),
            "LISTEN": f"{LOOPBACK}:{ports['nginx']}",
            "AUTH": f"{LOOPBACK}:{ports['gateway']}",
            "MEMORY": f"{LOOPBACK}:{ports['memory']}",
            "SIDECAR": f"{LOOPBACK}:{ports['sidecar']}",
            "INFERENCE": inference or f"unix:{prefix}/no-inference.sock:",
            "GRPC_LISTEN": f"{LOOPBACK}:{ports['grpc']}",
            "MEMORY_GRPC": f"{LOOPBACK}:{ports['memory_grpc']}",
        }
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        conf = prefix / "nginx.conf"
        conf.write_text(text)
        return conf

    def _start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        ready: Callable[[], bool],
        timeout: float = 120.0,
    ) -> None:
        proc = ManagedProcess(
            name, argv, log_path=self.layout.logs_dir / f"{name}.log", env=env
        ).start()
        self.layout.pid_path(name).write_text(str(proc.pid))
        proc.wait_ready(ready, timeout)

    # ------------------------------------------------------------------ commands
    def up(
        self,
        tenant_file: Path = DEFAULT_TENANT_FILE,
        ui: bool = True,
        inference_upstream: str | None = None,
    ) -> StackInfo:
        """Start every part; ``inference_upstream`` (host:port) is the inference gateway."""
        layout = self.layout
        layout.run_dir.mkdir(parents=True, exist_ok=True)
        layout.logs_dir.mkdir(parents=True, exist_ok=True)
        self.down(quiet=True)
        if ui and (casdoor_ui_dir() / "index.html").exists():
            self.casdoor.ui_dir = casdoor_ui_dir()
        self.say("casdoor: installing if needed and starting ...")
        self.casdoor.start()
        self.say(f"casdoor: healthy at {self.casdoor.url}")
        ports = {name: free_port() for name in SERVICES}
        # gRPC: the memory service's own listener and nginx's http2 listener in front of it
        ports |= {"memory_grpc": free_port(), "grpc": free_port()}
        self._write_config(ports, tenant_file)
        sidecar_env = self._env(tenant_file)
        for name, argv in (
            ("sidecar", _python_cli("sidecar", "serve", "--port", str(ports["sidecar"]))),
            ("gateway", _python_cli("gateway", "serve", "--port", str(ports["gateway"]))),
            ("memory", _python_cli("memory-service", "serve", "--port", str(ports["memory"]))),
        ):
            self.say(f"{name}: starting on {LOOPBACK}:{ports[name]} ...")
            url = f"http://{LOOPBACK}:{ports[name]}/healthz"
            env = sidecar_env if name == "sidecar" else self._env()
            self._start(name, argv, env, lambda url=url: http_ok(url))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = self._nginx_conf(ports, inference_upstream)
        self.say(f"nginx: starting on {LOOPBACK}:{ports['nginx']} ...")
        self._start(
            "nginx",
            [nginx, "-p", str(conf.parent), "-c", str(conf)],
            {},
            lambda: tcp_open(ports["nginx"]),
            timeout=20,
        )
        self.say(f"tenants: applying {tenant_file} ...")
        self._sidecar_cli(sidecar_env, "tenants", "apply", str(tenant_file))
        info = StackInfo(
            state_dir=str(layout.state_dir),
            casdoor_url=self.casdoor.url,
            cli_client_id=self.casdoor.secrets.cli_client_id if self.casdoor.secrets else "",
            gateway_url=f"http://{LOOPBACK}:{ports['nginx']}",
            ports=ports,
            logs_dir=str(layout.logs_dir),
            tenant_file=str(tenant_file),
        )
        layout.info_path.write_text(info.model_dump_json(indent=2))
        return info

    def _sidecar_cli(self, env: dict[str, str], *args: str) -> str:
        proc = subprocess.run(
            _python_cli(*args),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"hanzo {args[0]} {args[1]} failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def mint_demo_key(
        self, info: StackInfo, organization: str, owner: str, scopes: list[str]
    ) -> Path:
        """Create a demo key with the sidecar CLI; keep it in a 0600 file, never print it."""
        env = self._env(Path(info.tenant_file))
        args = [
            "keys",
            "create",
            "--org",
            organization,
            "--owner",
            owner,
            "--name",
            f"demo-{secrets.token_hex(3)}",
            "--json",
        ]
        for scope in scopes:
            args += ["--scope", scope]
        created = json.loads(self._sidecar_cli(env, *args))
        path = self.layout.state_dir / "demo-key"
        write_private(path, created["key"])
        info.demo_key_path, info.demo_organization = str(path), organization
        self.layout.info_path.write_text(info.model_dump_json(indent=2))
        return path

    def down(self, quiet: bool = False) -> None:
        for name in reversed(SERVICES):
            path = self.layout.pid_path(name)
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.read_text())
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                if not quiet:
                    self.say(f"{name}: stopped")
            path.unlink(missing_ok=True)
        if self.casdoor.running_pid() is not None:
            self.casdoor.stop()
            if not quiet:
                self.say("casdoor: stopped")

    def status(self) -> dict[str, bool]:
        try:
            info = StackInfo.model_validate_json(self.layout.info_path.read_text())
        except (OSError, ValueError):
            return {"casdoor": self.casdoor.healthy() if self.casdoor.running_pid() else False}
        health = {"casdoor": self.casdoor.running_pid() is not None and self.casdoor.healthy()}
        for name in ("sidecar", "gateway", "memory"):
            health[name] = http_ok(f"http://{LOOPBACK}:{info.ports[name]}/healthz")
        health["nginx"] = tcp_open(info.ports["nginx"])
        return health
