"""Run the shipped gateway configs (deploy/nginx, deploy/caddy) and our services locally.

Used by the end-to-end tests and the benchmark, so what they exercise is exactly what
``deploy/`` ships. Every server gets a loopback port chosen at run time and a private
directory for its config, logs and temp files.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok, tcp_open

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy"


def _fill(template: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


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
    """Debian's nginx with deploy/nginx/nginx.conf.template."""

    def __init__(
        self, workdir: Path, auth: str, upstream: str, workers: int = 1, extra_servers: str = ""
    ) -> None:
        self.workdir, self.auth, self.upstream = workdir, auth, upstream
        self.workers, self.extra = workers, extra_servers
        self.port = free_port()

    def start(self, timeout: float = 15.0) -> NginxServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("hanzo-auth-locations.conf", "hanzo-protect.conf"):
            shutil.copy(DEPLOY_DIR / "nginx" / name, self.workdir / name)
        conf = _fill(
            (DEPLOY_DIR / "nginx" / "nginx.conf.template").read_text(),
            {
                "PREFIX": str(self.workdir),
                "LISTEN": self.addr,
                "AUTH": self.auth,
                "UPSTREAM": self.upstream,
                "WORKERS": str(self.workers),
                "EXTRA_SERVERS": _fill(self.extra, {"PREFIX": str(self.workdir)}),
            },
        )
        (self.workdir / "nginx.conf").write_text(conf)
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
        conf = _fill(
            (DEPLOY_DIR / "nginx" / "casdoor.conf.template").read_text(),
            {
                "PREFIX": str(self.workdir),
                "LISTEN": self.addr,
                "CASDOOR": self.casdoor,
                "SIDECAR": self.sidecar,
            },
        )
        (self.workdir / "nginx.conf").write_text(conf)
        argv = ["nginx", "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf")]
        self.process = ManagedProcess("nginx", argv, log_path=self.workdir / "stdout.log")
        self.process.start().wait_ready(lambda: tcp_open(self.port), timeout)
        return self


class CaddyServer(_Server):
    """Debian's caddy with deploy/caddy/Caddyfile.template."""

    def __init__(self, workdir: Path, auth: str, upstream: str) -> None:
        self.workdir, self.auth, self.upstream = workdir, auth, upstream
        self.port = free_port()

    def start(self, timeout: float = 15.0) -> CaddyServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = _fill(
            (DEPLOY_DIR / "caddy" / "Caddyfile.template").read_text(),
            {"LISTEN": self.addr, "AUTH": self.auth, "UPSTREAM": self.upstream},
        )
        path = self.workdir / "Caddyfile"
        path.write_text(conf)
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
