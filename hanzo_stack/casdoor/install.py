"""Build the pinned Casdoor from its Go module, once, into a cache outside the repo
(``hanzo_stack.go_module`` says how, and why not ``go install``)."""

from __future__ import annotations

from pathlib import Path

from hanzo_contract.settings import default_cache_dir
from hanzo_stack.casdoor.build_progress import Progress
from hanzo_stack.go_module import GoBuildError, build_once, module_dir

CASDOOR_MODULE = "github.com/casdoor/casdoor"
CASDOOR_VERSION = "v1.1000.0"


class CasdoorInstallError(RuntimeError):
    """Casdoor could not be fetched or built; carries the Go toolchain's exact error."""


def casdoor_binary_path(version: str = CASDOOR_VERSION, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "casdoor" / version / "bin" / "casdoor"


def module_source_dir(version: str = CASDOOR_VERSION) -> Path:
    """Download (if needed) the pinned module and return its source directory."""
    try:
        return module_dir(CASDOOR_MODULE, version)
    except GoBuildError as exc:
        raise CasdoorInstallError(str(exc)) from None


def install_casdoor(
    version: str = CASDOOR_VERSION,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Return the cached binary, building it first if it is not there (minutes, once);
    ``progress`` gets a line with the elapsed time and the build log's path every few
    seconds."""
    target = casdoor_binary_path(version, cache_dir)
    what = f"go build of Casdoor {version}"
    try:
        return build_once(CASDOOR_MODULE, version, ".", target, what, progress)
    except GoBuildError as exc:
        raise CasdoorInstallError(str(exc)) from None
