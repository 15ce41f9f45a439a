"""Render one gateway's files into a directory, check them, or apply them through an Admin API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hanzo_stack.gateway_install import admin_api, caddy, checkers, envoy, nginx, traefik
from hanzo_stack.gateway_install.errors import InstallError
from hanzo_stack.gateway_install.layout import Layout


@dataclass
class InstallResult:
    files: list[Path] = field(default_factory=list)
    checked: str = ""
    steps: list[admin_api.Step] = field(default_factory=list)


def render(gateway: str, layout: Layout, out: Path) -> dict[str, str]:
    """``{file name: text}``; ``out`` is where the gateway will read them."""
    if gateway == "nginx":
        return nginx.render(layout, out)
    if gateway == "caddy":
        return caddy.render(layout)
    if gateway == "traefik":
        return traefik.render(layout, out)
    if gateway == "envoy":
        return envoy.render(layout)
    if gateway in ("apisix", "kong"):
        plan = admin_api.apisix_plan(layout) if gateway == "apisix" else admin_api.kong_plan(layout)
        body = [{"method": "PUT", "path": obj.path, "body": obj.body} for obj in plan]
        return {f"{gateway}-admin-plan.json": json.dumps(body, indent=2) + "\n"}
    raise InstallError(f"unknown gateway {gateway!r}")


def install(
    gateway: str,
    layout: Layout,
    out: Path,
    check: bool = True,
    admin: admin_api.AdminApi | None = None,
    dry_run: bool = False,
    config_dir: Path | None = None,
) -> InstallResult:
    """``config_dir``: where the gateway will read the files, when not ``out`` (a
    container's ``/etc/traefik``); the checker runs only where they are read."""
    out = out.resolve()
    result = InstallResult()
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in render(gateway, layout, config_dir or out).items():
            (out / name).write_text(text)
            result.files.append(out / name)
        if check and config_dir is None:
            result.checked = checkers.validate(gateway, out)
    if admin is not None:
        plan = admin_api.apisix_plan(layout) if gateway == "apisix" else admin_api.kong_plan(layout)
        result.steps = admin_api.apply(admin, plan, dry_run)
    return result
