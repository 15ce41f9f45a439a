"""The production profile's wiring, without starting it: the profile is kept per state dir,
its ports are added to the kept ones, its parts start in dependency order, nginx balances
both memory replicas, and every part is told its engine."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hanzo_stack.backup import BackupError, backup
from hanzo_stack.ports import PARTS, StackPorts
from hanzo_stack.production import PORT_NAMES, read_profile, save_profile
from hanzo_stack.stack import DEFAULT_TENANT_FILE, Stack, SuperviseSpec


def test_a_state_dir_keeps_its_profile_and_refuses_the_other(tmp_path: Path) -> None:
    assert read_profile(tmp_path) is None
    assert Stack(tmp_path).profile == "default"
    save_profile(tmp_path, "production")
    assert Stack(tmp_path).profile == "production"  # `hanzo down` needs no flag
    with pytest.raises(ValueError, match="runs the 'production' profile"):
        save_profile(tmp_path, "default")
    (tmp_path / "profile").write_text("staging\n")
    with pytest.raises(ValueError, match="unknown profile"):
        read_profile(tmp_path)


def test_production_ports_are_added_to_the_kept_ones(tmp_path: Path) -> None:
    default = StackPorts.load_or_choose(tmp_path)
    default.save(tmp_path)
    production = Stack(tmp_path, profile="production").ports
    assert {k: production.ports[k] for k in PARTS} == default.ports  # nothing moved
    assert set(production.ports) == {*PARTS, *PORT_NAMES}
    assert len(set(production.ports.values())) == len(production.ports)


def test_parts_start_in_dependency_order(tmp_path: Path) -> None:
    stack = Stack(tmp_path, profile="production")
    parts = stack.parts(SuperviseSpec(tenant_file=str(DEFAULT_TENANT_FILE)))
    names = [p.name for p in parts]
    needs = {p.name: p.needs for p in parts}
    assert names[:4] == ["postgres", "valkey0", "valkey1", "valkey2"]
    assert needs["casdoor"] == needs["memory"] == needs["memory_b"] == ("postgres",)
    assert needs["valkey2"] == ("valkey0", "valkey1")  # it forms the cluster
    assert needs["gateway"] == ("valkey2",)
    # every part a pid file names is stopped by `hanzo down`
    assert set(stack.services()) == set(names) - {"casdoor"}
    assert [
        p.name
        for p in Stack(tmp_path / "d").parts(SuperviseSpec(tenant_file=str(DEFAULT_TENANT_FILE)))
    ] == [
        "casdoor",
        "sidecar",
        "gateway",
        "memory",
        "inference",
        "nginx",
    ]


def test_config_and_nginx_name_the_production_engines(tmp_path: Path) -> None:
    stack = Stack(tmp_path, profile="production")
    assert stack.production is not None
    ports = stack.ports.ports
    stack._nginx_conf(ports, None)
    conf = (stack.layout.nginx_dir / "nginx.conf").read_text()
    upstream = next(line for line in conf.splitlines() if "upstream hanzo_memory" in line)
    for replica in ("memory", "memory_b"):
        assert f"server 127.0.0.1:{ports[replica]} max_fails=1" in upstream
    sections = stack.production.config()
    memory, sidecar = sections["memory"], sections["sidecar"]
    assert memory["backend"] == "postgres"
    # the app roles serve, the owner roles migrate: never the same role
    assert memory["postgres_dsn"] != memory["postgres_migrate_dsn"]
    assert sidecar["database_url"] != sidecar["database_migrate_url"]
    assert "hanzo_memory_app:" in str(memory["postgres_dsn"])
    assert "hanzo_sidecar_app:" in str(sidecar["database_url"])
    assert sections["gateway"] == {
        "limiter_backend": "redis",
        "redis_url": f"redis://127.0.0.1:{ports['valkey0']}/0",
        "redis_cluster": True,
    }
    assert stack.casdoor.engine == "postgres"
    assert "hanzo_casdoor_owner:" in str(stack.casdoor.database_url)
    # the config file carries them (0600: it holds database passwords)
    stack.casdoor.secrets = stack.casdoor.state.load_or_create()
    path = stack._write_config(ports, DEFAULT_TENANT_FILE)
    assert path.stat().st_mode & 0o077 == 0
    written = tomllib.loads(path.read_text())
    assert written["memory"]["postgres_dsn"] == memory["postgres_dsn"]
    assert written["gateway"]["redis_cluster"] is True


def test_backup_refuses_a_production_state_dir(tmp_path: Path) -> None:
    """A file copy of a live PostgreSQL data dir is no backup: say what to use instead."""
    state = tmp_path / "state"
    state.mkdir()
    save_profile(state, "production")
    with pytest.raises(BackupError, match="pg_dump"):
        backup(state, tmp_path / "backup")
    assert not (tmp_path / "backup").exists()
