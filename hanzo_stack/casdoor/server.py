"""Run the real Casdoor: SQLite in the state dir, loopback port, health-checked.

One class serves ``hanzo casdoor start|stop|status``, ``hanzo up`` and the test fixture.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import time
from pathlib import Path

import httpx

from hanzo_stack.casdoor.install import CASDOOR_VERSION, install_casdoor
from hanzo_stack.casdoor.records import install_record_scrubber
from hanzo_stack.casdoor.state import CasdoorSecrets, CasdoorState
from hanzo_stack.process import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    http_ok,
    pid_alive,
    private_umask,
    tcp_open,
)

log = logging.getLogger(__name__)


class CasdoorServer:
    """One Casdoor instance whose state lives in ``<state_dir>/casdoor``."""

    def __init__(
        self, state_dir: Path, *, port: int | None = None, version: str = CASDOOR_VERSION
    ) -> None:
        self.state = CasdoorState(state_dir)
        self.version = version
        self._port = port
        self.process: ManagedProcess | None = None
        self.secrets: CasdoorSecrets | None = None
        #: Casdoor's built admin UI (``hanzo_stack.casdoor.ui``); without it only the API runs
        self.ui_dir: Path | None = None

    # ------------------------------------------------------------------ facts
    @property
    def port(self) -> int:
        if self._port is None:
            self._port = self._remembered_port() or free_port()
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks"

    @property
    def organization(self) -> str:
        return self._secrets().organization

    @property
    def client_id(self) -> str:
        return self._secrets().sidecar_client_id

    @property
    def client_secret(self) -> str:
        return self._secrets().sidecar_client_secret.get_secret_value()

    @property
    def cert_key_path(self) -> Path:
        """The RSA key Casdoor signs JWTs with (``kid`` = the cert name)."""
        return self.state.key_path

    def _secrets(self) -> CasdoorSecrets:
        if self.secrets is None:
            self.secrets = self.state.load_or_create()
        return self.secrets

    def _remembered_port(self) -> int | None:
        """Reuse the last port, so the issuer (and issued tokens) survive a restart."""
        with contextlib.suppress(OSError, ValueError):
            port = int(self.state.port_path.read_text())
            if not tcp_open(port) or self.running_pid():
                return port
        return None

    def running_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.state.pid_path.read_text())
            if pid_alive(pid):
                return pid
        return None

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/api/health")

    # ------------------------------------------------------------------ lifecycle
    def env(self) -> dict[str, str]:
        """Casdoor reads any app.conf key from an env var of the same name."""
        run_dir = self.state.run_dir.resolve()
        return {
            "httpport": str(self.port),
            "origin": self.url,
            "driverName": "sqlite",
            "dataSourceName": f"file:{run_dir / 'casdoor.db'}?cache=shared",
            "initDataFile": str(run_dir / "init_data.json"),
            "initDataNewOnly": "true",
            "ldapServerPort": "0",
            "ldapsServerPort": "0",
            # RADIUS cannot be turned off: an invalid port makes its listen fail (app.conf),
            # and a fresh secret stands should it ever listen
            "radiusServerPort": "-1",
            "radiusSecret": secrets.token_urlsafe(24),
            **({"frontendBaseDir": str(self.ui_dir)} if self.ui_dir else {}),
        }

    @private_umask()
    def start(self, timeout: float = 120.0) -> CasdoorServer:
        """Install if needed, render config, start, wait for ``/api/health``."""
        if self.running_pid() and self.healthy():
            self.secrets = self.state.load_or_create()
            return self
        binary = install_casdoor(self.version)
        self.secrets = self.state.load_or_create()
        self.state.render(self.secrets)
        port = self.port
        self.state.port_path.write_text(str(port))
        self.process = ManagedProcess(
            "casdoor",
            [str(binary)],
            log_path=self.state.log_path,
            cwd=self.state.run_dir,
            env=self.env(),
        ).start()
        self.state.pid_path.write_text(str(self.process.pid))
        self.process.wait_ready(self.healthy, timeout)
        install_record_scrubber(self.state.db_path)  # before our own first POST
        self._retire_builtin_admin_password()
        log.info("casdoor %s up at %s", self.version, self.url)
        return self

    def _retire_builtin_admin_password(self) -> None:
        """Casdoor creates ``built-in/admin`` with password ``123``; replace it once."""
        marker = self.state.run_dir / "builtin-admin-rotated"
        if marker.exists():
            return
        response = httpx.post(
            f"{self.url}/api/set-password",
            auth=(self.client_id, self.client_secret),
            data={
                "userOwner": "built-in",
                "userName": "admin",
                "newPassword": self._secrets().builtin_admin_password.get_secret_value(),
            },
            timeout=10,
        )
        if response.json().get("status") != "ok":
            raise RuntimeError(
                f"could not retire built-in/admin's default password: {response.json().get('msg')}"
            )
        marker.touch()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)
        elif (pid := self.running_pid()) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.state.pid_path.unlink()
