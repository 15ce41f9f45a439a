"""``hanzo gateway install``: what it renders from a route table, each gateway's own checker
on it, the committed deploy/ files as its output, and APISIX/Kong applied through their
Admin APIs (named fakes that check the calls) idempotently. The end-to-end suite through
the installed nginx, Caddy and Traefik is tests/gateway/test_gw_e2e.py (``*-installed``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway_plugins.routes import RouteTableSpec
from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_stack.cli import app
from hanzo_stack.gateway_install.checkers import validate
from hanzo_stack.gateway_install.errors import InstallError
from hanzo_stack.gateway_install.layout import (
    InstallSettings,
    ProxyRoute,
    build_layout,
    is_grpc_method,
)
from hanzo_stack.gateway_install.templates import DEPLOY_DIR
from tests.deploy.admin_api_fakes import FakeApisixAdmin, FakeKongAdmin

STACK_UPSTREAMS = [
    "--upstream", "hanzo-memory=127.0.0.1:8600",
    "--upstream", "hanzo-sidecar=127.0.0.1:8090",
    "--upstream", "hanzo-inference=127.0.0.1:8700",
]  # fmt: skip

#: how deploy/traefik was rendered (its README gives the same command)
TRAEFIK_DEPLOY = [
    "--config-dir", "/etc/traefik", "--listen", "0.0.0.0:8080", "--auth", "hanzo-auth:8200",
    "--upstream", "hanzo-memory=memory-service:8600", "--upstream", "hanzo-sidecar=sidecar:8090",
    "--upstream", "hanzo-inference=inference:8700",
]  # fmt: skip

ADMIN_KEY = "admin-key-" + "z" * 24


def hanzo(*argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(argv))
    return result.exit_code, result.output


def stack_paths() -> list[str]:
    """The table's HTTP paths (its gRPC methods go to an HTTP/2 listener, not installed)."""
    table = yaml.safe_load((DEPLOY_DIR / "stack" / "routes.yaml").read_text())
    return [route["path"] for route in table["routes"] if not is_grpc_method(route["path"])]


@pytest.mark.parametrize("gateway", ["nginx", "caddy"])
def test_stack_routes_install_and_pass_the_gateways_own_checker(tmp_path, gateway) -> None:
    code, output = hanzo("gateway", "install", gateway, "--out", str(tmp_path), *STACK_UPSTREAMS)
    assert code == 0, output
    assert "accepted" in output  # nginx -t / caddy validate ran on the written files
    text = "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
    assert "127.0.0.1:8700" in text and "127.0.0.1:8090" in text
    for path in stack_paths():
        literal = path.split("{")[0].rstrip("/")
        assert literal in text, path


def test_nginx_every_location_is_protected_and_chat_is_streamed(tmp_path) -> None:
    code, output = hanzo("gateway", "install", "nginx", "--out", str(tmp_path), *STACK_UPSTREAMS)
    assert code == 0, output
    conf = (tmp_path / "nginx.conf").read_text()
    blocks = re.findall(r"location ([^{]+)\{(.*?)\n        \}", conf, re.S)
    proxied = [(m, body) for m, body in blocks if "proxy_pass" in body]
    assert len(proxied) == len(set(stack_paths()))
    for match, body in proxied:
        assert "hanzo-protect.conf" in body, match
    chat = next(body for m, body in blocks if "/v1/chat/completions" in m)
    assert "proxy_buffering off" in chat
    # the catch-all still goes through the plugin before its JSON 404
    catch_all = next(body for m, body in blocks if m.strip() == "/")
    assert "hanzo-protect.conf" in catch_all and "=404" in catch_all
    assert "client_max_body_size 64m;" in conf


def test_a_route_without_its_upstream_is_refused_by_name(tmp_path) -> None:
    code, output = hanzo(
        "gateway", "install", "caddy", "--out", str(tmp_path),
        "--upstream", "hanzo-memory=127.0.0.1:8600",
    )  # fmt: skip
    assert code == 1
    assert "hanzo-sidecar" in output and "--upstream" in output
    assert not (tmp_path / "Caddyfile").exists()


def test_bad_settings_are_a_usage_error(tmp_path) -> None:
    code, output = hanzo("gateway", "install", "nginx", "--out", str(tmp_path), "--listen", "x")
    assert code == 2 and "host:port" in output
    code, output = hanzo("gateway", "install", "haproxy", "--out", str(tmp_path))
    assert code == 2 and "nginx" in output


def test_the_checker_refuses_a_broken_config_with_its_own_words(tmp_path) -> None:
    (tmp_path / "nginx.conf").write_text("events {}\nhttp { server { listen nope; } }\n")
    with pytest.raises(InstallError, match="nginx -t refused"):
        validate("nginx", tmp_path)
    (tmp_path / "Caddyfile").write_text("http://127.0.0.1:1 {\n\tno_such_directive\n}\n")
    with pytest.raises(InstallError, match="caddy validate refused"):
        validate("caddy", tmp_path)


def test_one_path_one_upstream() -> None:
    table = RouteTableSpec.model_validate(
        {
            "routes": [
                {"methods": ["GET"], "path": "/v1/x", "permission": None, "audience": "a"},
                {"methods": ["POST"], "path": "/v1/x", "permission": None, "audience": "b"},
            ]
        }
    )
    settings = InstallSettings(listen="h:1", auth="h:2", upstreams={"a": "h:3", "b": "h:4"})
    with pytest.raises(InstallError, match="both a and b"):
        build_layout(table, settings)


def test_patterns_become_anchored_regexes() -> None:
    one = ProxyRoute("/v1/memory/{id}", "regex", "m", False, ("GET",))
    assert one.regex == "^/v1/memory/[^/]+$"
    assert re.match(one.regex, "/v1/memory/abc") and not re.match(one.regex, "/v1/memory/a/b")
    rest = ProxyRoute("/v1/files/{rest*}", "prefix", "m", False, ("GET",))
    assert rest.prefix == "/v1/files/" and re.match(rest.regex, "/v1/files/a/b")


def test_committed_traefik_files_are_the_renderers_output(tmp_path) -> None:
    code, output = hanzo("gateway", "install", "traefik", "--out", str(tmp_path), *TRAEFIK_DEPLOY)
    assert code == 0, output
    for name in ("traefik.yml", "dynamic.yml"):
        assert (tmp_path / name).read_text() == (DEPLOY_DIR / "traefik" / name).read_text(), name
    dynamic = yaml.safe_load((tmp_path / "dynamic.yml").read_text())["http"]
    auth = dynamic["middlewares"]["hanzo-auth"]["forwardAuth"]
    assert auth["authResponseHeaders"] == list(IDENTITY_HEADERS)
    assert auth["trustForwardHeader"] is False
    for name, router in dynamic["routers"].items():
        assert router["middlewares"][0] == "hanzo-auth", name


# ---- APISIX and Kong through their Admin APIs ---------------------------------------


@pytest.fixture
def apisix() -> Iterator[FakeApisixAdmin]:
    fake = FakeApisixAdmin(ADMIN_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def kong() -> Iterator[FakeKongAdmin]:
    fake = FakeKongAdmin(ADMIN_KEY).start()
    yield fake
    fake.stop()


def _apply(gateway: str, fake, out: Path, *extra: str) -> tuple[int, str]:
    return hanzo(
        "gateway", "install", gateway, "--out", str(out), *STACK_UPSTREAMS,
        "--admin-url", fake.url, "--admin-key", ADMIN_KEY, *extra,
    )  # fmt: skip


@pytest.mark.parametrize("gateway", ["apisix", "kong"])
def test_admin_api_apply_is_idempotent(tmp_path, gateway, apisix, kong) -> None:
    fake = apisix if gateway == "apisix" else kong
    code, output = _apply(gateway, fake, tmp_path / "a")
    assert code == 0, output
    created = fake.puts
    assert created == output.count("create") and created > len(set(stack_paths()))
    assert ADMIN_KEY not in output
    # every route is there, on the plugin, bound to its upstream
    code, again = _apply(gateway, fake, tmp_path / "b")
    assert code == 0, again
    assert fake.puts == created, "a second run changed something"
    assert again.count("unchanged") == created and "create" not in again
    plan = json.loads((tmp_path / "a" / f"{gateway}-admin-plan.json").read_text())
    assert len(plan) == created and all(step["method"] == "PUT" for step in plan)


def test_apisix_routes_carry_the_forward_auth_plugin(tmp_path, apisix) -> None:
    assert _apply("apisix", apisix, tmp_path)[0] == 0
    config = apisix.objects["/apisix/plugin_configs/hanzo-auth"]["plugins"]["forward-auth"]
    assert config["uri"] == "http://127.0.0.1:8200/auth"
    assert config["upstream_headers"] == list(IDENTITY_HEADERS)
    assert config["allow_degradation"] is False
    routes = {k: v for k, v in apisix.objects.items() if k.startswith("/apisix/routes/")}
    assert len(routes) == len(set(stack_paths()))
    assert all(route["plugin_config_id"] == "hanzo-auth" for route in routes.values())
    by_uri = {route["uri"]: route for route in routes.values()}
    assert by_uri["/v1/memory/:id"]["upstream_id"] == "hanzo-memory"
    assert by_uri["/v1/chat/completions"]["upstream_id"] == "hanzo-inference"


def test_kong_services_carry_the_hanzo_auth_plugin(tmp_path, kong) -> None:
    assert _apply("kong", kong, tmp_path)[0] == 0
    services = [k for k in kong.objects if re.fullmatch(r"/services/[^/]+", k)]
    assert sorted(services) == [
        "/services/hanzo-inference", "/services/hanzo-memory", "/services/hanzo-sidecar",
    ]  # fmt: skip
    for service in services:
        plugins = [
            v["name"] for k, v in kong.objects.items() if k.startswith(service + "/plugins/")
        ]
        assert sorted(plugins) == ["hanzo-auth", "request-size-limiting"], service
    route = kong.objects["/services/hanzo-memory/routes/hanzo-v1-memory-id"]
    assert route["paths"] == ["~^/v1/memory/[^/]+$"] and route["strip_path"] is False


@pytest.mark.parametrize("gateway", ["apisix", "kong"])
def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path, gateway, apisix, kong) -> None:
    fake = apisix if gateway == "apisix" else kong
    code, output = _apply(gateway, fake, tmp_path / "out", "--dry-run")
    assert code == 0, output
    assert fake.puts == 0 and "would create" in output
    assert not (tmp_path / "out").exists()
    # after a real apply, a changed setting is planned as exactly the objects it touches
    assert _apply(gateway, fake, tmp_path)[0] == 0
    before = fake.puts
    code, output = _apply(gateway, fake, tmp_path, "--dry-run", "--body-limit-mb", "8")
    assert code == 0 and fake.puts == before
    assert "would update" in output and "would create" not in output


@pytest.mark.parametrize("gateway", ["apisix", "kong"])
def test_a_wrong_admin_key_is_a_clear_error_without_the_key(tmp_path, gateway, apisix, kong):
    fake = apisix if gateway == "apisix" else kong
    code, output = hanzo(
        "gateway", "install", gateway, "--out", str(tmp_path), *STACK_UPSTREAMS,
        "--admin-url", fake.url, "--admin-key", "wrong-" + ADMIN_KEY,
    )  # fmt: skip
    assert code == 1 and "401" in output
    assert ADMIN_KEY not in output and fake.puts == 0


def test_the_fakes_refuse_what_the_admin_apis_refuse(apisix, kong) -> None:
    """The fakes can fail a plan: a route naming an upstream that does not exist, a Kong
    plugin id that is not a UUID, an unknown field."""
    import httpx

    headers = {"X-API-KEY": ADMIN_KEY}
    url = apisix.url + "/apisix/admin/routes/r1"
    r = httpx.put(url, json={"uri": "/x", "upstream_id": "nope"}, headers=headers)
    assert r.status_code == 400 and "upstream" in r.text
    r = httpx.put(url, json={"uri": "/x", "uris": ["/y"]}, headers=headers)
    assert r.status_code == 400
    headers = {"Kong-Admin-Token": ADMIN_KEY}
    assert httpx.put(
        kong.url + "/services/s", json={"url": "http://h:1"}, headers=headers
    ).is_success
    r = httpx.put(
        kong.url + "/services/s/plugins/not-a-uuid",
        json={"name": "hanzo-auth", "config": {}},
        headers=headers,
    )
    assert r.status_code == 400 and "UUID" in r.text
    r = httpx.put(
        kong.url + "/services/s/routes/r", json={"paths": ["/x"], "bogus": 1}, headers=headers
    )
    assert r.status_code == 400


def test_envoy_routes_every_path_behind_ext_authz(tmp_path) -> None:
    code, output = hanzo("gateway", "install", "envoy", "--out", str(tmp_path), *STACK_UPSTREAMS)
    assert code == 0, output
    config = yaml.safe_load((tmp_path / "envoy.yaml").read_text())["static_resources"]
    hcm = config["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = [f["name"] for f in hcm["http_filters"]]
    assert filters == ["envoy.filters.http.ext_authz", "envoy.filters.http.router"]
    authz = hcm["http_filters"][0]["typed_config"]
    assert authz["failure_mode_allow"] is False
    assert authz["http_service"]["server_uri"]["uri"] == "http://127.0.0.1:8200"
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert len(routes) == len(set(stack_paths())) + 1  # and the JSON 404 for the rest
    assert routes[-1]["direct_response"]["status"] == 404
    clusters = {c["name"]: c for c in config["clusters"]}
    assert set(clusters) == {"hanzo_auth", "hanzo_memory", "hanzo_sidecar", "hanzo_inference"}
    for route in routes[:-1]:
        assert route["route"]["cluster"] in clusters
    chat = next(r for r in routes if r["match"].get("path") == "/v1/chat/completions")
    assert chat["route"] == {"cluster": "hanzo_inference", "timeout": "0s"}


def test_grpc_methods_are_left_to_an_http2_listener(tmp_path) -> None:
    """The stack's route table names gRPC methods; an HTTP listener must not route them
    to the memory service's HTTP port (they would be 404s there), and REST and MCP stay."""
    code, output = hanzo("gateway", "install", "traefik", "--out", str(tmp_path), *TRAEFIK_DEPLOY)
    assert code == 0, output
    rendered = (tmp_path / "dynamic.yml").read_text()
    assert "MemoryService" not in rendered
    assert "Path(`/v1/mcp`)" in rendered and "/v1/memory/store" in rendered


def _seconds(value: str) -> int:
    """An nginx/Caddy/Envoy duration (``1h``, ``3600s``) in seconds."""
    number, unit = re.fullmatch(r"([0-9]+)([smh]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


def stack_import_timeout() -> int:
    """How long the stack's own nginx waits for ``/v1/memory/import`` (its template)."""
    template = (DEPLOY_DIR / "nginx" / "stack.conf.template").read_text()
    block = re.search(r"location = /v1/memory/import \{(.*?)\n        \}", template, re.S)
    assert block is not None
    timeout = re.search(r"proxy_read_timeout (\S+);", block.group(1))
    assert timeout is not None
    return _seconds(timeout.group(1))


def test_installed_gateways_wait_for_an_import_as_long_as_the_stack_nginx(tmp_path) -> None:
    """An import embeds every row before it answers: a gateway that gives up at its default
    answers 504 while the rows still land. Each rendered config waits as the stack's does,
    and only there (other routes keep their gateway's default)."""
    wait = stack_import_timeout()
    assert wait >= 3600
    for gateway in ("nginx", "caddy", "envoy"):
        out = tmp_path / gateway
        code, output = hanzo("gateway", "install", gateway, "--out", str(out), *STACK_UPSTREAMS)
        assert code == 0, output
        if gateway == "nginx":
            conf = (out / "nginx.conf").read_text()
            blocks = dict(re.findall(r"location ([^{]+)\{(.*?)\n        \}", conf, re.S))
            timeouts = {
                m.strip(): _seconds(t)
                for m, body in blocks.items()
                for t in re.findall(r"proxy_read_timeout (\S+);", body)
            }
            assert timeouts == {"= /v1/memory/import": wait, "= /v1/chat/completions": 300}
        elif gateway == "caddy":
            conf = (out / "Caddyfile").read_text()
            matcher = re.search(r"(@hanzo_r[0-9]+) path /v1/memory/import\n", conf)
            assert matcher is not None
            proxy = re.search(
                rf"reverse_proxy {matcher.group(1)} \S+ \{{(.*?)\n\t\t\}}\n", conf, re.S
            )
            assert proxy is not None
            for setting in ("response_header_timeout", "read_timeout"):
                found = re.findall(rf"{setting} (\S+)", proxy.group(1))
                assert [_seconds(v) for v in found] == [wait], setting
            assert len(re.findall(r"_timeout ", conf)) == 2  # the import's proxy only
        else:
            config = yaml.safe_load((out / "envoy.yaml").read_text())["static_resources"]
            hcm = config["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
            found = next(r for r in routes if r["match"].get("path") == "/v1/memory/import")
            assert _seconds(found["route"]["timeout"]) == wait
