"""Settings sources (env over the [gateway] TOML table) and the `hanzo gateway` CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway_plugins.cli import cli
from gateway_plugins.settings import GatewaySettings


def test_env_wins_over_the_toml_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "hanzo.toml"
    config.write_text(
        '[gateway]\nsidecar_url = "http://from-file:1"\nlimiter_fail_mode = "closed"\n'
        'jwt_audiences = ["a", "b"]\n[sidecar]\nsidecar_url = "http://wrong:2"\n'
    )
    monkeypatch.setenv("HANZO_CONFIG", str(config))
    monkeypatch.setenv("HANZO_GATEWAY_SIDECAR_URL", "http://from-env:3")
    settings = GatewaySettings()
    assert settings.sidecar_url == "http://from-env:3"
    assert settings.limiter_fail_mode == "closed"
    assert settings.jwt_audiences == ["a", "b"]
    # one sidecar_url (existing configs and env) is a list of one
    assert settings.resolved_sidecar_urls() == ["http://from-env:3"]


def test_sidecar_urls_list_wins_over_the_one_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hanzo.toml"
    config.write_text('[gateway]\nsidecar_urls = ["http://a:1", "http://b:2"]\n')
    monkeypatch.setenv("HANZO_CONFIG", str(config))
    monkeypatch.setenv("HANZO_GATEWAY_SIDECAR_URL", "http://one:3")
    assert GatewaySettings().resolved_sidecar_urls() == ["http://a:1", "http://b:2"]
    monkeypatch.setenv("HANZO_GATEWAY_SIDECAR_URLS", '["http://c:4", "http://d:5"]')
    assert GatewaySettings().resolved_sidecar_urls() == ["http://c:4", "http://d:5"]


def test_bad_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANZO_GATEWAY_LIMITER_FAIL_MODE", "sometimes")
    with pytest.raises(ValueError, match="limiter_fail_mode"):
        GatewaySettings()


def test_routes_command_shows_the_permission(tmp_path: Path, monkeypatch) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: [{methods: [POST], path: /v1/x, permission: memory:write}]\n")
    monkeypatch.setenv("HANZO_GATEWAY_ROUTES_FILE", str(routes))
    runner = CliRunner()
    result = runner.invoke(cli, ["routes", "/v1/x", "--method", "post"])
    assert result.exit_code == 0 and "requires memory:write" in result.output
    result = runner.invoke(cli, ["routes", "/v1/y"])
    assert result.exit_code == 0 and "denied" in result.output
