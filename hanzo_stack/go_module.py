"""Build a pinned Go module's command, once, into a cache outside the repo (Casdoor, Traefik).

``go install module@version`` is refused for some modules (the proxy's deprecation lookup
answers 403 for Casdoor), so the module zip is fetched with ``go mod download`` and built
from the read-only module cache with ``go build -o``. Same source, same pin.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

from hanzo_stack.casdoor.build_progress import Progress, log_tail, run_logged


class GoBuildError(RuntimeError):
    """The module could not be fetched or built; carries the Go toolchain's exact error."""


def go_binary() -> str | None:
    """``go`` on PATH, or the standard install location (a PATH without it is common)."""
    return shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")


def _env() -> dict[str, str]:
    return {**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on", "CGO_ENABLED": "0"}


def module_dir(module: str, version: str) -> Path:
    """Download (if needed) ``module@version`` and return its source directory."""
    go = go_binary()
    if go is None:
        raise GoBuildError(f"Go toolchain not found on PATH; it is needed to build {module}")
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env=_env(),
    )
    if proc.returncode != 0:
        raise GoBuildError(
            f"go mod download {module}@{version} failed:\n{proc.stdout}{proc.stderr}"
        )
    return Path(json.loads(proc.stdout)["Dir"])


def build_once(
    module: str,
    version: str,
    package: str,
    target: Path,
    what: str,
    progress: Progress | None = None,
) -> Path:
    """``target``, building ``package`` of ``module@version`` into it first if it is not
    there (minutes, once); a second builder waits on the lock, then reuses the result."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        source = module_dir(module, version)
        partial = target.with_suffix(".partial")
        log_path = target.parent / "build.log"
        argv = [go_binary() or "go", "build", "-trimpath", "-o", str(partial), package]
        if run_logged(argv, source, _env(), what, log_path, progress) != 0:
            raise GoBuildError(f"{what} failed; log {log_path}:\n{log_tail(log_path)}")
        partial.replace(target)
    return target
