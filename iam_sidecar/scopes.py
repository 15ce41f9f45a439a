"""Scope mapping: a scope ``area:action`` is the Casdoor permission ``area-action``.

Managed objects carry :data:`MANAGED_MARKER` at the start of their ``description`` (a
field Casdoor keeps verbatim on every object kind we write), so prune and scope
computation never touch objects someone else created.
"""

from __future__ import annotations

from typing import Any

MANAGED_MARKER = "[hanzo-managed]"


def permission_name(scope: str) -> str:
    area, action = scope.split(":", 1)
    return f"{area}-{action}"


def is_managed(obj: dict[str, Any]) -> bool:
    return str(obj.get("description") or "").startswith(MANAGED_MARKER)


def managed_description(text: str = "") -> str:
    return f"{MANAGED_MARKER} {text}".rstrip()


def scope_of_permission(permission: dict[str, Any]) -> str | None:
    """The scope a managed permission grants, or ``None`` for anything else."""
    if not is_managed(permission):
        return None
    resources, actions = permission.get("resources") or [], permission.get("actions") or []
    if len(resources) != 1 or len(actions) != 1:
        return None
    return f"{resources[0]}:{actions[0]}"


def user_scopes(
    organization: str,
    user: str,
    roles: list[dict[str, Any]],
    permissions: list[dict[str, Any]],
) -> tuple[tuple[str, ...], frozenset[str]]:
    """``(role names, scopes)`` of ``org/user``: union over its roles' managed permissions.

    A permission counts if it is enabled, allows, and names one of the user's roles (or the
    user directly). Disabled roles grant nothing.
    """
    uid = f"{organization}/{user}"
    mine = sorted(
        r["name"]
        for r in roles
        if uid in (r.get("users") or []) and r.get("isEnabled", True) is not False
    )
    role_ids = {f"{organization}/{name}" for name in mine}
    scopes: set[str] = set()
    for perm in permissions:
        scope = scope_of_permission(perm)
        if scope is None or perm.get("isEnabled", True) is False:
            continue
        if str(perm.get("effect") or "Allow").lower() != "allow":
            continue
        if role_ids & set(perm.get("roles") or []) or uid in (perm.get("users") or []):
            scopes.add(scope)
    return tuple(mine), frozenset(scopes)
