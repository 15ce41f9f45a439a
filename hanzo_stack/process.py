"""Start, probe and stop the local servers (Casdoor, Valkey, nginx, our services).

Used by ``hanzo up`` and by the test fixtures alike, so the stack a developer runs is the
one the tests run. Every server listens on a loopback port chosen at run time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
#: every child server runs with it: what a server creates (databases, logs, sockets, temp
#: files) is readable by the service user only, whatever the server's own default mode
PRIVATE_UMASK = 0o077


class StartupError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files this process makes meanwhile (configs, pid files, databases) are 0600, dirs 0700.

    The umask is process-wide, so it is restored on the way out; as a decorator it covers a
    whole ``up``.
    """
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def tcp_open(port: int, host: str = LOOPBACK) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False


def command_line(pid: int) -> str:
    """``pid``'s command line, its arguments joined by spaces ("" when it is gone)."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def owned_pid(path: Path, marker: str) -> int | None:
    """The live pid written in ``path`` whose command line holds ``marker``, else None. A
    pid file outlives a reboot or a SIGKILL, and its number can come back as anybody's
    process: only ours is ever signalled."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text())
        if pid_alive(pid) and marker in command_line(pid):
            return pid
    return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; reaps it if it is our exited child (no zombie waits)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedProcess:
    """A child server in its own process group, logging to one file.

    A server that does not write our JSON lines (Casdoor) names a ``relay``: a command
    that reads the server's stdout and stderr from a pipe (its stdin) and writes the log
    file. The relay runs in a session of its own, so signals to the server's group never
    reach it; it ends when the pipe does, after the server's last line.
    """

    #: how long a stop waits for the relay to write the server's last lines
    RELAY_DRAIN_SECONDS = 10.0

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        relay: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.relay = list(relay) if relay else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.relay_proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # a log left by an older run may be 0644
        log = os.fdopen(fd, "ab")
        read_end, write_end = os.pipe() if self.relay else (None, None)
        try:
            if self.relay:
                self.relay_proc = subprocess.Popen(
                    self.relay,
                    stdin=read_end,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    umask=PRIVATE_UMASK,
                )
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=write_end if self.relay else log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=PRIVATE_UMASK,
            )
        finally:
            # the server holds the only write end now: the relay sees the end of the pipe
            # when the server (and anything it passed its stdout to) has exited
            for end in (read_end, write_end):
                if end is not None:
                    os.close(end)
            log.close()
        return self

    def running(self) -> bool:
        if self.relay_proc is not None:
            self.relay_proc.poll()  # reaps a relay whose server has gone
        return self.proc is not None and self.proc.poll() is None

    def _drain(self) -> None:
        """Wait (bounded) for the relay to write the server's last lines."""
        if self.relay_proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.relay_proc.wait(self.RELAY_DRAIN_SECONDS)

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise StartupError(
                    f"{self.name} exited with {self.proc and self.proc.returncode}; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if probe():
                return
            time.sleep(0.1)
        self.stop()
        raise StartupError(
            f"{self.name} not ready after {timeout:.0f}s; log {self.log_path}:\n"
            f"{log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            self._drain()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._drain()

    def kill(self) -> None:
        """SIGKILL at once: for crash tests."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._drain()
