"""The HA drill's short version: one of each pair (plugin, sidecar, memory replica) killed,
and the other sidecar too (the one both plugins ask first),
under a mixed load through nginx, on a production stack of its own.

Runs ``scripts/ha_drill.py --short`` (the same code as the full run) and checks what
matters for each kill: no wrong decision (a refused key allowed, a good one refused), no
acknowledged write lost, the killed part back once released, and the load really ran
through the window."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KILLED = ["gateway_b", "sidecar_b", "sidecar", "memory_b"]


def test_killing_one_of_each_pair_decides_nothing_wrong_and_loses_no_write(
    tmp_path: Path,
) -> None:
    out = tmp_path / "ha.json"
    script = REPO / "scripts" / "ha_drill.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--short", "--quiet", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    kills = {k["part"]: k for k in results["kills"]}
    assert list(kills) == KILLED
    assert results["wrong_decisions"] == 0
    assert results["acknowledged_writes_lost"] == 0
    for part, kill in kills.items():
        assert kill["wrong_decisions"] == 0, (part, kill)
        assert kill["writes_lost"] == 0, (part, kill)
        assert kill["requests"] > 20 and kill["acked_writes"] > 2, (part, kill)
    # the other plugin took every decision: an auth subrequest is moved, never failed
    assert kills["gateway_b"]["failed"] == 0, kills["gateway_b"]
    # the sidecar both plugins ask first: they verified keys at the other one meanwhile
    assert kills["sidecar"]["sidecar_failovers"] > 0, kills["sidecar"]
    assert results["healthy_after"] is True
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
