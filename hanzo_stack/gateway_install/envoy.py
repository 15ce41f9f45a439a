"""Envoy: ``deploy/envoy/envoy.yaml`` (its ext_authz filter as committed) with the listener,
the routes and the clusters of the route table.

The ext_authz filter runs before the router for every route, so no route reaches a
cluster without the plugin's decision; a path no route names goes to the default cluster
or gets a JSON 404 after the plugin saw it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from hanzo_stack.gateway_install.layout import Layout, ProxyRoute
from hanzo_stack.gateway_install.templates import DEPLOY_DIR

_HEADER = (
    "# Rendered by `hanzo gateway install envoy` from deploy/envoy/envoy.yaml (the ext_authz\n"
    "# filter) and a route table (the routes and clusters).\n"
)


def _cluster_name(upstream: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", upstream)


def _socket(addr: str) -> dict[str, Any]:
    host, _, port = addr.rpartition(":")
    return {"address": host.strip("[]"), "port_value": int(port)}


def _cluster(name: str, addr: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": _socket(addr)}}}]}
            ],
        },
    }


def _match(route: ProxyRoute) -> dict[str, Any]:
    if route.kind == "exact":
        return {"path": route.path}
    return {"safe_regex": {"regex": route.regex.lstrip("^").rstrip("$")}}


def _route(route: ProxyRoute) -> dict[str, Any]:
    action: dict[str, Any] = {"cluster": _cluster_name(route.upstream)}
    if route.stream:
        action["timeout"] = "0s"  # server-sent events: no whole-response deadline
    elif route.read_timeout_seconds is not None:
        action["timeout"] = f"{route.read_timeout_seconds}s"  # not Envoy's 15 s default
    return {"match": _match(route), "route": action}


def render(layout: Layout) -> dict[str, str]:
    config = copy.deepcopy(yaml.safe_load((DEPLOY_DIR / "envoy" / "envoy.yaml").read_text()))
    resources = config["static_resources"]
    listener = resources["listeners"][0]
    listener["address"]["socket_address"] = _socket(layout.settings.listen)
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = [_route(route) for route in layout.routes]
    if layout.fallback:
        routes.append({"match": {"prefix": "/"}, "route": {"cluster": "default"}})
    else:
        body = '{"error":{"code":"not_found","message":"no such route"}}'
        routes.append(
            {
                "match": {"prefix": "/"},
                "direct_response": {"status": 404, "body": {"inline_string": body}},
                "response_headers_to_add": [
                    {"header": {"key": "content-type", "value": "application/json"}}
                ],
            }
        )
    hcm["route_config"]["virtual_hosts"][0]["routes"] = routes
    authz = hcm["http_filters"][0]["typed_config"]["http_service"]["server_uri"]
    authz["uri"] = f"http://{layout.settings.auth}"
    clusters = [_cluster("hanzo_auth", layout.settings.auth)]
    clusters += [_cluster(_cluster_name(name), layout.addr(name)) for name in layout.used_upstreams]
    resources["clusters"] = clusters
    return {"envoy.yaml": _HEADER + yaml.safe_dump(config, sort_keys=False, width=100)}
