"""Ports and the issuer are state: chosen once, then read back, never re-picked."""

from __future__ import annotations

import json
from pathlib import Path

from hanzo_stack.ports import PARTS, StackPorts
from hanzo_stack.stack import Stack


def test_ports_are_chosen_once_and_kept(tmp_path: Path) -> None:
    first = StackPorts.load_or_choose(tmp_path)
    assert set(first.ports) == set(PARTS) and len(set(first.ports.values())) == len(PARTS)
    assert first.casdoor_origin == f"http://127.0.0.1:{first.ports['casdoor']}"
    assert not (tmp_path / "ports.json").exists()  # only `up` saves (status writes nothing)
    first.save(tmp_path)
    assert StackPorts.load_or_choose(tmp_path) == first
    assert Stack(tmp_path).ports == first


def test_the_issuer_is_configuration_not_derived_from_the_port(tmp_path: Path) -> None:
    (tmp_path / "ports.json").write_text(
        json.dumps(
            {
                "ports": {"casdoor": 41001, "sidecar": 41002},
                "casdoor_origin": "https://id.example.test",
            }
        )
    )
    kept = StackPorts.load_or_choose(tmp_path)
    assert kept.casdoor_origin == "https://id.example.test"
    assert kept.ports["casdoor"] == 41001 and kept.ports["sidecar"] == 41002
    assert set(kept.ports) == set(PARTS)  # the missing parts get ports, the rest stay
    stack = Stack(tmp_path)
    assert stack.casdoor.origin == "https://id.example.test"
    assert stack.casdoor.url == "http://127.0.0.1:41001"
    assert stack.casdoor.env()["origin"] == "https://id.example.test"


def test_a_state_dir_from_before_keeps_casdoors_port_and_origin(tmp_path: Path) -> None:
    (tmp_path / "casdoor").mkdir()
    (tmp_path / "casdoor" / "port").write_text("41234")
    chosen = StackPorts.load_or_choose(tmp_path)
    assert chosen.ports["casdoor"] == 41234
    assert chosen.casdoor_origin == "http://127.0.0.1:41234"
