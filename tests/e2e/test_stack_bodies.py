"""Large bodies through the stack's nginx on a private (0700) state dir, as ``hanzo up``
lays it out by default (issue 11).

As root the default state dir is under a 0700 home; nginx's workers used to run as
``nobody``, could not write their client-body temp files there, and every body over nginx's
memory buffer answered ``503 auth_unavailable``. The stack here is started by the CLI with
only ``HOME`` set (no ``HANZO_STATE_DIR``), so the default path logic picks the state dir.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hanzo_stack.stack import StackInfo

from .stack_cli import hanzo

MIB = 1_048_576


class BodyStack:
    def __init__(self, home: Path, info: StackInfo) -> None:
        self.home, self.info = home, info
        self.state = Path(info.state_dir)
        self.key = (self.state / "demo-key").read_text()

    def post(self, path: str, body: bytes, content_type: str = "application/json"):
        return httpx.post(
            f"{self.info.gateway_url}{path}",
            content=body,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": content_type},
            timeout=120,
        )


@pytest.fixture(scope="module")
def body_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BodyStack]:
    home = tmp_path_factory.mktemp("home")
    home.chmod(0o700)  # as root's home is
    env = {"HOME": str(home)}
    unset = ("HANZO_STATE_DIR", "XDG_STATE_HOME", "HANZO_CONFIG")
    try:
        up = hanzo("up", env=env, unset=unset)
        assert up.returncode == 0, up.stdout + up.stderr
        state = home / ".local" / "state" / "hanzo"
        info = StackInfo.model_validate_json((state / "stack.json").read_text())
        yield BodyStack(home, info)
    finally:
        hanzo("down", env=env, unset=unset, timeout=120)


def test_the_default_state_dir_is_private_and_nginx_workers_can_use_it(
    body_stack: BodyStack,
) -> None:
    state = body_stack.state
    assert state == body_stack.home / ".local" / "state" / "hanzo"
    assert stat.S_IMODE(body_stack.home.stat().st_mode) == 0o700
    # nginx's workers run as the state dir's owner (not `nobody`, who cannot enter it)
    master = int((state / "run" / "nginx.pid").read_text())
    workers = subprocess.run(
        ["ps", "-o", "user=", "--ppid", str(master)], capture_output=True, text=True
    ).stdout.split()
    owner = subprocess.run(
        ["stat", "-c", "%U", str(state)], capture_output=True, text=True
    ).stdout.strip()
    assert workers and set(workers) == {owner}


def test_a_one_mib_memory_body(body_stack: BodyStack) -> None:
    """A store body of 1 MiB (the memory service's body limit): 33 memories of ~32 K
    characters (its per-memory limit)."""
    marker = uuid.uuid4().hex
    sizes = [31_700] * 33
    memories = [{"content": f"{marker} {n} " + "m" * size} for n, size in enumerate(sizes)]
    body = json.dumps({"memories": memories}).encode()
    pad = MIB - len(body)
    memories[-1]["content"] += "p" * pad
    body = json.dumps({"memories": memories}).encode()
    assert len(body) == MIB and len(memories[-1]["content"]) <= 32_768
    stored = body_stack.post("/v1/memory/store", body)
    assert stored.status_code == 200, stored.text[:300]
    ids = stored.json()["ids"]
    assert len(ids) == 33
    got = httpx.get(
        f"{body_stack.info.gateway_url}/v1/memory/retrieve",
        params={"id": ids[-1]},
        headers={"Authorization": f"Bearer {body_stack.key}"},
        timeout=60,
    )
    assert got.status_code == 200
    assert got.json()["memories"][0]["content"] == memories[-1]["content"]


def test_a_batch_of_512_memories(body_stack: BodyStack) -> None:
    tag = uuid.uuid4().hex[:12]
    memories = [{"content": f"batch {tag} item {n} " + "b" * 300} for n in range(512)]
    body = json.dumps({"memories": memories}).encode()
    assert len(body) > 16 * 1024 * 8  # far over nginx's in-memory body buffer
    stored = body_stack.post("/v1/memory/store", body)
    assert stored.status_code == 200, stored.text[:300]
    assert len(set(stored.json()["ids"])) == 512


def test_a_ten_mb_import(body_stack: BodyStack) -> None:
    tag = uuid.uuid4().hex[:12]
    lines = [
        json.dumps({"id": f"imp-{tag}-{n}", "content": f"import {tag} line {n} " + "i" * 30_000})
        for n in range(340)
    ]
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > 10_000_000
    imported = body_stack.post("/v1/memory/import", body, "application/x-ndjson")
    assert imported.status_code == 200, imported.text[:300]
    assert imported.json() == {"created": 340, "updated": 0, "duplicate": 0, "expired": 0}


def test_a_failure_inside_nginx_says_so_with_a_request_id(body_stack: BodyStack) -> None:
    """nginx's own failure (here: its body temp dir replaced by a file) is a 500 naming
    nginx, with a request id, never the auth service's 503."""
    temp = body_stack.state / "run" / "nginx" / "client_body"
    shutil.rmtree(temp)
    temp.write_text("not a directory")
    try:
        body = json.dumps({"memories": [{"content": "x" * 20_000}] * 2}).encode()
        failed = body_stack.post("/v1/memory/store", body)
        assert failed.status_code == 500, failed.text
        error = failed.json()["error"]
        assert error["code"] == "gateway_error" and "nginx" in error["message"]
        assert len(error["request_id"]) == 32
        # small bodies never touch the temp dir: the gateway still serves them
        small = body_stack.post("/v1/memory/store", b'{"memories":[{"content":"small"}]}')
        assert small.status_code == 200, small.text
    finally:
        temp.unlink()
        temp.mkdir(mode=0o700)
    assert body_stack.post("/v1/memory/store", body).status_code == 200
