"""``hanzo status`` as text: its columns line up whatever the part names, the production
profile's long ones (``memory_b_grpc``, ``valkey0``) beside the default profile's short
ones, so a reader can scan the state and URL columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import hanzo_stack.stack
from hanzo_stack.cli import app
from hanzo_stack.production import PORT_NAMES

DEFAULT_PARTS = ("casdoor", "sidecar", "gateway", "memory", "memory_grpc", "nginx")


def _report() -> dict[str, Any]:
    names = [*DEFAULT_PARTS, *(n for n in PORT_NAMES if not n.endswith("_bus"))]
    parts = {
        name: {"healthy": name != "memory_b_grpc", "url": f"http://127.0.0.1:{40000 + i}",
               "restarts": i % 3}
        for i, name in enumerate(names)
    }  # fmt: skip
    return {"healthy": False, "supervisor_pid": 4242, "parts": parts}


class _ReportOnly:
    """A stand-in for :class:`hanzo_stack.stack.Stack` that only reports: the rendering is
    under test here, not the stack (the production stack test brings one up)."""

    def __init__(self, _state_dir: Path, **_: Any) -> None:
        pass

    def report(self) -> dict[str, Any]:
        return _report()


def test_status_columns_line_up_with_production_part_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hanzo_stack.stack, "Stack", _ReportOnly)
    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1  # one part is down
    lines = result.output.splitlines()
    report = _report()
    rows = lines[: len(report["parts"])]
    assert lines[len(rows)] == "supervisor pid 4242"
    state_at = {row.index("healthy") if "healthy" in row else row.index("DOWN") for row in rows}
    url_at = {row.index("http://") for row in rows}
    assert len(state_at) == 1 and len(url_at) == 1  # every column starts at one offset
    for row, (name, part) in zip(rows, report["parts"].items(), strict=True):
        assert row.split() == [
            name,
            "healthy" if part["healthy"] else "DOWN",
            part["url"],
            f"restarts={part['restarts']}",
        ]
    longest = max(len(name) for name in report["parts"])
    assert longest == len("memory_b_grpc") and state_at == {longest + 2}  # no wider than needed
