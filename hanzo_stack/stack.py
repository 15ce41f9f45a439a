"""``hanzo up|down|status``: the whole stack on embedded defaults and loopback ports.

Casdoor (installed if missing), the IAM sidecar, the forward-auth plugin service, the
memory service and an nginx gateway routing ``/v1/memory/*``, ``/v1/mcp`` and ``/v1/keys*``
through the plugin, and the memory service's gRPC API on a second (HTTP/2) listener. ``up``
writes the configuration and hands the parts to a detached ``hanzo supervise`` daemon
(:mod:`hanzo_stack.supervisor`), which restarts any part that exits.
Ports and Casdoor's issuer are chosen once (:mod:`hanzo_stack.ports`), so ``up`` on a
running or half-running stack repairs it in place: same ports, URLs, secrets and demo key.
Every process has a pid file and a log under the state dir, so ``down`` and ``status``
work from any later shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
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

from hanzo_contract.apikey import parse_key_id
from hanzo_contract.assertion import ensure_keypair
from hanzo_contract.settings import ensure_secret, write_private
from hanzo_contract.signin import ORG_CLI_APPLICATION
from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.casdoor.state import CASDOOR_STATIC_DIR
from hanzo_stack.casdoor.ui import casdoor_ui_dir, localize_ui
from hanzo_stack.gateway_install.templates import fill
from hanzo_stack.ports import HOSTED_BY, StackPorts
from hanzo_stack.process import (
    LOOPBACK,
    PRIVATE_UMASK,
    ManagedProcess,
    http_ok,
    log_tail,
    owned_pid,
    pid_alive,
    private_umask,
    tcp_open,
)
from hanzo_stack.production import (
    GATEWAY_REPLICAS,
    MEMORY_REPLICAS,
    PART_NAMES,
    PORT_NAMES,
    REPLICA_HOSTED_BY,
    REPLICA_OF,
    SIDECAR_REPLICAS,
    ProductionTopology,
    Profile,
    read_profile,
    save_profile,
)
from hanzo_stack.supervisor import Part, Supervisor, SupervisorStatus

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TENANT_FILE = REPO / "deploy" / "tenants" / "example.yaml"
SERVICES = ("sidecar", "gateway", "memory", "inference", "nginx")
#: the demo key ``hanzo up`` mints lives this long; a later ``up`` reuses it while active
DEMO_KEY_LIFETIME = "30d"
#: the memory service's embedding model, as the inference gateway names it
EMBEDDING_MODEL = "all-MiniLM-L6-v2"

log = logging.getLogger(__name__)


class SuperviseSpec(BaseModel):
    """What ``up`` tells the supervisor daemon (``<state>/run/supervise.json``)."""

    tenant_file: str
    casdoor_ui_dir: str | None = None


def write_nginx_config(
    prefix: Path, values: dict[str, str], casdoor_front: str, casdoor: str
) -> Path:
    """The stack's nginx config under ``prefix``: ``stack.conf.template`` filled with
    ``values``, the files it includes, and the Casdoor front on ``casdoor_front`` (its token
    and sign-up endpoints through the sidecar at ``values["SIDECAR"]``). One copy, for
    ``hanzo up`` and for tests that run the stack's nginx in front of parts of their own."""
    nginx_dir = REPO / "deploy" / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    for name in ("hanzo-auth-locations.conf", "hanzo-protect.conf"):
        (prefix / name).write_text((nginx_dir / name).read_text())
    front = (nginx_dir / "casdoor-front.conf.template").read_text()
    (prefix / "casdoor-front.conf").write_text(
        fill(front, {
            "CASDOOR_FRONT_LISTEN": casdoor_front,
            "CASDOOR": casdoor,
            "SIDECAR": values["SIDECAR"],
        })
    )  # fmt: skip
    conf = prefix / "nginx.conf"
    # a placeholder left over is an error, not a broken conf
    conf.write_text(fill((nginx_dir / "stack.conf.template").read_text(), values))
    return conf


class StackInfo(BaseModel):
    """What ``up`` started, written to ``<state>/stack.json`` (no secrets in it)."""

    state_dir: str
    casdoor_url: str
    #: Casdoor through nginx's front (deploy/nginx/casdoor-front.conf.template): the token
    #: endpoint behind the sidecar's token gate; the CLI signs in here
    casdoor_front_url: str | None = None
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
        self.supervisor_pid_path = self.run_dir / "supervisor.pid"
        self.supervisor_status_path = self.run_dir / "supervisor.json"
        #: held by the one supervisor of this state dir for its life
        self.supervisor_lock_path = self.run_dir / "supervisor.lock"
        self.spec_path = self.run_dir / "supervise.json"
        self.nginx_dir = self.run_dir / "nginx"

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


def _toml_value(value: object) -> str:
    """JSON literals are valid TOML for strings, numbers, bools and lists of them; a dict
    becomes an inline table."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _toml(sections: dict[str, dict[str, object]]) -> str:
    """TOML for tables of strings, numbers, lists and inline tables."""
    lines: list[str] = ["# written by `hanzo up`; read by every part and by the hanzo CLI"]
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def parse_chat_upstream(spec: str) -> dict[str, object]:
    """``BASE_URL=MODEL[,MODEL...][@ENV_VAR]`` as an inference upstream; the API key is read
    from ``ENV_VAR`` (never from the command line) into the 0600 config file."""
    url, sep, rest = spec.partition("=")
    models, _, env_name = rest.partition("@")
    names = [m.strip() for m in models.split(",") if m.strip()]
    if not sep or not url.startswith(("http://", "https://")) or not names:
        raise ValueError(f"expected BASE_URL=MODEL[,MODEL...][@ENV_VAR], got {spec!r}")
    upstream: dict[str, object] = {"name": url, "base_url": url, "models": names}
    if env_name:
        key = os.environ.get(env_name)
        if not key:
            raise ValueError(f"{env_name} (the upstream's API key) is not set")
        upstream["api_key"] = key
    return upstream


def _python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hanzo_stack", *args]


def _nginx_user(state_dir: Path) -> str:
    """nginx's ``user`` directive: the state dir's owner, when nginx starts as root.

    As root, nginx's workers default to ``nobody``, who cannot enter a private (0700) state
    dir: every body larger than nginx's memory buffer then fails writing its temp file, and
    the inference stand-in socket is unreachable. The workers run as the user who owns the
    stack's data (and runs every other part of it), so they gain nothing the stack did not
    already have, and the request bodies (tenant data) stay inside the private state dir
    rather than in a directory a shared ``nobody`` account could read. As a non-root user
    nginx cannot switch users and the directive is left out."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    info = state_dir.stat()
    user = pwd.getpwuid(info.st_uid).pw_name
    group = grp.getgrgid(info.st_gid).gr_name
    return f"user {user} {group};"


class Stack:
    def __init__(
        self,
        state_dir: Path,
        progress: Callable[[str], None] = print,
        profile: Profile | None = None,
    ) -> None:
        """``profile`` unset: the one the state dir was brought up with, else the default
        (see :mod:`hanzo_stack.production`)."""
        self.layout = StackLayout(state_dir)
        self.profile: Profile = profile or read_profile(state_dir) or "default"
        production = self.profile == "production"
        self.ports = StackPorts.load_or_choose(state_dir, PORT_NAMES if production else ())
        #: the production profile's engines (None in the default profile)
        self.production = ProductionTopology(state_dir, self.ports.ports) if production else None
        #: a port that is not a part of its own -> the part listening on it
        self.hosted_by = HOSTED_BY | (REPLICA_HOSTED_BY if production else {})
        self.casdoor = CasdoorServer(
            state_dir,
            port=self.ports.ports["casdoor"],
            origin=self.ports.casdoor_origin,
            database_url=(
                self.production.database("casdoor").owner_dsn if self.production else None
            ),
        )
        # Casdoor's images come from nginx, not the internet (casdoor/static/README.md)
        self.casdoor.static_url = f"http://{LOOPBACK}:{self.ports.ports['nginx']}/casdoor-static"
        self.say = progress
        #: chat model upstreams for the inference gateway (``inference_gateway.settings.
        #: UpstreamSettings`` as dicts); the memory service's embeddings are always served
        self.chat_upstreams: list[dict[str, object]] = []

    # ------------------------------------------------------------------ configuration
    def _write_config(self, ports: dict[str, int], tenant_file: Path) -> Path:
        """One ``<state>/hanzo.toml`` (0600) for every part, and for the CLI afterwards."""
        state = self.layout.state_dir
        casdoor = self.casdoor
        assert casdoor.secrets is not None
        ensure_keypair(state)  # assertion.key for the plugin, assertion.pub for upstreams
        # shared by the plugin and the inference gateway only (token charges)
        charge_token = ensure_secret(state / "gateway", "charge_token")
        sections: dict[str, dict[str, object]] = {
            "sidecar": {
                "casdoor_url": casdoor.url,
                "casdoor_client_id": casdoor.client_id,
                "casdoor_client_secret": casdoor.client_secret,
                "tenant_file": str(tenant_file),
                "casdoor_assets_url": casdoor.static_url,
            },
            "gateway": {
                "sidecar_url": f"http://{LOOPBACK}:{ports['sidecar']}",
                # the sidecar keeps its generated verify token in <state>/sidecar/
                "verify_token": ensure_secret(state / "sidecar", "verify_token"),
                "casdoor_url": casdoor.url,
                "casdoor_issuer": casdoor.origin,
                "jwt_audiences": [casdoor.client_id],
                "jwt_shared_audiences": [casdoor.secrets.cli_client_id],
                "jwt_org_audiences": [ORG_CLI_APPLICATION],
                "routes_file": str(REPO / "deploy" / "stack" / "routes.yaml"),
                "quota_db_path": str(state / "quota.db"),
                "charge_token": charge_token,
            },
            "memory": {
                "backend": "sqlite",
                "data_dir": str(state / "memory"),
                "grpc_port": ports["memory_grpc"],
            },
            # the inference gateway: the memory service's own model for embeddings (one
            # model per deployment), chat upstreams as given; tokens charged to the plugin
            "inference": {
                "plugin_url": f"http://{LOOPBACK}:{ports['gateway']}",
                "charge_token": charge_token,
                "upstreams": [
                    {
                        "name": "memory-embeddings",
                        "base_url": f"http://{LOOPBACK}:{ports['memory']}/v1",
                        "models": [EMBEDDING_MODEL],
                        "identity": True,
                        # loaded before the memory service serves: ready means loaded
                        "ready_url": f"http://{LOOPBACK}:{ports['memory']}/readyz",
                    },
                    *self.chat_upstreams,
                ],
            },
            "stack": {"gateway_url": f"http://{LOOPBACK}:{ports['nginx']}"},
        }
        if self.production:
            for name, values in self.production.config().items():
                sections[name] |= values
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

    def _nginx_conf_changed(self, ports: dict[str, int], inference: str | None) -> None:
        """Render nginx's config; a running nginx whose config changed reloads it (SIGHUP:
        graceful, same port), so ``up`` after an upgrade applies the shipped config."""
        files = (
            "nginx.conf",
            "hanzo-auth-locations.conf",
            "hanzo-protect.conf",
            "casdoor-front.conf",
        )

        def read_all() -> list[bytes | None]:
            out: list[bytes | None] = []
            for name in files:
                path = self.layout.nginx_dir / name
                out.append(path.read_bytes() if path.exists() else None)
            return out

        before = read_all()
        self._nginx_conf(ports, inference)
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.layout.pid_path("nginx").read_text())
            if read_all() != before and pid_alive(pid):
                os.kill(pid, signal.SIGHUP)
                self.say("nginx: configuration changed, reloaded")

    def _nginx_conf(self, ports: dict[str, int], inference: str | None) -> Path:
        values = {
            "USER": _nginx_user(self.layout.state_dir),
            "PREFIX": str(self.layout.nginx_dir),
            "LISTEN": f"{LOOPBACK}:{ports['nginx']}",
            "AUTH": (
                self.production.upstream(GATEWAY_REPLICAS)
                if self.production
                else f"{LOOPBACK}:{ports['gateway']}"
            ),
            "MEMORY": (
                self.production.memory_upstream()
                if self.production
                else f"{LOOPBACK}:{ports['memory']}"
            ),
            "SIDECAR": (
                self.production.upstream(SIDECAR_REPLICAS)
                if self.production
                else f"{LOOPBACK}:{ports['sidecar']}"
            ),
            "INFERENCE": inference or f"{LOOPBACK}:{ports['inference']}",
            "CASDOOR_STATIC": str(CASDOOR_STATIC_DIR),
            "GRPC_LISTEN": f"{LOOPBACK}:{ports['nginx_grpc']}",
            "MEMORY_GRPC": (
                self.production.memory_grpc_upstream()
                if self.production
                else f"{LOOPBACK}:{ports['memory_grpc']}"
            ),
        }
        return write_nginx_config(
            self.layout.nginx_dir,
            values,
            casdoor_front=f"{LOOPBACK}:{ports['casdoor_front']}",
            casdoor=f"{LOOPBACK}:{ports['casdoor']}",
        )

    # ------------------------------------------------------------------ the parts
    def parts(self, spec: SuperviseSpec) -> list[Part]:
        """Every part as the supervisor runs it, on the ports kept in ``ports.json``."""
        layout, ports = self.layout, self.ports.ports
        if spec.casdoor_ui_dir:
            self.casdoor.ui_dir = Path(spec.casdoor_ui_dir)
        casdoor = self.casdoor
        tenant_file = Path(spec.tenant_file)

        def hosted(name: str) -> tuple[int, ...]:
            """The ports ``name`` listens on besides its own (its gRPC listener)."""
            return tuple(ports[port] for port, host in self.hosted_by.items() if host == name)

        def listening(numbers: tuple[int, ...]) -> bool:
            return all(tcp_open(port) for port in numbers)

        def python_part(name: str, argv: list[str], env: dict[str, str]) -> Part:
            url = f"http://{LOOPBACK}:{ports[name]}"
            also = hosted(name)
            return Part(
                held=lambda: self.held(name),
                name=name,
                port=ports[name],
                url=url,
                pid_path=layout.pid_path(name),
                spawn=lambda: ManagedProcess(
                    name, argv, log_path=layout.logs_dir / f"{name}.log", env=env
                ).start(),
                ready=lambda: http_ok(f"{url}/healthz") and listening(also),
                marker=" ".join(argv[3:]),
                needs=("casdoor",) if name in SIDECAR_REPLICAS else (),
                also_ports=also,
            )

        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = layout.nginx_dir / "nginx.conf"
        nginx_argv = [nginx, "-p", str(conf.parent), "-c", str(conf)]

        def spawn_nginx() -> ManagedProcess:
            return ManagedProcess(
                "nginx", nginx_argv, log_path=layout.logs_dir / "nginx.log"
            ).start()

        parts = [
            Part(
                name="casdoor",
                port=casdoor.port,
                url=casdoor.url,
                pid_path=casdoor.state.pid_path,
                spawn=casdoor.spawn,
                ready=casdoor.healthy,
                after_ready=casdoor.after_ready,
                marker="casdoor",
                held=lambda: self.held("casdoor"),
            ),
            python_part(
                "sidecar",
                _python_cli("sidecar", "serve", "--port", str(ports["sidecar"])),
                self._env(tenant_file),
            ),
            python_part(
                "gateway",
                _python_cli("gateway", "serve", "--port", str(ports["gateway"])),
                self._env(),
            ),
            python_part(
                "memory",
                _python_cli("memory-service", "serve", "--port", str(ports["memory"])),
                self._env(),
            ),
            python_part(
                "inference",
                _python_cli("inference", "serve", "--port", str(ports["inference"])),
                self._env(),
            ),
            Part(
                name="nginx",
                port=ports["nginx"],
                url=f"http://{LOOPBACK}:{ports['nginx']}",
                pid_path=layout.pid_path("nginx"),
                spawn=spawn_nginx,
                ready=lambda: listening((ports["nginx"], *hosted("nginx"))),
                marker=str(conf),
                held=lambda: self.held("nginx"),
                also_ports=hosted("nginx"),
            ),
        ]
        if self.production is None:
            return parts
        # production: the engines first; Casdoor and both memory replicas wait for
        # PostgreSQL (and its databases), the plugins for the formed Valkey cluster; each
        # replica runs its default part's command on its own port, right after it
        by_name = {part.name: part for part in parts}
        by_name["casdoor"].needs = ("postgres",)
        by_name["memory"].needs = ("postgres",)
        env = {"sidecar": self._env(tenant_file), "gateway": self._env(), "memory": self._env()}
        replicas: dict[str, Part] = {}
        for name, of in REPLICA_OF.items():
            cli = {"sidecar": "sidecar", "gateway": "gateway", "memory": "memory-service"}[of]
            extra = (
                {"HANZO_MEMORY_GRPC_PORT": str(ports["memory_b_grpc"])} if of == "memory" else {}
            )
            replicas[of] = python_part(
                name, _python_cli(cli, "serve", "--port", str(ports[name])), {**env[of], **extra}
            )
        by_name["gateway"].needs = replicas["gateway"].needs = ("valkey2",)
        replicas["memory"].needs = ("postgres",)
        engines = self.production.parts(layout.run_dir, self.held)
        ordered: list[Part] = []
        for part in parts:
            ordered.append(part)
            if part.name in replicas:
                ordered.append(replicas[part.name])
        return [*engines, *ordered]

    def _hold_path(self, name: str) -> Path:
        return self.layout.run_dir / "hold" / name

    def held(self, name: str) -> bool:
        """Whether the supervisor is told to leave ``name`` down (see :meth:`hold`)."""
        return self._hold_path(name).exists()

    def hold(self, name: str) -> None:
        """Keep ``name`` down once it exits (for fault tests): the supervisor does not
        restart it until :meth:`release`."""
        path = self._hold_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def release(self, name: str) -> None:
        """Let the supervisor start ``name`` again, at once."""
        self._hold_path(name).unlink(missing_ok=True)
        if (pid := self.supervisor_pid()) is not None:
            os.kill(pid, signal.SIGHUP)

    def kill_part(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Signal one part's process group (a crash, for tests); its pid before."""
        sup = self.supervisor_status()
        pid = sup.parts[name].pid if sup else None
        if pid is None:
            raise RuntimeError(f"{name} has no running process")
        os.killpg(pid, sig)
        return pid

    def supervise(self) -> None:
        """The daemon's body (``hanzo supervise``): run the parts until SIGTERM. Every part
        it starts makes private files (umask 077), whoever started the daemon."""
        os.umask(PRIVATE_UMASK)
        layout = self.layout
        layout.supervisor_pid_path.parent.mkdir(parents=True, exist_ok=True)
        # one daemon per state dir, held for its life: a second (two `hanzo up` at once)
        # would restart every part the first stops at `down`
        lock = open(layout.supervisor_lock_path, "a")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            log.info("another supervisor serves %s; this one leaves", layout.state_dir)
            return
        layout.supervisor_pid_path.write_text(str(os.getpid()))
        try:
            spec = SuperviseSpec.model_validate_json(layout.spec_path.read_text())
            Supervisor(self.parts(spec), layout.supervisor_status_path).run_forever()
        finally:
            with contextlib.suppress(OSError, ValueError):
                if int(layout.supervisor_pid_path.read_text()) == os.getpid():
                    layout.supervisor_pid_path.unlink()
            lock.close()

    def _supervisor_argv(self) -> list[str]:
        return _python_cli("supervise", "--state-dir", str(self.layout.state_dir))

    def supervisor_pid(self) -> int | None:
        # its marker as a part's: the arguments after ``python -m hanzo_stack``
        marker = " ".join(self._supervisor_argv()[3:])
        return owned_pid(self.layout.supervisor_pid_path, marker)

    def _part_markers(self) -> dict[str, str]:
        """Each part's command-line marker, from the kept spec ({} when there is none)."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            spec = SuperviseSpec.model_validate_json(self.layout.spec_path.read_text())
            return {part.name: part.marker for part in self.parts(spec)}
        return {}

    def supervisor_status(self) -> SupervisorStatus | None:
        """What the daemon last wrote, or None when no daemon runs."""
        if self.supervisor_pid() is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return SupervisorStatus.model_validate_json(
                self.layout.supervisor_status_path.read_text()
            )
        return None

    def _ensure_supervisor(self) -> int:
        """The running daemon (told to start what is down now), or a new detached one."""
        if (pid := self.supervisor_pid()) is not None:
            os.kill(pid, signal.SIGHUP)
            return pid
        self.layout.supervisor_status_path.unlink(missing_ok=True)
        proc = ManagedProcess(
            "supervisor",
            self._supervisor_argv(),
            log_path=self.layout.logs_dir / "supervisor.log",
        ).start()
        assert proc.pid is not None
        deadline = time.monotonic() + 30
        while self.supervisor_pid() != proc.pid:
            if not proc.running() and (other := self.supervisor_pid()) is not None:
                return other  # another `up` started one first: ours left
            if not proc.running() or time.monotonic() > deadline:
                raise RuntimeError(
                    "the supervisor did not start; log "
                    f"{self.layout.logs_dir / 'supervisor.log'}:\n"
                    f"{log_tail(self.layout.logs_dir / 'supervisor.log')}"
                )
            time.sleep(0.1)
        return proc.pid

    def wait_healthy(self, timeout: float = 300.0) -> dict[str, bool]:
        """Until every part runs and answers; raises with the failing parts' logs."""
        deadline = time.monotonic() + timeout
        health: dict[str, bool] = {}
        while time.monotonic() < deadline:
            if self.supervisor_pid() is None:
                raise RuntimeError(
                    "the supervisor exited; log:\n"
                    + log_tail(self.layout.logs_dir / "supervisor.log")
                )
            sup = self.supervisor_status()
            busy = [
                f"{name}: {part.last_exit}"
                for name, part in (sup.parts.items() if sup else [])
                if part.state == "backoff" and "held by another process" in (part.last_exit or "")
            ]
            if busy:  # no waiting it out: ports are never moved, nothing is killed for them
                raise RuntimeError("; ".join(busy) + "; free the port and run `hanzo up` again")
            health = self.status()
            if (
                sup
                and all(p.state == "running" for p in sup.parts.values())
                and all(health.values())
            ):
                return health
            time.sleep(0.3)
        down = [name for name, ok in health.items() if not ok] or ["(unknown)"]
        tails = "\n".join(f"--- {name}:\n{log_tail(self._log_path(name), 15)}" for name in down)
        raise RuntimeError(f"not healthy after {timeout:.0f}s: {', '.join(down)}\n{tails}")

    def _log_path(self, name: str) -> Path:
        if name == "casdoor":
            return self.casdoor.state.log_path
        return self.layout.logs_dir / f"{name}.log"

    # ------------------------------------------------------------------ commands
    @private_umask()
    def up(
        self,
        tenant_file: Path = DEFAULT_TENANT_FILE,
        ui: bool = True,
        inference_upstream: str | None = None,
        timeout: float = 300.0,
    ) -> StackInfo:
        """Start every part, or repair a running stack in place (only what is down starts);
        ``inference_upstream`` (host:port) replaces the stack's own inference gateway behind
        nginx (``chat_upstreams`` configure the stack's own)."""
        layout = self.layout
        for directory in (layout.state_dir, layout.run_dir, layout.logs_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            directory.chmod(0o700)  # a state dir made before modes were private
        save_profile(layout.state_dir, self.profile)
        self.ports.save(layout.state_dir)
        ui_dir = casdoor_ui_dir() if ui and (casdoor_ui_dir() / "index.html").exists() else None
        if ui_dir:
            localize_ui(ui_dir)
        self.casdoor.ui_dir = ui_dir
        self.say("casdoor: installing if needed ...")
        self.casdoor.prepare()
        ports = self.ports.ports
        self._write_config(ports, tenant_file)
        self._nginx_conf_changed(ports, inference_upstream)
        layout.spec_path.write_text(
            SuperviseSpec(
                tenant_file=str(tenant_file), casdoor_ui_dir=str(ui_dir) if ui_dir else None
            ).model_dump_json()
        )
        shutil.rmtree(layout.run_dir / "hold", ignore_errors=True)  # `up` wants every part
        self.say(f"supervisor: pid {self._ensure_supervisor()}; waiting for every part ...")
        self.wait_healthy(timeout)
        self.say(f"casdoor: healthy at {self.casdoor.url} (issuer {self.casdoor.origin})")
        self.say(f"tenants: applying {tenant_file} ...")
        self._sidecar_cli(self._env(tenant_file), "tenants", "apply", str(tenant_file))
        info = StackInfo(
            state_dir=str(layout.state_dir),
            casdoor_url=self.casdoor.url,
            casdoor_front_url=f"http://{LOOPBACK}:{ports['casdoor_front']}",
            cli_client_id=self.casdoor.secrets.cli_client_id if self.casdoor.secrets else "",
            gateway_url=f"http://{LOOPBACK}:{ports['nginx']}",
            ports=ports,
            logs_dir=str(layout.logs_dir),
            tenant_file=str(tenant_file),
        )
        with contextlib.suppress(OSError, ValueError):
            old = StackInfo.model_validate_json(layout.info_path.read_text())
            info.demo_key_path, info.demo_organization = old.demo_key_path, old.demo_organization
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

    def sidecar_cli(self, tenant_file: Path, *args: str) -> str:
        """``hanzo <args>`` against this stack's config (keys, tenants): its stdout. For
        drills and tests that mint keys as the operator does, without a browser."""
        return self._sidecar_cli(self._env(tenant_file), *args)

    def _active_demo_key(self, env: dict[str, str], organization: str, path: Path) -> bool:
        """Whether ``path`` holds a key of ``organization`` that is still active."""
        with contextlib.suppress(OSError):
            key_id = parse_key_id(path.read_text().strip())
            if key_id is None:
                return False
            try:
                shown = self._sidecar_cli(
                    env, "keys", "show", "--org", organization, key_id, "--json"
                )
            except RuntimeError:
                return False
            return json.loads(shown).get("state") == "active"
        return False

    @private_umask()
    def mint_demo_key(
        self, info: StackInfo, organization: str, owner: str, scopes: list[str]
    ) -> Path:
        """The demo key in a 0600 file, never printed: the existing one while it is active
        (another ``up`` mints nothing), else a new one that expires."""
        env = self._env(Path(info.tenant_file))
        path = self.layout.state_dir / "demo-key"
        if not self._active_demo_key(env, organization, path):
            args = [
                "keys",
                "create",
                "--org",
                organization,
                "--owner",
                owner,
                "--name",
                f"demo-{secrets.token_hex(3)}",
                "--expires-in",
                DEMO_KEY_LIFETIME,
                "--json",
            ]
            for scope in scopes:
                args += ["--scope", scope]
            created = json.loads(self._sidecar_cli(env, *args))
            write_private(path, created["key"])
        info.demo_key_path, info.demo_organization = str(path), organization
        self.layout.info_path.write_text(info.model_dump_json(indent=2))
        return path

    def down(self, quiet: bool = False) -> None:
        """Stop the supervisor (which stops its parts), then anything it left behind."""
        if (pid := self.supervisor_pid()) is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not quiet:
                self.say("supervisor: stopped")
        markers = self._part_markers()
        for name in reversed(self.services()):
            path = self.layout.pid_path(name)
            pid = owned_pid(path, markers[name]) if name in markers else None
            if pid is not None:  # a stale file's pid may be anybody's now: left alone
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

    def services(self) -> tuple[str, ...]:
        """The parts with a pid file under ``run/`` (every part but Casdoor), start order."""
        return (*PART_NAMES, *SERVICES) if self.production else SERVICES

    def status(self) -> dict[str, bool]:
        """Whether each part answers on its kept port."""
        ports = self.ports.ports
        health = {"casdoor": self.casdoor.running_pid() is not None and self.casdoor.healthy()}
        for name in (*SIDECAR_REPLICAS, *GATEWAY_REPLICAS, *MEMORY_REPLICAS, "inference"):
            if name in ports:  # a stack started before this part existed
                health[name] = http_ok(f"http://{LOOPBACK}:{ports[name]}/healthz")
        health["nginx"] = tcp_open(ports["nginx"])
        for name in self.hosted_by:  # the gRPC listeners
            health[name] = tcp_open(ports[name])
        if self.production:
            health["postgres"] = self.production.postgres.ready()
            for name in PART_NAMES:
                if name.startswith("valkey"):
                    health[name] = tcp_open(ports[name])
        return health

    def report(self) -> dict[str, object]:
        """``hanzo status --json``: health, pid, restarts and URL of every part, the
        gateway and the issuer (no secrets)."""
        health = self.status()
        sup = self.supervisor_status()
        parts: dict[str, dict[str, object]] = {}
        for name, port in self.ports.ports.items():
            if name.endswith("_bus"):  # a Valkey node's cluster bus, not a part
                continue
            # a gRPC listener shows the process that holds it (its pid, state, restarts)
            seen = sup.parts.get(self.hosted_by.get(name, name)) if sup else None
            parts[name] = {
                "healthy": health.get(name, False),
                "url": f"http://{LOOPBACK}:{port}",
                "port": port,
                "pid": seen.pid if seen else None,
                "state": seen.state if seen else "unsupervised",
                "restarts": seen.restarts if seen else 0,
                "last_exit": seen.last_exit if seen else None,
            }
        return {
            "state_dir": str(self.layout.state_dir),
            "healthy": all(health.values()),
            "gateway_url": f"http://{LOOPBACK}:{self.ports.ports['nginx']}",
            "casdoor_url": self.casdoor.url,
            "issuer": self.casdoor.origin,
            "supervisor_pid": sup.pid if sup else None,
            "parts": parts,
        }
