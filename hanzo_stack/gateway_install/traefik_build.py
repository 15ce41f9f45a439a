"""Build the pinned Traefik v3 from its Go module, once, into ``~/.cache/hanzo/traefik/``.

As for Casdoor (``hanzo_stack.casdoor.install``): ``go mod download`` the module zip, then
``go build`` ``./cmd/traefik`` from the read-only module cache. v3.7.x cannot be built so:
its go.mod replaces ``github.com/traefik/traefik/dynamic/ext`` with a directory that the
module zip does not contain, and several of its lego DNS providers' modules are refused by
the module proxy (403); v3.6.x has neither problem.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

from hanzo_contract.settings import default_cache_dir
from hanzo_stack.casdoor.build_progress import Progress, log_tail, run_logged
from hanzo_stack.casdoor.install import go_binary
from hanzo_stack.gateway_install.errors import InstallError

TRAEFIK_MODULE = "github.com/traefik/traefik/v3"
TRAEFIK_VERSION = "v3.6.12"


def traefik_binary_path(version: str = TRAEFIK_VERSION, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "traefik" / version / "bin" / "traefik"


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on", "CGO_ENABLED": "0"}


def _source_dir(version: str) -> Path:
    go = go_binary()
    if go is None:
        raise InstallError("Go toolchain not found on PATH; it is needed to build Traefik")
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{TRAEFIK_MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env=_go_env(),
    )
    if proc.returncode != 0:
        raise InstallError(
            f"go mod download {TRAEFIK_MODULE}@{version}:\n{proc.stdout}{proc.stderr}"
        )
    return Path(json.loads(proc.stdout)["Dir"])


def install_traefik(
    version: str = TRAEFIK_VERSION, cache_dir: Path | None = None, progress: Progress | None = None
) -> Path:
    """The cached binary, built first if missing (several minutes on two cores, once)."""
    target = traefik_binary_path(version, cache_dir)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second installer waits, then reuses
        if target.exists():
            return target
        source = _source_dir(version)
        partial = target.with_suffix(".partial")
        log_path = target.parent / "build.log"
        argv = [go_binary() or "go", "build", "-trimpath", "-o", str(partial), "./cmd/traefik"]
        code = run_logged(
            argv, source, _go_env(), f"go build of Traefik {version}", log_path, progress
        )
        if code != 0:
            raise InstallError(
                f"go build of Traefik {version} failed; log {log_path}:\n{log_tail(log_path)}"
            )
        partial.replace(target)
    return target
