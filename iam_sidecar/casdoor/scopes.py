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


def scopes_of_user_object(user: dict[str, Any]) -> tuple[tuple[str, ...], frozenset[str]]:
    """``(role names, scopes)`` from Casdoor's ``get-user`` answer.

    Casdoor extends the user with its ``roles`` and ``permissions`` (those naming one of
    its roles or the user), whatever organization owns them: its lookup has no owner
    filter, so another tenant's admin could name our user in a role of theirs. Only objects
    owned by the user's own organization grant. Of those we keep managed, enabled, allowing
    permissions, and only those reached through an enabled role (or granted directly).
    """
    organization = user.get("owner", "")
    enabled = sorted(
        r["name"]
        for r in user.get("roles") or []
        if r.get("owner") == organization and r.get("isEnabled", True) is not False
    )
    role_ids = {f"{organization}/{name}" for name in enabled}
    scopes: set[str] = set()
    for perm in user.get("permissions") or []:
        if perm.get("owner") != organization:
            continue
        scope = scope_of_permission(perm)
        if scope is None or perm.get("isEnabled", True) is False:
            continue
        if str(perm.get("effect") or "Allow").lower() != "allow":
            continue
        via = set(perm.get("roles") or [])
        if not via or via & role_ids:
            scopes.add(scope)
    return tuple(enabled), frozenset(scopes)
