"""The TypeScript client (`clients/typescript/`) against the whole running stack.

Builds it (`npm ci`, `npm run build`: TypeScript from the npm registry), then runs its Node
test runner suite with the stack's URLs, the CLI client id and the seed users' passwords in
the environment. The Node tests sign in with PKCE and the device-code grant at the real
Casdoor, mint device keys, use every memory call, check tenant isolation, scope escalation,
typed errors, 429 retries and sign-out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .support import RunningStack

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        args,
        cwd=CLIENT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def built_client() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Node 20+ is a prerequisite, see README)")
    steps = (
        ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"],
        ["npm", "run", "build"],
    )
    for step in steps:
        done = _run(step)
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout}\n{done.stderr}"
    return CLIENT_DIR


def _summary(output: str) -> dict[str, int]:
    """Node's closing counts in the TAP reporter's summary (`# pass 12`)."""
    found = re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", output, re.M)
    return {name: int(count) for name, count in found}


def test_typescript_client_suite_passes_against_the_stack(
    built_client: Path, running_stack: RunningStack
) -> None:
    stack = running_stack
    env = {
        **os.environ,
        "HANZO_E2E_GATEWAY_URL": stack.gateway,
        # the Casdoor front, as `hanzo login` uses it: its token endpoint passes the gate
        "HANZO_E2E_CASDOOR_URL": stack.info.casdoor_front_url or "",
        "HANZO_E2E_CLI_CLIENT_ID": stack.cli_client_id,
        "HANZO_E2E_ORG": "acme",
        "HANZO_E2E_OTHER_ORG": "globex",
        "HANZO_E2E_REQUIRED": "1",  # the stack suites fail rather than skip
        **stack.seeds,  # ACME_ALICE_PASSWORD, ACME_BOB_PASSWORD, GLOBEX_CAROL_PASSWORD
    }
    files = sorted(
        str(p.relative_to(CLIENT_DIR)) for p in CLIENT_DIR.glob("dist-test/test/*.test.js")
    )
    assert len(files) >= 3, files  # unit, stack, rate limit
    ran = _run(["node", "--test", "--test-reporter=tap", *files], env=env, timeout=600)
    output = ran.stdout + ran.stderr
    for password in stack.seeds.values():
        assert password not in output  # checked before any assertion message shows output
    counts = _summary(ran.stdout)
    # what ran, for `pytest -rP`: test names and counts only
    print("\n".join(re.findall(r"^\s*(?:not )?ok \d+ - .*$", ran.stdout, re.M)), counts)
    assert ran.returncode == 0, output[-6000:]
    assert counts.get("pass", 0) > 0, output[-3000:]
    assert counts.get("fail") == 0 and counts.get("cancelled", 0) == 0, output[-6000:]
    assert counts.get("skipped", 0) == 0 and counts.get("todo", 0) == 0, output[-3000:]
    assert counts["pass"] == counts["tests"]
    for name in (
        "signs in with PKCE",
        "device-code grant",
        "another tenant's memory id answers 404",
    ):
        assert re.search(rf"^\s*ok \d+ - .*{re.escape(name)}", ran.stdout, re.M), name
