"""Drive a stack the way an operator does: the ``hanzo`` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hanzo_contract.settings import default_cache_dir


def hanzo(
    *args: str,
    state: Path | None = None,
    env: Mapping[str, str] | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = 400,
) -> subprocess.CompletedProcess[str]:
    """``hanzo <args>`` with ``HANZO_STATE_DIR=state`` (or the given env alone, minus
    ``unset``); the Casdoor build cache stays the real one whatever ``HOME`` is."""
    full = {**os.environ, "HANZO_CACHE_DIR": str(default_cache_dir()), **(env or {})}
    for name in unset:
        full.pop(name, None)
    if state is not None:
        full["HANZO_STATE_DIR"] = str(state)
    return subprocess.run(
        [sys.executable, "-m", "hanzo_stack", *args],
        env=full,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def status_json(state: Path) -> dict[str, Any]:
    """``hanzo status --json`` (whatever its exit code: a part may be down)."""
    out = hanzo("status", "--json", state=state, timeout=60)
    return json.loads(out.stdout)


def wait_until(
    what: str, check: Callable[[], bool], timeout: float = 60.0, every: float = 0.3
) -> None:
    """Poll ``check`` until it holds; bounded, and the failure says what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")
