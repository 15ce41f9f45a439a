"""Run the shipped gateway configs (deploy/nginx, deploy/caddy) and our services locally.

Used by the end-to-end tests and the benchmark, so what they exercise is exactly what
``deploy/`` ships. Every server gets a loopback port chosen at run time and a private
directory for its config, logs and temp files.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from hanzo_stack.gateway_install import caddy, nginx
from hanzo_stack.gateway_install.layout import one_upstream
from hanzo_stack.gateway_install.templates import DEPLOY_DIR as DEPLOY_DIR
from hanzo_stack.gateway_install.templates import fill
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok, tcp_open


class _Server:
    process: ManagedProcess | None = None
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def kill(self) -> None:
        if self.process:
            self.process.kill()


class NginxServer(_Server):
    """Debian's nginx with deploy/nginx/nginx.conf.template, every path to one upstream."""

    def __init__(
        self, workdir: Path, auth: str, upstream: str, workers: int = 1, extra_servers: str = ""
    ) -> None:
        self.workdir, self.auth, self.upstream = workdir, auth, upstream
        self.workers, self.extra = workers, extra_servers
        self.port = free_port()

    def start(self, timeout: float = 15.0) -> NginxServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        layout = one_upstream(self.addr, self.auth, self.upstream)
        files = nginx.render(layout, self.workdir, self.workers, self.extra)
        for name, text in files.items():
            (self.workdir / name).write_text(text)
        argv = ["nginx", "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf")]
        self.process = ManagedProcess("nginx", argv, log_path=self.workdir / "stdout.log")
        self.process.start().wait_ready(lambda: tcp_open(self.port), timeout)
        return self


class CasdoorGateway(_Server):
    """Debian's nginx with deploy/nginx/casdoor.conf.template: Casdoor as users reach it,
    sign-ups through the sidecar's gate at ``sidecar`` (host:port)."""

    def __init__(self, workdir: Path, casdoor: str, sidecar: str) -> None:
        self.workdir, self.casdoor, self.sidecar = workdir, casdoor, sidecar
        self.port = free_port()

    def start(self, timeout: float = 15.0) -> CasdoorGateway:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        values = {
            "PREFIX": str(self.workdir),
            "CASDOOR_FRONT_LISTEN": self.addr,
            "CASDOOR": self.casdoor,
            "SIDECAR": self.sidecar,
        }
        for name in ("casdoor.conf", "casdoor-front.conf"):
            template = (DEPLOY_DIR / "nginx" / f"{name}.template").read_text()
            (self.workdir / name).write_text(fill(template, values))
        conf = self.workdir / "casdoor.conf"
        argv = ["nginx", "-p", str(self.workdir), "-c", str(conf)]
        self.process = ManagedProcess("nginx", argv, log_path=self.workdir / "stdout.log")
        self.process.start().wait_ready(lambda: tcp_open(self.port), timeout)
        return self


class CaddyServer(_Server):
    """Debian's caddy with deploy/caddy/Caddyfile.template, every path to one upstream."""

    def __init__(self, workdir: Path, auth: str, upstream: str) -> None:
        self.workdir, self.auth, self.upstream = workdir, auth, upstream
        self.port = free_port()

    def start(self, timeout: float = 15.0) -> CaddyServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "Caddyfile"
        layout = one_upstream(self.addr, self.auth, self.upstream)
        path.write_text(caddy.render(layout)["Caddyfile"])
        env = {
            "XDG_DATA_HOME": str(self.workdir / "data"),
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "HOME": str(self.workdir),
        }
        argv = ["caddy", "run", "--config", str(path), "--adapter", "caddyfile"]
        self.process = ManagedProcess("caddy", argv, log_path=self.workdir / "caddy.log", env=env)
        self.process.start().wait_ready(lambda: tcp_open(self.port), timeout)
        return self


class EchoUpstream(_Server):
    """hanzo_stack.echo under uvicorn."""

    def __init__(self, workdir: Path, workers: int = 1) -> None:
        self.workdir, self.workers = workdir, workers
        self.port = free_port()

    def start(self, timeout: float = 20.0) -> EchoUpstream:
        argv = [
            sys.executable, "-m", "uvicorn", "hanzo_stack.echo:app",
            "--host", LOOPBACK, "--port", str(self.port), "--log-level", "warning",
            "--no-access-log", "--workers", str(self.workers),
        ]  # fmt: skip
        self.process = ManagedProcess("echo", argv, log_path=self.workdir / "echo.log")
        self.process.start().wait_ready(lambda: http_ok(self.url + "/ready"), timeout)
        return self


class ForwardAuthServer(_Server):
    """``python -m gateway_plugins serve`` with ``HANZO_GATEWAY_*`` settings in ``env``."""

    def __init__(self, workdir: Path, env: Mapping[str, str], port: int | None = None) -> None:
        self.workdir, self.env = workdir, dict(env)
        self.port = port or free_port()

    def start(self, timeout: float = 30.0) -> ForwardAuthServer:
        argv = [
            sys.executable, "-m", "gateway_plugins", "serve",
            "--host", LOOPBACK, "--port", str(self.port),
        ]  # fmt: skip
        self.process = ManagedProcess(
            "gateway", argv, log_path=self.workdir / f"gateway-{self.port}.log", env=self.env
        )
        self.process.start().wait_ready(lambda: http_ok(self.url + "/healthz"), timeout)
        return self


class SidecarServer(_Server):
    """The real IAM sidecar (``python -m iam_sidecar serve``) with its state in ``workdir``.

    Keys are minted through ``iam_sidecar.keys.store.KeyStore`` on the same ``db_path``.
    """

    def __init__(
        self, workdir: Path, env: Mapping[str, str] | None = None, port: int | None = None
    ) -> None:
        import secrets

        self.workdir = workdir
        self.port = port or free_port()
        self.db_path = workdir / "sidecar.db"
        self.hash_secret = secrets.token_urlsafe(32)
        self.verify_token = secrets.token_urlsafe(32)
        self.env = {
            "HANZO_STATE_DIR": str(workdir / "state"),
            "HANZO_SIDECAR_STATE_DIR": str(workdir / "state"),
            "HANZO_SIDECAR_DB_PATH": str(self.db_path),
            "HANZO_SIDECAR_KEY_HASH_SECRET": self.hash_secret,
            "HANZO_SIDECAR_VERIFY_TOKEN": self.verify_token,
            # no Casdoor unless the caller gives one: keys verify from the local store
            "HANZO_SIDECAR_CASDOOR_URL": f"http://{LOOPBACK}:{free_port()}",
            **(env or {}),
        }

    def start(self, timeout: float = 30.0) -> SidecarServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "iam_sidecar", "serve",
            "--host", LOOPBACK, "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        self.process = ManagedProcess(
            "sidecar", argv, log_path=self.workdir / "sidecar.log", env=self.env
        )
        self.process.start().wait_ready(lambda: http_ok(self.url + "/healthz"), timeout)
        return self


class InstalledGateway(_Server):
    """A gateway run from a directory ``hanzo gateway install`` wrote, on ``port`` (the one
    the install was given as ``--listen``)."""

    def __init__(self, gateway: str, config_dir: Path, port: int, binary: str | None = None):
        self.gateway, self.config_dir, self.port = gateway, config_dir, port
        self.binary = binary or gateway

    def _argv(self) -> list[str]:
        d = self.config_dir
        if self.gateway == "nginx":
            return [self.binary, "-p", str(d), "-c", str(d / "nginx.conf")]
        if self.gateway == "caddy":
            return [self.binary, "run", "--config", str(d / "Caddyfile"), "--adapter", "caddyfile"]
        if self.gateway == "traefik":
            return [self.binary, f"--configFile={d / 'traefik.yml'}"]
        raise ValueError(f"cannot run {self.gateway} here")

    def start(self, timeout: float = 30.0) -> InstalledGateway:
        env = {
            "XDG_DATA_HOME": str(self.config_dir / "data"),
            "XDG_CONFIG_HOME": str(self.config_dir / "config"),
            "HOME": str(self.config_dir),
        }
        self.process = ManagedProcess(
            self.gateway,
            self._argv(),
            log_path=self.config_dir / f"{self.gateway}.log",
            env=env,
        )
        self.process.start().wait_ready(self._serving, timeout)
        return self

    def _serving(self) -> bool:
        """Traefik opens its port before the file provider's routes are loaded (its own
        ``404 page not found`` until then): ready once a path reaches the plugin."""
        if not tcp_open(self.port):
            return False
        if self.gateway != "traefik":
            return True
        try:
            return httpx.get(self.url + "/", timeout=2).status_code != 404
        except httpx.HTTPError:
            return False
