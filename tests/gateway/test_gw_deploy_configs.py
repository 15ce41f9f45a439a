"""The shipped configs for gateways that cannot run here stay consistent with the service:
right endpoint, every identity header copied, denial headers passed to the client."""

from __future__ import annotations

from pathlib import Path

import yaml

from hanzo_contract.headers import IDENTITY_HEADERS
from hanzo_stack.servers import DEPLOY_DIR

IDENTITY = {h.lower() for h in IDENTITY_HEADERS}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_apisix_forward_auth() -> None:
    conf = _load(DEPLOY_DIR / "apisix" / "apisix.yaml")
    fa = conf["plugin_configs"][0]["plugins"]["forward-auth"]
    assert fa["uri"].endswith("/auth")
    assert {h.lower() for h in fa["upstream_headers"]} == IDENTITY
    assert {"retry-after", "ratelimit-limit"} <= {h.lower() for h in fa["client_headers"]}
    assert fa["allow_degradation"] is False
    assert (DEPLOY_DIR / "apisix" / "apisix.yaml").read_text().rstrip().endswith("#END")
    # APISIX passes header names with "_" by default (X_Org_Id -> X-Org-Id upstream)
    nginx = _load(DEPLOY_DIR / "apisix" / "config.yaml")["nginx_config"]["http"]
    assert nginx["underscores_in_headers"] == "off"


def test_envoy_ext_authz() -> None:
    conf = _load(DEPLOY_DIR / "envoy" / "envoy.yaml")
    hcm = conf["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    authz = hcm["typed_config"]["http_filters"][0]["typed_config"]
    assert authz["failure_mode_allow"] is False
    http = authz["http_service"]
    assert http["path_prefix"] == "/envoy"
    upstream = http["authorization_response"]["allowed_upstream_headers"]["patterns"]
    assert {p["exact"] for p in upstream} == IDENTITY
    # Envoy passes header names with "_" by default (X_Org_Id -> X-Org-Id upstream)
    options = hcm["typed_config"]["common_http_protocol_options"]
    assert options["headers_with_underscores_action"] in ("DROP_HEADER", "REJECT_REQUEST")


def test_traefik_forward_auth() -> None:
    conf = _load(DEPLOY_DIR / "traefik" / "dynamic.yml")
    fa = conf["http"]["middlewares"]["hanzo-auth"]["forwardAuth"]
    assert fa["address"].endswith("/auth") and fa["trustForwardHeader"] is False
    assert {h.lower() for h in fa["authResponseHeaders"]} == IDENTITY


def test_kong_declarative_and_conf() -> None:
    conf = _load(DEPLOY_DIR / "kong" / "kong.yml")
    assert conf["services"][0]["plugins"][0]["name"] == "hanzo-auth"
    lines = (DEPLOY_DIR / "kong" / "kong.conf").read_text()
    assert "-m gateway_plugins.kong" in lines and "plugins = bundled,hanzo-auth" in lines


def test_nginx_sets_every_identity_header() -> None:
    text = (DEPLOY_DIR / "nginx" / "hanzo-protect.conf").read_text().lower()
    for header in IDENTITY:
        assert f"proxy_set_header {header} " in text, header
