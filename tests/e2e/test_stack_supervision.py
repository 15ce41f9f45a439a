"""The supervised stack (issue 11): parts come back on their ports, ``hanzo up`` repairs in
place without moving a port, the issuer or the demo key, and a Casdoor restart never
touches another process.

One stack, started by ``hanzo up`` in a subprocess (so the supervisor must outlive the CLI),
shared by the tests of this module in order.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from hanzo_client import HanzoClient
from hanzo_contract.apikey import parse_key_id
from hanzo_stack.process import pid_alive
from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack, StackInfo
from memory_service.grpc import memory_pb2 as pb
from memory_service.grpc import memory_pb2_grpc as pb_grpc

from .stack_cli import hanzo, status_json, wait_until
from .support import RunningStack, pkce_login

PARTS = ("casdoor", "sidecar", "gateway", "memory", "nginx")


@pytest.fixture(scope="module")
def cli_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    state = tmp_path_factory.mktemp("supervised") / "state"
    try:
        up = hanzo("up", state=state)
        assert up.returncode == 0, up.stdout + up.stderr
        stack = Stack(state, progress=lambda _: None)
        info = StackInfo.model_validate_json((state / "stack.json").read_text())
        seeds = stack.layout.seed_passwords(DEFAULT_TENANT_FILE)
        yield RunningStack(stack, info, seeds, echo=None)  # type: ignore[arg-type]
    finally:
        hanzo("down", state=state, timeout=120)


def _pids(report: dict[str, Any]) -> dict[str, int]:
    return {name: part["pid"] for name, part in report["parts"].items()}


def _all_healthy(state: Path) -> bool:
    report = status_json(state)
    return report["healthy"] and all(p["state"] == "running" for p in report["parts"].values())


def _retrieve(gateway: str, credential: str) -> httpx.Response:
    return httpx.get(
        f"{gateway}/v1/memory/retrieve",
        headers={"Authorization": f"Bearer {credential}"},
        timeout=30,
    )


def _demo_keys(state: Path) -> list[dict[str, Any]]:
    listed = hanzo("keys", "list", "--org", "acme", "--owner", "alice", "--json", state=state)
    assert listed.returncode == 0, listed.stderr
    return [k for k in json.loads(listed.stdout) if k["name"].startswith("demo-")]


def test_up_again_and_after_a_killed_part_keeps_ports_issuer_key_and_jwts(
    cli_stack: RunningStack,
) -> None:
    state = Path(cli_stack.info.state_dir)
    before = status_json(state)
    assert before["healthy"] and before["supervisor_pid"]
    assert all(before["parts"][name]["restarts"] == 0 for name in PARTS)
    ports_before = (state / "ports.json").read_text()
    demo_key = (state / "demo-key").read_text()
    jwt = pkce_login(cli_stack, "acme", "alice", cli_stack.password("ACME_ALICE_PASSWORD"))[
        "access_token"
    ]
    assert _retrieve(cli_stack.gateway, jwt).status_code == 200

    # `up` on a running stack: nothing restarts, nothing moves, no second demo key
    again = hanzo("up", state=state)
    assert again.returncode == 0, again.stdout + again.stderr
    after = status_json(state)
    assert _pids(after) == _pids(before)
    assert after["supervisor_pid"] == before["supervisor_pid"]
    assert (state / "ports.json").read_text() == ports_before
    assert (state / "demo-key").read_text() == demo_key

    # `up` on a half-running stack (memory killed, supervisor killed too so nothing else
    # repairs it): only what is down starts; the parts still running keep their pids
    os.kill(before["supervisor_pid"], signal.SIGKILL)
    os.killpg(before["parts"]["memory"]["pid"], signal.SIGKILL)
    wait_until("memory down", lambda: not status_json(state)["parts"]["memory"]["healthy"])
    repaired = hanzo("up", state=state)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    fixed = status_json(state)
    assert fixed["healthy"]
    assert fixed["supervisor_pid"] != before["supervisor_pid"]
    for name in ("casdoor", "sidecar", "gateway", "nginx"):
        assert fixed["parts"][name]["pid"] == before["parts"][name]["pid"], name
    assert fixed["parts"]["memory"]["pid"] != before["parts"]["memory"]["pid"]
    assert (state / "ports.json").read_text() == ports_before
    assert {n: p["url"] for n, p in fixed["parts"].items()} == {
        n: p["url"] for n, p in before["parts"].items()
    }
    assert fixed["issuer"] == before["issuer"] == cli_stack.info.casdoor_url

    # the JWT issued before both `up`s still verifies; the demo key is the same, still
    # works, expires, and is the only demo key alice has
    assert _retrieve(cli_stack.gateway, jwt).status_code == 200
    assert (state / "demo-key").read_text() == demo_key
    assert _retrieve(cli_stack.gateway, demo_key).status_code == 200
    demo = _demo_keys(state)
    assert [k["key_id"] for k in demo] == [parse_key_id(demo_key)]
    assert demo[0]["state"] == "active" and demo[0]["expires_at"] is not None


def test_killed_memory_and_plugin_come_back_on_their_ports(cli_stack: RunningStack) -> None:
    state = Path(cli_stack.info.state_dir)
    before = status_json(state)
    victims = ("memory", "gateway")
    for name in victims:
        os.killpg(before["parts"][name]["pid"], signal.SIGKILL)

    def back() -> bool:
        now = status_json(state)
        return all(
            now["parts"][name]["healthy"]
            and now["parts"][name]["state"] == "running"
            and now["parts"][name]["pid"] != before["parts"][name]["pid"]
            for name in victims
        )

    wait_until("memory and plugin restarted", back, timeout=30)
    after = status_json(state)
    for name in victims:
        part = after["parts"][name]
        assert part["restarts"] >= before["parts"][name]["restarts"] + 1
        assert part["port"] == before["parts"][name]["port"]
        assert part["last_exit"]
    # memory was started by this supervisor (its exit status is known); the plugin was
    # adopted from the killed one in the test before (only its disappearance is)
    assert after["parts"]["memory"]["last_exit"] == "killed by SIGKILL"
    for name in ("casdoor", "sidecar", "nginx"):
        assert after["parts"][name]["pid"] == before["parts"][name]["pid"]
    demo_key = (state / "demo-key").read_text()
    assert _retrieve(cli_stack.gateway, demo_key).status_code == 200
    # the memory service's gRPC listener came back with its process, on its kept port,
    # and answers through nginx's gRPC listener again
    grpc_part = after["parts"]["memory_grpc"]
    assert grpc_part["healthy"] and grpc_part["pid"] == after["parts"]["memory"]["pid"]
    assert grpc_part["port"] == before["parts"]["memory_grpc"]["port"]
    target = f"127.0.0.1:{after['parts']['nginx_grpc']['port']}"
    with grpc.insecure_channel(target) as channel:
        listed = pb_grpc.MemoryServiceStub(channel).List(
            pb.ListRequest(limit=1), metadata=(("authorization", f"Bearer {demo_key}"),), timeout=30
        )
    assert len(listed.memories) <= 1

    # the plain status names every part with its URL and restart count
    text = hanzo("status", state=state, timeout=60)
    assert text.returncode == 0, text.stdout
    line = next(x for x in text.stdout.splitlines() if x.startswith("memory "))
    assert "healthy" in line and after["parts"]["memory"]["url"] in line
    assert f"restarts={after['parts']['memory']['restarts']}" in line


def _lsof_pids(port: int) -> set[int]:
    """What Casdoor's start-up would see: the real ``lsof -t -i :<port>``."""
    out = subprocess.run(
        ["lsof", "-t", "-i", f":{port}"], capture_output=True, text=True, check=False
    )
    return {int(x) for x in out.stdout.split()}


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill-9"])
def test_casdoor_restart_touches_no_other_process(
    cli_stack: RunningStack, how: signal.Signals
) -> None:
    state = Path(cli_stack.info.state_dir)
    before = status_json(state)
    casdoor = before["parts"]["casdoor"]
    # a bystander holding a client connection to Casdoor: lsof lists it first or not at
    # all depending on pid order, so it alone makes the check deterministic
    bystander = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time\n"
            f"s = socket.create_connection(('127.0.0.1', {casdoor['port']}))\n"
            "print('connected', flush=True)\n"
            "time.sleep(300)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bystander.stdout is not None and bystander.stdout.readline() == "connected\n"
        # the sidecar and the plugin talk to Casdoor (key creation checks the owner's
        # roles there; a JWT makes the plugin fetch Casdoor's JWKS)
        tokens = pkce_login(cli_stack, "acme", "alice", cli_stack.password("ACME_ALICE_PASSWORD"))
        with HanzoClient(cli_stack.gateway, tokens["access_token"]) as client:
            client.create_key(f"pre-{uuid.uuid4().hex[:6]}", ["memory:read"])
        holders = _lsof_pids(casdoor["port"]) - {casdoor["pid"]}
        assert bystander.pid in holders  # what an unguarded Casdoor would SIGKILL
        assert before["parts"]["sidecar"]["pid"] in holders  # its pooled connection

        if how == signal.SIGTERM:  # stopped, and started only once the test says so
            cli_stack.stack.hold("casdoor")
            os.kill(casdoor["pid"], how)
            wait_until(
                "casdoor stopped and held",
                lambda: status_json(state)["parts"]["casdoor"]["state"] == "held",
            )
            assert _retrieve(cli_stack.gateway, (state / "demo-key").read_text()).status_code == 200
            cli_stack.stack.release("casdoor")
        else:
            os.kill(casdoor["pid"], how)
        wait_until(
            "casdoor restarted by the supervisor",
            lambda: (
                (p := status_json(state)["parts"]["casdoor"])["healthy"]
                and p["state"] == "running"
                and p["pid"] != casdoor["pid"]
            ),
            timeout=120,
        )
        assert bystander.poll() is None, "Casdoor's start-up killed a port holder"
        after = status_json(state)
        for name in ("sidecar", "gateway", "memory", "nginx"):
            assert after["parts"][name]["pid"] == before["parts"][name]["pid"], name
            assert after["parts"][name]["restarts"] == before["parts"][name]["restarts"], name
            assert pid_alive(before["parts"][name]["pid"]), name
        assert after["parts"]["casdoor"]["port"] == casdoor["port"]
        assert after["issuer"] == before["issuer"]
        # every part answers: keys and the JWT issued before the restart through nginx,
        # and key creation (the sidecar reaches the new Casdoor)
        assert _retrieve(cli_stack.gateway, (state / "demo-key").read_text()).status_code == 200
        assert _retrieve(cli_stack.gateway, tokens["access_token"]).status_code == 200
        with HanzoClient(cli_stack.gateway, tokens["access_token"]) as client:
            minted = client.create_key(f"post-{uuid.uuid4().hex[:6]}", ["memory:read"])
        assert minted["key"].startswith("hk-")
    finally:
        bystander.kill()
        bystander.wait(5)


def test_up_refuses_a_kept_port_another_process_holds_and_kills_nothing(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    state.mkdir()
    (state / "ports.json").write_text(
        json.dumps({"ports": {"nginx": port}, "casdoor_origin": "http://127.0.0.1:1"})
    )
    try:
        up = hanzo("up", state=state)
        assert up.returncode == 1
        assert f"nginx: port {port} is held by another process" in up.stderr
        assert json.loads((state / "ports.json").read_text())["ports"]["nginx"] == port
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the holder still listens: nothing was killed, the port was not moved
    finally:
        holder.close()
        hanzo("down", state=state, timeout=120)
