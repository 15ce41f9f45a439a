"""Build Casdoor's own admin UI (``web/`` of the pinned module) once, into the cache.

Facts that shape this: the module cache is read-only, so the sources are copied out first;
``web/``'s ``preinstall`` refuses npm, so yarn (v1, itself installed from the npm
registry into the cache) runs the install; Cypress's install step would download a binary,
so ``CYPRESS_INSTALL_BINARY=0``; ``craco build`` writes ``build-temp/`` and the
``postbuild`` script moves it to ``build/``. Nothing of this lands in the repo.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

from hanzo_contract.settings import default_cache_dir
from hanzo_stack.casdoor.build_progress import Progress, log_tail, run_logged
from hanzo_stack.casdoor.install import CASDOOR_VERSION, CasdoorInstallError, module_source_dir

log = logging.getLogger(__name__)
YARN_VERSION = "1.22.22"


def casdoor_ui_dir(version: str = CASDOOR_VERSION, cache_dir: Path | None = None) -> Path:
    """The built UI (holds ``index.html``): what Casdoor's ``frontendBaseDir`` points at."""
    return (cache_dir or default_cache_dir()) / "casdoor" / version / "web" / "build"


#: the one image URL of Casdoor's UI outside its ``staticBaseUrl`` (App.js: the favicon while
#: nobody is signed in), pointed at a path under it so the stack serves it too
_FOREIGN_FAVICON = "https://cdn.casdoor.com/static/favicon.png"
_STATIC_FAVICON = "https://cdn.casbin.org/img/favicon.png"


def localize_ui(ui_dir: Path) -> Path:
    """Make the built UI's images follow ``staticBaseUrl`` (Casdoor rewrites
    ``https://cdn.casbin.org`` in the files it serves); idempotent, atomic per file."""
    for bundle in sorted((ui_dir / "static" / "js").glob("*.js")):
        text = bundle.read_text(encoding="utf-8")
        if _FOREIGN_FAVICON in text:
            fresh = bundle.with_name(bundle.name + ".tmp")
            fresh.write_text(text.replace(_FOREIGN_FAVICON, _STATIC_FAVICON), encoding="utf-8")
            fresh.replace(bundle)
    return ui_dir


def _run(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    what: str,
    log_path: Path,
    progress: Progress | None = None,
) -> None:
    code = run_logged(argv, cwd, env, what, log_path, progress)
    if code != 0:
        raise CasdoorInstallError(
            f"{what} failed (exit {code}); log {log_path}:\n{log_tail(log_path)}"
        )


def build_casdoor_ui(
    version: str = CASDOOR_VERSION,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Return the built UI dir, building it first if needed (several minutes, once);
    ``progress`` gets a line with the elapsed time and the log's path every few seconds."""
    target = casdoor_ui_dir(version, cache_dir)
    if (target / "index.html").exists():
        return localize_ui(target)
    web = target.parent
    web.parent.mkdir(parents=True, exist_ok=True)
    with open(web.parent / ".ui-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "index.html").exists():
            return localize_ui(target)
        npm = shutil.which("npm")
        if npm is None:
            raise CasdoorInstallError("npm (Node.js) not found; it is needed to build Casdoor's UI")
        source = module_source_dir(version) / "web"
        if web.exists():
            shutil.rmtree(web)
        shutil.copytree(source, web)
        for path in [web, *web.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)  # module cache files are read-only
        tools = web.parent / "tools"
        log_path = web.parent / "ui-build.log"
        env = {
            **os.environ,
            "CYPRESS_INSTALL_BINARY": "0",
            "CI": "false",
            "GENERATE_SOURCEMAP": "false",
            "NODE_OPTIONS": "--max-old-space-size=6144",
        }
        yarn = tools / "node_modules" / ".bin" / "yarn"
        if not yarn.exists():
            _run(
                [npm, "install", "--no-save", "--prefix", str(tools), f"yarn@{YARN_VERSION}"],
                web.parent,
                env,
                "installing yarn",
                log_path,
                progress,
            )
        log.info("building Casdoor's admin UI (several minutes, once): log %s", log_path)
        _run(
            [str(yarn), "install", "--frozen-lockfile", "--network-timeout", "600000"],
            web,
            env,
            "yarn install",
            log_path,
            progress,
        )
        _run([str(yarn), "build"], web, env, "yarn build", log_path, progress)
        if not (target / "index.html").exists():
            raise CasdoorInstallError(f"UI build finished but {target}/index.html is missing")
    return localize_ui(target)
