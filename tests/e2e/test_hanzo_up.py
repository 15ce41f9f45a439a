"""`hanzo up` on a fresh state dir reaches all-healthy, and the curl it prints works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from hanzo_stack.invocation import hanzo_command


def _hanzo(state: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HANZO_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "hanzo_stack", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_hanzo_up_prints_a_curl_that_works_then_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    try:
        up = _hanzo(state, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "all healthy." in up.stdout
        key = (state / "demo-key").read_text()
        assert key.startswith("hk-") and key not in up.stdout + up.stderr

        # run exactly the lines `hanzo up` printed under "try it:"
        script = up.stdout.split("try it:", 1)[1].split("stop with:", 1)[0]
        lines = [line for line in script.splitlines() if line.strip()]
        assert any("/v1/memory/store" in line for line in lines)
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", "\n".join(lines)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        stored_line, searched_line = ran.stdout.replace("}{", "}\n{").splitlines()[:2]
        stored, searched = json.loads(stored_line), json.loads(searched_line)
        assert len(stored["ids"]) == 1
        assert searched["results"][0]["memory"]["id"] == stored["ids"][0]
        assert "deploy window" in searched["results"][0]["memory"]["content"]

        # an operator's next command finds the running stack from the state dir alone
        created = _hanzo(
            state,
            "keys",
            "create",
            "--org",
            "acme",
            "--owner",
            "bob",
            "--name",
            "ops-made",
            "--scope",
            "memory:read",
            "--json",
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        ops_key = json.loads(created.stdout)["key"]
        gateway = json.loads((state / "stack.json").read_text())["gateway_url"]
        listed = httpx.get(
            f"{gateway}/v1/memory/retrieve", headers={"Authorization": f"Bearer {ops_key}"}
        )
        assert listed.status_code == 200, listed.text
        too_far = _hanzo(
            state,
            "keys",
            "create",
            "--org",
            "acme",
            "--owner",
            "bob",
            "--name",
            "ops-wide",
            "--scope",
            "memory:delete",
            timeout=60,
        )
        assert too_far.returncode != 0  # bob's roles grant no delete

        status = _hanzo(state, "status", timeout=60)
        assert status.returncode == 0, status.stdout
        states = dict(line.split()[:2] for line in status.stdout.splitlines()[:-1])
        for part in ("casdoor", "sidecar", "gateway", "memory", "nginx", "casdoor_front"):
            assert states[part] == "healthy", status.stdout
        assert (state / "logs" / "sidecar.log").exists()
        # the banner's stop command, typed literally in a shell without the venv on PATH
        stop = up.stdout.split("stop with:", 1)[1].strip()
        down = subprocess.run(
            ["bash", "-c", stop],
            env={**os.environ, "HANZO_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert down.returncode == 0, (stop, down.stderr)
    finally:
        _hanzo(state, "down", timeout=120)  # idempotent: nothing left to stop when it worked
    after = _hanzo(state, "status", timeout=60)
    assert after.returncode == 1 and "healthy" not in after.stdout.replace("DOWN", "")


def test_the_banner_names_a_hanzo_the_users_shell_can_run(tmp_path: Path) -> None:
    """``uv run hanzo up`` (scripts/up.sh) puts the venv's bin on its child's PATH only:
    the banner must not say a bare ``hanzo`` then; it does when ``hanzo`` is on PATH."""
    script = Path(sys.executable).parent / "hanzo"  # the venv's console script
    venv_bin = str(script.parent)
    under_uv = {
        "PATH": f"{venv_bin}:/usr/bin:/bin",
        "UV_RUN_RECURSION_DEPTH": "1",
        "VIRTUAL_ENV": str(script.parent.parent),
    }
    said = hanzo_command(str(script), under_uv)
    assert said == str(script.resolve())
    ran = subprocess.run(
        ["bash", "-c", f"{said} --version"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0 and ran.stdout.startswith("hanzo "), ran.stderr
    # installed on the user's PATH (a symlink to the same program): the bare name
    user_bin = tmp_path / "bin"
    user_bin.mkdir()
    (user_bin / "hanzo").symlink_to(script)
    assert hanzo_command(str(script), {**under_uv, "PATH": f"{venv_bin}:{user_bin}"}) == "hanzo"
    # an activated venv is the user's own PATH
    assert hanzo_command(str(script), {"PATH": f"{venv_bin}:/usr/bin"}) == "hanzo"
    # python -m hanzo_stack
    assert hanzo_command("/x/hanzo_stack/__main__.py", {}, "/py") == "/py -m hanzo_stack"
