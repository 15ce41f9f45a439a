"""Fixtures for validating deploy/ without a Docker engine or a cluster.

The tools (``docker compose`` and ``kustomize``, built from their Go modules) come from
``scripts/install-deploy-tools.sh`` into the cache dir; the operator's files (``.env``,
``secrets.env``, the assertion key pair, ``tenants.yaml``) are made by running the exact
one-liners ``deploy/README.md`` tells the operator to run, in a temp copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hanzo_contract.settings import default_cache_dir

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
K8S_DIR = DEPLOY / "k8s"
README = DEPLOY / "README.md"


def tool(name: str) -> Path:
    path = default_cache_dir() / "deploy-tools" / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/install-deploy-tools.sh")
    return path


def readme_line(*needles: str) -> str:
    """The one command line of deploy/README.md that contains every needle."""
    found = [
        line.strip()
        for line in README.read_text().splitlines()
        if all(n in line for n in needles) and not line.lstrip().startswith("#")
    ]
    assert len(found) == 1, f"expected one README line with {needles}, found {found}"
    return found[0]


def run_shell(command: str, cwd: Path) -> None:
    subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, check=True, timeout=60)


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def empty_keys(example: Path) -> list[str]:
    """The values an operator must fill: the empty ones of an ``*.example`` env file."""
    return [k for k, v in read_env_file(example).items() if v == ""]


def clean_env(home: Path) -> dict[str, str]:
    """No HANZO_*/secret vars from the caller's shell may leak into interpolation."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}


def compose(args: list[str], env_file: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("docker-compose")), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def filled_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``.env`` made by the README's one-liner from ``.env.example``."""
    work = tmp_path_factory.mktemp("compose-env")
    shutil.copy(COMPOSE_DIR / ".env.example", work / ".env.example")
    run_shell(readme_line(".env.example > .env"), work)
    return work / ".env"


@pytest.fixture(scope="session")
def compose_model(filled_env: Path, home: Path) -> dict[str, Any]:
    proc = compose(["config", "--format", "json"], filled_env, home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def k8s_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/k8s with the operator's files made by the README's commands."""
    root = tmp_path_factory.mktemp("k8s") / "deploy"
    shutil.copytree(K8S_DIR, root / "k8s")
    shutil.copytree(DEPLOY / "tenants", root / "tenants")
    work = root / "k8s"
    for needles in (
        ("secrets.env.example > secrets.env",),
        ("openssl genpkey", "assertion.pub"),
        ("cp ../tenants/", "tenants.yaml"),
    ):
        run_shell(readme_line(*needles), work)
    return work


def compose_init_script(model: dict[str, Any], root: Path) -> tuple[str, list[str]]:
    """The compose ``init`` script and args, its fixed /etc/hanzo paths moved under ``root``."""
    command = model["services"]["init"]["command"]
    assert command[:2] == ["python", "-c"]
    script = command[2].replace('"/etc/hanzo/', f'"{root}/etc/hanzo/')
    for sub in ("assertion", "assertion-public", "casdoor-init"):
        (root / "etc" / "hanzo" / sub).mkdir(parents=True, exist_ok=True)
    template = COMPOSE_DIR / "casdoor" / "init_data.template.json"
    args = [str(template), str(root / "etc" / "hanzo" / "casdoor-init" / "init_data.json")]
    return script, args


def kustomize_build(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("kustomize")), "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def k8s_objects(k8s_workdir: Path) -> list[dict[str, Any]]:
    proc = kustomize_build(k8s_workdir)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
