"""Run the real Casdoor: SQLite in the state dir (or PostgreSQL), loopback port, health-checked.

One class serves ``hanzo casdoor start|stop|status``, ``hanzo up`` and the test fixture.
Given a ``database_url`` (``postgresql://``, a role that owns its database: Casdoor creates
its own tables), Casdoor runs with ``driverName=postgres`` instead; the URL is kept in the
state dir (0600) like the port, so every later start of that state dir uses it.

Casdoor's start-up (``util.StopOldInstance``, called from its ``main.go``) runs
``lsof -t -i :<port>`` and SIGKILLs the first pid printed. ``lsof -i :<port>`` lists every
process with a socket on that port, clients included, so on a restart the first pid is often
our gateway or sidecar holding a connection to the Casdoor that just died. We build the
pinned module unchanged, so Casdoor runs with a private ``PATH`` directory whose ``lsof``
prints nothing and exits 1 (what ``lsof`` does when nothing matches: Casdoor then kills
nobody). The port check that step was meant to do is ours: :meth:`CasdoorServer.start`
refuses to start on a port something else listens on, and never kills anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import httpx

from hanzo_contract.settings import write_private
from hanzo_stack.casdoor.install import CASDOOR_VERSION, install_casdoor
from hanzo_stack.casdoor.records import (
    install_record_scrubber,
    install_record_scrubber_postgres,
)
from hanzo_stack.casdoor.state import CASDOOR_CDN, CasdoorSecrets, CasdoorState
from hanzo_stack.process import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    http_ok,
    owned_pid,
    pid_alive,
    private_umask,
    tcp_open,
)

log = logging.getLogger(__name__)

#: what Casdoor finds as ``lsof``: nothing listens, kill nobody (see the module docstring)
LSOF_SHIM = (
    "#!/bin/sh\n# hanzo: Casdoor must never kill a process by port; see casdoor_server.py\nexit 1\n"
)


class CasdoorPortBusy(RuntimeError):
    """Casdoor's port is held by another process; we never move the port (it is the issuer)."""


class CasdoorServer:
    """One Casdoor instance whose state lives in ``<state_dir>/casdoor``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        origin: str | None = None,
        version: str = CASDOOR_VERSION,
        database_url: str | None = None,
    ) -> None:
        self.state = CasdoorState(state_dir)
        self._database_url = database_url
        self.version = version
        self._port = port
        self._origin = origin
        self.process: ManagedProcess | None = None
        self.secrets: CasdoorSecrets | None = None
        #: Casdoor's built admin UI (``hanzo_stack.casdoor.ui``); without it only the API runs
        self.ui_dir: Path | None = None
        #: where Casdoor's pages get their images (its ``staticBaseUrl``); None: its CDN
        self.static_url: str | None = None

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
    def origin(self) -> str:
        """Casdoor's ``origin``: the issuer of every JWT it signs. Configuration, kept in the
        state dir once chosen, so a restart never changes it (tokens would die with it)."""
        if self._origin is None:
            with contextlib.suppress(OSError):
                self._origin = self.state.origin_path.read_text().strip() or None
        return self._origin or self.url

    @property
    def database_url(self) -> str | None:
        """Casdoor's PostgreSQL (``None``: SQLite in the state dir); as first configured."""
        if self._database_url is None:
            with contextlib.suppress(OSError):
                self._database_url = self._database_url_path.read_text().strip() or None
        return self._database_url

    @property
    def _database_url_path(self) -> Path:
        return self.state.run_dir / "database-url"

    @property
    def engine(self) -> str:
        return "sqlite" if self.database_url is None else "postgres"

    def _database_env(self) -> dict[str, str]:
        if self.database_url is None:
            run_dir = self.state.run_dir.resolve()
            # busy_timeout: Casdoor writes each request's record from its own goroutine,
            # and without a wait a second writer meeting the lock loses its record
            # ("goroutine panic: database is locked (5) (SQLITE_BUSY)" in its log)
            return {
                "driverName": "sqlite",
                "dataSourceName": (
                    f"file:{run_dir / 'casdoor.db'}?cache=shared&_pragma=busy_timeout(10000)"
                ),
            }
        # lib/pq reads URLs; its default sslmode (require) fails on a loopback server
        separator = "&" if "?" in self.database_url else "?"
        return {
            "driverName": "postgres",
            "dataSourceName": f"{self.database_url}{separator}sslmode=disable",
        }

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
        """The port chosen the first time: kept even when busy (start then says so), since
        moving it would change the issuer and kill every token issued before."""
        with contextlib.suppress(OSError, ValueError):
            return int(self.state.port_path.read_text())
        return None

    def running_pid(self) -> int | None:
        return owned_pid(self.state.pid_path, "casdoor")

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/api/health")

    # ------------------------------------------------------------------ lifecycle
    def env(self) -> dict[str, str]:
        """Casdoor reads any app.conf key from an env var of the same name."""
        run_dir = self.state.run_dir.resolve()
        return {
            "PATH": f"{self._shim_dir()}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "httpport": str(self.port),
            "origin": self.origin,
            **self._database_env(),
            "initDataFile": str(run_dir / "init_data.json"),
            "initDataNewOnly": "true",
            "ldapServerPort": "0",
            "ldapsServerPort": "0",
            # RADIUS cannot be turned off: an invalid port makes its listen fail (app.conf),
            # and a fresh secret stands should it ever listen
            "radiusServerPort": "-1",
            "radiusSecret": secrets.token_urlsafe(24),
            **({"frontendBaseDir": str(self.ui_dir)} if self.ui_dir else {}),
            **({"staticBaseUrl": self.static_url} if self.static_url else {}),
        }

    def _shim_dir(self) -> Path:
        """A private ``bin`` whose ``lsof`` finds nothing (see the module docstring)."""
        shim_dir = self.state.run_dir / "bin"
        shim_dir.mkdir(parents=True, exist_ok=True)
        shim = shim_dir / "lsof"
        if not shim.exists() or shim.read_text() != LSOF_SHIM:
            shim.write_text(LSOF_SHIM)
        shim.chmod(0o700)
        return shim_dir

    @private_umask()
    def prepare(self) -> Path:
        """Install if needed, make or load the secrets, render config, fix port and origin;
        the Casdoor binary to run."""
        binary = install_casdoor(self.version)
        self.secrets = self.state.load_or_create()
        self.state.render(self.secrets, self.static_url or CASDOOR_CDN)
        self.state.port_path.write_text(str(self.port))
        self.state.origin_path.write_text(self.origin)
        if self.database_url is not None:
            write_private(self._database_url_path, self.database_url)
        self._shim_dir()
        return binary

    @private_umask()
    def spawn(self) -> ManagedProcess:
        """Start Casdoor without waiting; refuses a port another process listens on."""
        binary = self.prepare()
        if tcp_open(self.port):
            raise CasdoorPortBusy(
                f"port {self.port} (Casdoor's, fixed so the issuer {self.origin} stays valid) "
                "is held by another process; stop it, nothing is killed for you"
            )
        self.process = ManagedProcess(
            "casdoor",
            [str(binary)],
            log_path=self.state.log_path,
            cwd=self.state.run_dir,
            env=self.env(),
            # beego has no JSON adapter: its lines become ours (log_relay.py)
            relay=[sys.executable, "-m", "hanzo_stack.casdoor.log_relay"],
        ).start()
        self.state.pid_path.write_text(str(self.process.pid))
        return self.process

    def after_ready(self) -> None:
        """What must follow the first healthy answer (idempotent)."""
        # before our own first POST
        if self.database_url is None:
            install_record_scrubber(self.state.db_path)
        else:
            install_record_scrubber_postgres(self.database_url)
        self._retire_builtin_admin_password()
        self._quiet_builtin_organization()
        log.info("casdoor %s up at %s", self.version, self.url)

    def start(self, timeout: float = 120.0) -> CasdoorServer:
        """Install if needed, render config, start, wait for ``/api/health``."""
        if self.running_pid() and self.healthy():
            self.secrets = self.state.load_or_create()
            return self
        process = self.spawn()
        process.wait_ready(self.healthy, timeout)
        self.after_ready()
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

    def _quiet_builtin_organization(self) -> None:
        """No guided tour over the admin lists: Casdoor creates ``built-in`` with
        ``enableTour`` on (object/init.go), and its UI shows the tour to that org's admins
        until each closes it in their own browser. The org's field turns it off for all."""
        auth = (self.client_id, self.client_secret)
        url = f"{self.url}/api/get-organization"
        found = httpx.get(url, params={"id": "admin/built-in"}, auth=auth, timeout=10).json()
        organization = found.get("data") or {}
        if organization.get("enableTour") is not True:
            return
        organization["enableTour"] = False
        response = httpx.post(
            f"{self.url}/api/update-organization",
            params={"id": "admin/built-in"},
            json=organization,
            auth=auth,
            timeout=10,
        )
        if response.json().get("status") != "ok":
            raise RuntimeError(f"could not turn built-in's tour off: {response.json().get('msg')}")

    def kill(self) -> None:
        """SIGKILL at once (a crash, for the restart tests); the pid file stays behind."""
        if self.process is not None:
            self.process.kill()
        elif (pid := self.running_pid()) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

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
