"""Ports and the issuer are state: chosen once, then read back, never re-picked."""

from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

from hanzo_stack.ports import PARTS, StackPorts
from hanzo_stack.stack import Stack


def test_ports_are_chosen_once_and_kept(tmp_path: Path) -> None:
    first = StackPorts.load_or_choose(tmp_path)
    assert set(first.ports) == set(PARTS) and len(set(first.ports.values())) == len(PARTS)
    assert first.casdoor_origin == f"http://127.0.0.1:{first.ports['casdoor']}"
    assert not (tmp_path / "ports.json").exists()  # only `up` saves (status writes nothing)
    first.save(tmp_path)
    assert StackPorts.load_or_choose(tmp_path) == first
    assert Stack(tmp_path).ports == first


def test_the_issuer_is_configuration_not_derived_from_the_port(tmp_path: Path) -> None:
    (tmp_path / "ports.json").write_text(
        json.dumps(
            {
                "ports": {"casdoor": 41001, "sidecar": 41002},
                "casdoor_origin": "https://id.example.test",
            }
        )
    )
    kept = StackPorts.load_or_choose(tmp_path)
    assert kept.casdoor_origin == "https://id.example.test"
    assert kept.ports["casdoor"] == 41001 and kept.ports["sidecar"] == 41002
    assert set(kept.ports) == set(PARTS)  # the missing parts get ports, the rest stay
    stack = Stack(tmp_path)
    assert stack.casdoor.origin == "https://id.example.test"
    assert stack.casdoor.url == "http://127.0.0.1:41001"
    assert stack.casdoor.env()["origin"] == "https://id.example.test"


def test_a_state_dir_from_before_keeps_casdoors_port_and_origin(tmp_path: Path) -> None:
    (tmp_path / "casdoor").mkdir()
    (tmp_path / "casdoor" / "port").write_text("41234")
    chosen = StackPorts.load_or_choose(tmp_path)
    assert chosen.ports["casdoor"] == 41234
    assert chosen.casdoor_origin == "http://127.0.0.1:41234"


def test_a_stale_pid_file_never_gets_anybody_elses_process_signalled(tmp_path: Path) -> None:
    """After a reboot or a SIGKILL the stack's pid files stay, and their numbers can come
    back as anyone's process: `hanzo up` sent the supervisor's SIGHUP to it and `hanzo
    down` SIGTERM then SIGKILL (to its whole group). Only a pid whose command line is the
    part's own is ever signalled; the stale files go."""
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stack = Stack(tmp_path)
        layout = stack.layout
        layout.supervisor_pid_path.parent.mkdir(parents=True, exist_ok=True)
        stale = [layout.supervisor_pid_path, stack.casdoor.state.pid_path]
        stale += [layout.pid_path(name) for name in stack.services()]
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(stranger.pid))
        assert stack.supervisor_pid() is None and stack.casdoor.running_pid() is None
        stack.down(quiet=True)
        assert stranger.poll() is None  # still running, never signalled
        assert not any(layout.pid_path(name).exists() for name in stack.services())
    finally:
        stranger.kill()
        stranger.wait()


def test_a_second_supervisor_of_one_state_dir_leaves_at_once(tmp_path: Path) -> None:
    """Two `hanzo up` at once each started a supervisor; the second restarted every part
    the first stopped at `down`. One holds the state dir's lock for its life; another
    leaves without writing its pid."""
    stack = Stack(tmp_path)
    lock_path = stack.layout.supervisor_lock_path
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as held:  # the first supervisor's
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stack.supervise()  # returns at once: it never reads a spec or starts a part
        assert not stack.layout.supervisor_pid_path.exists()
