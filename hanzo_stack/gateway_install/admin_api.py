"""APISIX and Kong through their Admin APIs: a plan of PUTs by id, applied idempotently.

Each object has a stable id derived from the route table, so applying twice changes
nothing: an object whose stored value already holds every field we would send is left
alone, and ``--dry-run`` prints the plan without writing. The forward-auth plugin's
settings come from the committed ``deploy/apisix/apisix.yaml`` and ``deploy/kong/kong.yml``
(the one place they are reviewed); only the auth service's address is filled in.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import yaml

from hanzo_stack.gateway_install.errors import InstallError
from hanzo_stack.gateway_install.layout import Layout, ProxyRoute
from hanzo_stack.gateway_install.templates import DEPLOY_DIR

_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
#: plugin ids are UUIDs in Kong: derived from the service name, stable across runs
_KONG_NAMESPACE = uuid.UUID("6f1f5a52-3c0e-4f2e-9a4b-8d1f3a2b7c10")


@dataclass(frozen=True, slots=True)
class AdminObject:
    """One PUT of the plan."""

    path: str  # under the Admin API's base URL
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Step:
    action: Literal["create", "update", "unchanged"]
    path: str


# ---- APISIX -------------------------------------------------------------------------


def _apisix_uri(route: ProxyRoute) -> str:
    """APISIX's radixtree syntax: ``:name`` for one segment, a trailing ``*`` for the rest."""
    return _SEGMENT.sub(lambda m: "*" if m.group(2) else f":{m.group(1)}", route.path)


def _apisix_forward_auth(auth: str) -> dict[str, Any]:
    committed = yaml.safe_load((DEPLOY_DIR / "apisix" / "apisix.yaml").read_text())
    plugins = dict(committed["plugin_configs"][0]["plugins"])
    plugins["forward-auth"] = {**plugins["forward-auth"], "uri": f"http://{auth}/auth"}
    return plugins


def apisix_plan(layout: Layout) -> list[AdminObject]:
    settings = layout.settings
    plugins = _apisix_forward_auth(settings.auth)
    plugins["client-control"] = {"max_body_size": settings.body_limit_mb * 1024 * 1024}
    plan = [AdminObject("/apisix/admin/plugin_configs/hanzo-auth", {"plugins": plugins})]
    for name in layout.used_upstreams:
        plan.append(
            AdminObject(
                f"/apisix/admin/upstreams/{name}",
                {"type": "roundrobin", "nodes": {layout.addr(name): 1}},
            )
        )
    count = len(layout.routes)
    for index, route in enumerate(layout.routes):
        plan.append(
            AdminObject(
                f"/apisix/admin/routes/{route.ident}",
                {
                    "uri": _apisix_uri(route),
                    "methods": sorted(set(route.methods)),
                    "upstream_id": route.upstream,
                    "plugin_config_id": "hanzo-auth",
                    "priority": count - index,
                },
            )
        )
    # paths no route names still meet the plugin (which denies them)
    fallback: dict[str, Any] = {"uri": "/*", "plugin_config_id": "hanzo-auth", "priority": -1}
    if layout.fallback:
        fallback["upstream_id"] = "default"
        plan.append(AdminObject("/apisix/admin/routes/hanzo-any-other-path", fallback))
    return plan


# ---- Kong ---------------------------------------------------------------------------


def _kong_path(route: ProxyRoute) -> str:
    """Kong 3 regex paths start with ``~``; anchored so a route is exactly its pattern."""
    return "~" + route.regex


def _kong_plugin_config() -> dict[str, Any]:
    committed = yaml.safe_load((DEPLOY_DIR / "kong" / "kong.yml").read_text())
    plugin = committed["services"][0]["plugins"][0]
    return {"name": plugin["name"], "config": dict(plugin.get("config") or {})}


def kong_plan(layout: Layout) -> list[AdminObject]:
    settings = layout.settings
    plugin = _kong_plugin_config()
    plan: list[AdminObject] = []
    for name in layout.used_upstreams:
        service = name
        plan.append(AdminObject(f"/services/{service}", {"url": f"http://{layout.addr(name)}"}))
        auth_id = uuid.uuid5(_KONG_NAMESPACE, f"{service}/hanzo-auth")
        plan.append(AdminObject(f"/services/{service}/plugins/{auth_id}", plugin))
        size_id = uuid.uuid5(_KONG_NAMESPACE, f"{service}/request-size-limiting")
        plan.append(
            AdminObject(
                f"/services/{service}/plugins/{size_id}",
                {
                    "name": "request-size-limiting",
                    "config": {
                        "allowed_payload_size": settings.body_limit_mb,
                        "size_unit": "megabytes",
                    },
                },
            )
        )
    for route in layout.routes:
        plan.append(
            AdminObject(
                f"/services/{route.upstream}/routes/{route.ident}",
                {
                    "paths": [_kong_path(route)],
                    "methods": sorted(set(route.methods)),
                    "strip_path": False,
                    "preserve_host": True,
                },
            )
        )
    if layout.fallback:
        plan.append(
            AdminObject(
                "/services/default/routes/hanzo-any-other-path",
                {"paths": ["/"], "strip_path": False, "preserve_host": True},
            )
        )
    return plan


# ---- applying a plan ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdminApi:
    """Which product, where, and the header its key goes in."""

    kind: Literal["apisix", "kong"]
    url: str
    key: str | None

    @property
    def headers(self) -> dict[str, str]:
        if not self.key:
            return {}
        return {"X-API-KEY": self.key} if self.kind == "apisix" else {"Kong-Admin-Token": self.key}

    def stored(self, response: httpx.Response) -> dict[str, Any]:
        body = response.json()
        return body.get("value", {}) if self.kind == "apisix" else body


def _holds(current: Any, desired: Any) -> bool:
    """Every field we send is already there with the same value (the server adds its own
    defaults and timestamps, which do not count as a change)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            k in current and _holds(current[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list) and isinstance(current, list):
        return len(desired) == len(current) and all(map(_holds, current, desired))
    return current == desired


def _refuse(response: httpx.Response, what: str) -> InstallError:
    detail = response.text[:300]
    return InstallError(f"{what}: the Admin API answered {response.status_code}: {detail}")


def apply(
    api: AdminApi, plan: list[AdminObject], dry_run: bool, client: httpx.Client | None = None
) -> list[Step]:
    """GET each object, PUT the ones that differ (none with ``dry_run``)."""
    own = client is None
    http = client or httpx.Client(timeout=10)
    steps: list[Step] = []
    try:
        for obj in plan:
            url = api.url.rstrip("/") + obj.path
            try:
                found = http.get(url, headers=api.headers)
            except httpx.HTTPError as exc:
                raise InstallError(f"cannot reach the Admin API at {api.url}: {exc}") from None
            if found.status_code == 200 and _holds(api.stored(found), obj.body):
                steps.append(Step("unchanged", obj.path))
                continue
            if found.status_code not in (200, 404):
                raise _refuse(found, f"GET {obj.path}")
            steps.append(Step("create" if found.status_code == 404 else "update", obj.path))
            if dry_run:
                continue
            put = http.put(url, json=obj.body, headers=api.headers)
            if put.status_code not in (200, 201):
                raise _refuse(put, f"PUT {obj.path}")
    finally:
        if own:
            http.close()
    return steps
