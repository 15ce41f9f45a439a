"""How to type ``hanzo`` again, as the banner of ``hanzo up`` prints it.

``scripts/up.sh`` (the README's first command) runs ``uv run hanzo up``: ``uv run`` puts the
project's ``.venv/bin`` on the PATH of its own child only, so ``hanzo down`` typed in the
user's shell afterwards is "command not found". The banner names the command that works:
``hanzo`` when that name on the user's PATH is this very program, else the program's path.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path


def hanzo_command(
    argv0: str | None = None,
    environ: Mapping[str, str] | None = None,
    executable: str | None = None,
) -> str:
    """The words to type for ``hanzo`` in the shell that started this process."""
    env = os.environ if environ is None else environ
    me = Path(argv0 if argv0 is not None else sys.argv[0]).resolve()
    python = executable or sys.executable
    if me.name != "hanzo":  # python -m hanzo_stack
        return f"{shlex.quote(python)} -m hanzo_stack"
    path = env.get("PATH", "")
    if env.get("UV_RUN_RECURSION_DEPTH") and env.get("VIRTUAL_ENV"):
        # the venv's bin is uv run's addition, not the user's PATH
        injected = str(Path(env["VIRTUAL_ENV"]) / "bin")
        path = os.pathsep.join(p for p in path.split(os.pathsep) if p.rstrip("/") != injected)
    found = shutil.which("hanzo", path=path)
    if found and Path(found).resolve() == me:
        return "hanzo"
    return shlex.quote(str(me))
