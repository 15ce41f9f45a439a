"""The supervisor's restart policy, on real child processes and a clock the test drives."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from hanzo_stack.process import ManagedProcess, free_port
from hanzo_stack.supervisor import FIRST_BACKOFF, MAX_BACKOFF, STABLE_AFTER, Part, Supervisor
from tests.support.clock import FakeClock


class Spawner:
    """Starts ``python -c code`` and remembers every process it started."""

    def __init__(self, tmp: Path, name: str, code: str) -> None:
        self.tmp, self.name, self.code = tmp, name, code
        self.started: list[ManagedProcess] = []

    def __call__(self) -> ManagedProcess:
        proc = ManagedProcess(
            self.name, [sys.executable, "-c", self.code], log_path=self.tmp / f"{self.name}.log"
        ).start()
        self.started.append(proc)
        return proc

    def wait_last_exit(self) -> None:
        assert self.started[-1].proc is not None
        self.started[-1].proc.wait(30)


def _part(tmp: Path, spawner: Spawner, needs: tuple[str, ...] = (), port: int = 0) -> Part:
    return Part(
        name=spawner.name,
        port=port or free_port(),
        url="http://127.0.0.1",
        pid_path=tmp / f"{spawner.name}.pid",
        spawn=spawner,
        ready=lambda: True,
        marker=spawner.code,
        needs=needs,
    )


def test_a_crashing_part_restarts_with_doubling_backoff_up_to_the_cap(tmp_path: Path) -> None:
    clock = FakeClock()
    crashy = Spawner(tmp_path, "crashy", "import sys; sys.exit(3)")
    sup = Supervisor([_part(tmp_path, crashy)], tmp_path / "status.json", clock=clock)
    sup.step()
    assert len(crashy.started) == 1
    expected_delay = FIRST_BACKOFF
    for restart in range(1, 10):
        crashy.wait_last_exit()
        sup.step()  # notices the exit; not restarted at once
        status = sup.status().parts["crashy"]
        assert status.state == "backoff" and status.restarts == restart
        assert status.last_exit == "exited with 3"
        assert len(crashy.started) == restart
        clock.advance(expected_delay - 0.01)
        sup.step()
        assert len(crashy.started) == restart  # still backing off
        clock.advance(0.01)
        sup.step()
        assert len(crashy.started) == restart + 1
        expected_delay = min(MAX_BACKOFF, expected_delay * 2)
    assert expected_delay == MAX_BACKOFF  # the cap was reached and held


def test_a_part_that_stayed_up_restarts_after_the_first_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    steady = Spawner(tmp_path, "steady", "import time; time.sleep(60)")
    sup = Supervisor([_part(tmp_path, steady)], tmp_path / "status.json", clock=clock)
    try:
        # two quick deaths grow the backoff ...
        for _ in range(2):
            sup.step()
            sup.step()
            assert sup.status().parts["steady"].state == "running"
            steady.started[-1].kill()
            sup.step()
            clock.advance(MAX_BACKOFF)
        sup.step()
        sup.step()
        assert sup.status().parts["steady"].restarts == 2
        # ... a long run resets it: the next death costs FIRST_BACKOFF again
        clock.advance(STABLE_AFTER + 1)
        sup.step()
        steady.started[-1].kill()
        sup.step()
        count = len(steady.started)
        clock.advance(FIRST_BACKOFF)
        sup.step()
        assert len(steady.started) == count + 1
        assert sup.status().parts["steady"].restarts == 3
        assert (tmp_path / "steady.pid").read_text() == str(steady.started[-1].pid)
    finally:
        sup.stop_all()
    assert not steady.started[-1].running()
    assert sup.status().parts["steady"].state == "stopped"


def test_a_part_waits_for_what_it_needs_and_for_its_port(tmp_path: Path) -> None:
    clock = FakeClock()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    dep = Spawner(tmp_path, "dep", "import time; time.sleep(60)")
    user = Spawner(tmp_path, "user", "import time; time.sleep(60)")
    dep_part = _part(tmp_path, dep, port=holder.getsockname()[1])
    sup = Supervisor(
        [dep_part, _part(tmp_path, user, needs=("dep",))], tmp_path / "status.json", clock=clock
    )
    try:
        sup.step()
        # another process holds dep's port: nothing is started, nothing is killed
        status = sup.status().parts["dep"]
        assert status.state == "backoff" and "held by another process" in (status.last_exit or "")
        assert dep.started == [] and user.started == []
        holder.close()
        clock.advance(FIRST_BACKOFF)
        sup.step()  # dep starts
        assert len(dep.started) == 1 and user.started == []
        sup.step()  # dep ready; user may start now
        assert len(user.started) == 1
    finally:
        holder.close()
        sup.stop_all()


def test_a_held_part_stays_down_until_released(tmp_path: Path) -> None:
    clock = FakeClock()
    hold = tmp_path / "hold"
    steady = Spawner(tmp_path, "steady", "import time; time.sleep(60)")
    part = _part(tmp_path, steady)
    part.held = hold.exists
    sup = Supervisor([part], tmp_path / "status.json", clock=clock)
    try:
        sup.step()
        hold.touch()
        steady.started[-1].kill()
        sup.step()
        clock.advance(MAX_BACKOFF * 2)
        sup.step()
        assert sup.status().parts["steady"].state == "held" and len(steady.started) == 1
        hold.unlink()
        sup.step()
        assert len(steady.started) == 2
    finally:
        sup.stop_all()
