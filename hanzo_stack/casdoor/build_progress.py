"""Long builds (Casdoor's ``go build``, about 3 min; its UI's yarn build, about 5.5 min)
say they are alive: every ``interval`` seconds one line with the step, the elapsed time and
the log's path, so a user can follow the log instead of wondering whether it hangs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

Progress = Callable[[str], None]

#: seconds between two progress lines
INTERVAL = 15.0


def run_logged(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    what: str,
    log_path: Path,
    progress: Progress | None = None,
    interval: float = INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run ``argv`` with its output appended to ``log_path``, reporting progress; return
    its exit code (the caller turns a failure into its own error with :func:`log_tail`)."""
    say = progress or (lambda _line: None)
    start = clock()
    say(f"{what}: started (log {log_path})")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        while True:
            try:
                code = proc.wait(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                say(f"{what}: {clock() - start:.0f}s elapsed (log {log_path})")
    if code == 0:
        say(f"{what}: done in {clock() - start:.0f}s")
    return code


def log_tail(log_path: Path, lines: int = 25) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
