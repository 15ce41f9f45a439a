"""Build the pinned Traefik v3 from its Go module, once, into ``~/.cache/hanzo/traefik/``.

As Casdoor is built (``hanzo_stack.go_module``): ``./cmd/traefik`` of the module zip.
v3.7.x cannot be built so: its go.mod replaces ``github.com/traefik/traefik/dynamic/ext``
with a directory that the module zip does not contain, and the module proxy refuses
several of its lego DNS providers' modules (403); v3.6.x has neither problem.
"""

from __future__ import annotations

from pathlib import Path

from hanzo_contract.settings import default_cache_dir
from hanzo_stack.casdoor.build_progress import Progress
from hanzo_stack.gateway_install.errors import InstallError
from hanzo_stack.go_module import GoBuildError, build_once

TRAEFIK_MODULE = "github.com/traefik/traefik/v3"
TRAEFIK_VERSION = "v3.6.12"


def traefik_binary_path(version: str = TRAEFIK_VERSION, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "traefik" / version / "bin" / "traefik"


def install_traefik(
    version: str = TRAEFIK_VERSION, cache_dir: Path | None = None, progress: Progress | None = None
) -> Path:
    """The cached binary, built first if missing (several minutes on two cores, once)."""
    target = traefik_binary_path(version, cache_dir)
    what = f"go build of Traefik {version}"
    try:
        return build_once(TRAEFIK_MODULE, version, "./cmd/traefik", target, what, progress)
    except GoBuildError as exc:
        raise InstallError(str(exc)) from None
