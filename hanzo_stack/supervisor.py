"""Keep the local stack's parts running: restart whatever exits, with backoff, and count it.

``hanzo up`` starts ``hanzo supervise`` as a detached daemon (its own session, so it
outlives the CLI); the daemon holds the parts as its children. A part that exits is
restarted after a backoff that doubles on each quick failure (0.5 s up to 30 s) and resets
once the part has stayed up for a while, so a crash loop cannot spin the CPU and a single
crash costs half a second. Restarts are counted and written, with every part's pid, port,
URL and state, to ``<state>/run/supervisor.json``, which ``hanzo status`` reads.

A part that is already running when the daemon starts (a stack whose previous supervisor
died) is adopted by its pid file, not restarted: repairing a stack starts only what is down.
A part's port is fixed; if something else holds it the part waits in backoff, and nothing is
ever killed to free a port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from hanzo_stack.process import ManagedProcess, owned_pid, pid_alive, tcp_open

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: a part up this long is healthy again: its next crash restarts after FIRST_BACKOFF
STABLE_AFTER = 30.0
START_TIMEOUT = 180.0
TICK = 0.2

State = Literal["starting", "running", "backoff", "held", "stopped"]


class PartStatus(BaseModel):
    """One part as the daemon sees it (no secrets)."""

    pid: int | None
    port: int
    url: str
    state: State
    restarts: int
    last_exit: str | None = None


class SupervisorStatus(BaseModel):
    """``<state>/run/supervisor.json``: what ``hanzo status`` shows."""

    pid: int
    started_at: float
    parts: dict[str, PartStatus]


@dataclass
class Part:
    """How to run one part: ``spawn`` starts it without waiting, ``ready`` probes it."""

    name: str
    port: int
    url: str
    pid_path: Path
    spawn: Callable[[], ManagedProcess]
    ready: Callable[[], bool]
    #: a string that the part's command line contains (adopting a pid checks it)
    marker: str
    after_ready: Callable[[], None] = lambda: None
    needs: tuple[str, ...] = ()
    #: while true the part is not restarted (a fault test holding it down; ``hanzo``
    #: operators stopping one part on purpose)
    held: Callable[[], bool] = lambda: False
    #: more ports the part listens on (the memory service's gRPC server, nginx's gRPC
    #: listener): fixed like ``port``, so one held by another process stops the start too
    also_ports: tuple[int, ...] = ()


@dataclass
class _Running:
    part: Part
    process: ManagedProcess | None = None
    pid: int | None = None
    state: State = "stopped"
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    since: float = 0.0
    last_exit: str | None = None


def _alive(run: _Running) -> bool:
    if run.process is not None:
        return run.process.running()
    return run.pid is not None and pid_alive(run.pid)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """The daemon's loop; one instance per state dir (its pid file says which)."""

    def __init__(
        self,
        parts: Sequence[Part],
        status_path: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runs = {part.name: _Running(part) for part in parts}
        self.status_path = status_path
        self.clock = clock
        self.stopping = False
        self.started_at = time.time()

    # ------------------------------------------------------------------ one part
    def _adopt(self, run: _Running) -> None:
        """A part left running by an earlier supervisor keeps running: track its pid."""
        if (pid := owned_pid(run.part.pid_path, run.part.marker)) is not None:
            run.pid, run.state, run.since = pid, "starting", self.clock()
            log.info("%s: adopted running pid %d", run.part.name, pid)

    def _spawn(self, run: _Running) -> None:
        part = run.part
        if not all(self.runs[name].state == "running" for name in part.needs):
            return
        for port in (part.port, *part.also_ports):
            if tcp_open(port):
                self._failed(run, f"port {port} is held by another process")
                return
        try:
            run.process = part.spawn()
        except Exception as exc:
            self._failed(run, f"could not start: {type(exc).__name__}: {exc}")
            return
        run.pid = run.process.pid
        part.pid_path.write_text(str(run.pid))
        run.state, run.since = "starting", self.clock()
        log.info("%s: started pid %s on port %d", part.name, run.pid, part.port)

    def _failed(self, run: _Running, why: str) -> None:
        if run.pid is not None:
            # leftovers of its process group (uvicorn, nginx workers): the group id stays
            # allocated while any member lives, so this reaches only our own processes
            _kill_group(run.pid, signal.SIGKILL)
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2**run.failures)
        run.failures += 1
        run.process, run.pid = None, None
        run.state, run.last_exit = "backoff", why
        run.next_start = self.clock() + delay
        log.warning("%s: %s; restarting in %.1fs", run.part.name, why, delay)

    def _exit_reason(self, run: _Running) -> str:
        if run.process is not None and run.process.proc is not None:
            code = run.process.proc.returncode
            if code is not None and code < 0:
                return f"killed by {signal.Signals(-code).name}"
            return f"exited with {code}"
        return "exited"  # adopted: not our child, its exit status is not ours to read

    def step(self) -> None:
        """One pass over every part: notice exits and readiness, start what is due."""
        now = self.clock()
        for run in self.runs.values():
            part = run.part
            if run.state in ("starting", "running") and not _alive(run):
                run.restarts += 1
                self._failed(run, self._exit_reason(run))
            elif run.state == "starting":
                if part.ready():
                    try:
                        part.after_ready()
                    except Exception as exc:
                        run.last_exit = f"after start: {type(exc).__name__}: {exc}"
                        continue
                    run.state, run.since = "running", now
                    log.info("%s: ready", part.name)
                elif now - run.since > START_TIMEOUT:
                    assert run.pid is not None
                    _kill_group(run.pid, signal.SIGKILL)  # counted as a restart next pass
            elif run.state == "running" and now - run.since > STABLE_AFTER:
                run.failures = 0
            if run.state in ("stopped", "backoff", "held"):
                if part.held():
                    run.state = "held"
                elif now >= run.next_start:
                    self._spawn(run)

    # ------------------------------------------------------------------ the daemon
    def status(self) -> SupervisorStatus:
        return SupervisorStatus(
            pid=os.getpid(),
            started_at=self.started_at,
            parts={
                name: PartStatus(
                    pid=run.pid,
                    port=run.part.port,
                    url=run.part.url,
                    state=run.state,
                    restarts=run.restarts,
                    last_exit=run.last_exit,
                )
                for name, run in self.runs.items()
            },
        )

    def write_status(self) -> None:
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(self.status().model_dump_json(indent=2))
        tmp.replace(self.status_path)

    def run_forever(self) -> None:
        """Until SIGTERM/SIGINT: supervise; then stop every part, last started first."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        for run in self.runs.values():
            self._adopt(run)
        last: str | None = None
        while not self.stopping:
            self.step()
            current = self.status().model_dump_json()
            if current != last:
                self.write_status()
                last = current
            time.sleep(TICK)
        self.stop_all()
        self.write_status()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _on_hup(self, signum: int, _frame: object) -> None:
        """``hanzo up`` on a half-running stack: start what is down now, not after backoff."""
        for run in self.runs.values():
            run.next_start = 0.0

    def stop_all(self, timeout: float = 10.0) -> None:
        for run in reversed(list(self.runs.values())):
            if run.pid is None or not _alive(run):
                continue
            _kill_group(run.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(run) and time.monotonic() < deadline:
                time.sleep(0.1)
            _kill_group(run.pid, signal.SIGKILL)
            run.part.pid_path.unlink(missing_ok=True)
            run.state, run.pid, run.process = "stopped", None, None
            log.info("%s: stopped", run.part.name)
