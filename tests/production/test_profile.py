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
    assert needs["gateway"] == needs["gateway_b"] == ("valkey2",)
    assert needs["sidecar"] == needs["sidecar_b"] == ("casdoor",)
    # each replica right after the part it doubles, on its own port, the same command
    for replica, of in (("sidecar_b", "sidecar"), ("gateway_b", "gateway")):
        assert names.index(replica) == names.index(of) + 1
        by_name = {p.name: p for p in parts}
        assert by_name[replica].marker.split()[:-1] == by_name[of].marker.split()[:-1]
        assert by_name[replica].port == stack.ports.ports[replica] != by_name[of].port
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
    # the plugins and the sidecars: two servers each behind their upstream block
    for block, pair in (
        ("hanzo_auth", ("gateway", "gateway_b")),
        ("hanzo_sidecar", ("sidecar", "sidecar_b")),
    ):
        line = next(x for x in conf.splitlines() if f"upstream {block} " in x)
        for name in pair:
            assert f"server 127.0.0.1:{ports[name]} max_fails=1" in line, (block, name)
    # the auth subrequest fails over on a refused connection or a timeout, and no location
    # re-sends a request nginx has already sent (a memory or key POST)
    auth = (stack.layout.nginx_dir / "hanzo-auth-locations.conf").read_text()
    block = auth[auth.index("location = /_hanzo_auth {") :]
    block = block[: block.index("}")]
    assert "proxy_next_upstream error timeout;" in block
    every = conf + auth + (stack.layout.nginx_dir / "hanzo-protect.conf").read_text()
    directives = [x.split("#")[0] for x in every.splitlines()]
    assert not [x for x in directives if "non_idempotent" in x]
    sections = stack.production.config()
    memory, sidecar = sections["memory"], sections["sidecar"]
    assert memory["backend"] == "postgres"
    # the app roles serve, the owner roles migrate: never the same role
    assert memory["postgres_dsn"] != memory["postgres_migrate_dsn"]
    assert sidecar["database_url"] != sidecar["database_migrate_url"]
    assert "hanzo_memory_app:" in str(memory["postgres_dsn"])
    assert "hanzo_sidecar_app:" in str(sidecar["database_url"])
    assert sections["gateway"] == {
        # both plugins ask both sidecars, ``sidecar`` first
        "sidecar_urls": [f"http://127.0.0.1:{ports[name]}" for name in ("sidecar", "sidecar_b")],
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
    assert written["gateway"]["sidecar_urls"] == sections["gateway"]["sidecar_urls"]


def test_backup_refuses_a_production_state_dir(tmp_path: Path) -> None:
    """A file copy of a live PostgreSQL data dir is no backup: say what to use instead."""
    state = tmp_path / "state"
    state.mkdir()
    save_profile(state, "production")
    with pytest.raises(BackupError, match="pg_dump"):
        backup(state, tmp_path / "backup")
    assert not (tmp_path / "backup").exists()
