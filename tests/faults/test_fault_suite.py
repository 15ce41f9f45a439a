"""The fault suite's short version: one SIGKILL per part under load, through the real stack.

Runs ``scripts/fault_suite.py --short`` (the same code as the full run) and checks what
matters: no wrong decision, no acknowledged write lost, each part's absence answered as
written down in the script's docstring, every error the JSON body, no part killed by
another's restart, and every part back after its restore.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PARTS = ["casdoor", "sidecar", "gateway", "memory", "valkey"]


def test_one_fault_per_part_loses_nothing_and_decides_nothing_wrong(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    script = REPO / "scripts" / "fault_suite.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--short", "--quiet", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.exists(), proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    faults = {f["part"]: f for f in results["faults"]}
    assert list(faults) == PARTS
    assert results["wrong_decisions"] == 0
    assert results["acknowledged_writes"] > 50  # the load really wrote
    assert results["acknowledged_writes_lost"] == 0
    for part, fault in faults.items():
        assert fault["expectation_violations"] == [], (part, fault)
        assert fault["wrong_decisions"] == 0 and fault["not_json_errors"] == 0, (part, fault)
        assert fault["internal_errors"] == 0, (part, fault["failures"])
        assert fault["others_killed"] == [], (part, fault)  # e.g. Casdoor's start-up kill
        assert fault["restore"] == "restored", (part, fault)
        assert fault["requests"] > 20, (part, fault)
    # the absences that must show as failures did, and the ones that must not did not
    assert faults["gateway"]["failed"] > 0 and faults["memory"]["failed"] > 0
    assert faults["valkey"]["failed"] == 0, faults["valkey"]["failures"]  # fail open, default
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
