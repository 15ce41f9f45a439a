"""Build the pinned Casdoor from its Go module, once, into a cache outside the repo.

``go install module@version`` is refused for Casdoor (the proxy's deprecation lookup for
the module answers 403), so we download the module zip with ``go mod download`` and build
it from the read-only module cache with ``go build -o``. Same source, same pin.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

from hanzo_contract.settings import default_cache_dir
from hanzo_stack.casdoor.build_progress import Progress, log_tail, run_logged

CASDOOR_MODULE = "github.com/casdoor/casdoor"
CASDOOR_VERSION = "v1.1000.0"

log = logging.getLogger(__name__)


class CasdoorInstallError(RuntimeError):
    """Casdoor could not be fetched or built; carries the Go toolchain's exact error."""


def casdoor_binary_path(version: str = CASDOOR_VERSION, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "casdoor" / version / "bin" / "casdoor"


def go_binary() -> str | None:
    """``go`` on PATH, or the standard install location (a PATH without it is common)."""
    return shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")


def module_source_dir(version: str = CASDOOR_VERSION) -> Path:
    """Download (if needed) the pinned module and return its source directory."""
    go = go_binary()
    if go is None:
        raise CasdoorInstallError("Go toolchain not found on PATH; it is needed to build Casdoor")
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{CASDOOR_MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"},
    )
    if proc.returncode != 0:
        raise CasdoorInstallError(
            f"go mod download {CASDOOR_MODULE}@{version} failed:\n{proc.stdout}{proc.stderr}"
        )
    return Path(json.loads(proc.stdout)["Dir"])


def install_casdoor(
    version: str = CASDOOR_VERSION,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Return the cached binary, building it first if it is not there (minutes, once);
    ``progress`` gets a line with the elapsed time and the build log's path every few
    seconds."""
    target = casdoor_binary_path(version, cache_dir)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second installer waits, then reuses
        if target.exists():
            return target
        source = module_source_dir(version)
        log.info("building Casdoor %s from %s (takes a few minutes, once)", version, source)
        partial = target.with_suffix(".partial")
        log_path = target.parent / "build.log"
        code = run_logged(
            [go_binary() or "go", "build", "-trimpath", "-o", str(partial), "."],
            source,
            {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"},
            f"go build of Casdoor {version}",
            log_path,
            progress,
        )
        if code != 0:
            raise CasdoorInstallError(
                f"go build of Casdoor {version} failed; log {log_path}:\n{log_tail(log_path)}"
            )
        partial.replace(target)
    return target
