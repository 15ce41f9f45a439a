"""Plan: the difference between the tenant file and what Casdoor holds.

A change is ``create``, ``update`` (with the fields that differ: a hand edit in
Casdoor's admin UI shows up here), ``delete`` (only with prune, only managed objects),
``conflict`` (an object we would manage exists but is not ours: apply refuses) or
``keep`` (a managed organization prune would delete but that still holds objects that are
not ours). No secret is ever part of a plan.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from iam_sidecar.casdoor.client import CasdoorClient
from iam_sidecar.tenants.desired import KIND_ORDER, Desired, Kind, is_managed_object

Action = Literal["create", "update", "delete", "conflict", "keep"]
_LIST_FIELDS = {
    "tags",
    "grantTypes",
    "users",
    "roles",
    "groups",
    "resources",
    "actions",
    "signupItems",
}
_SORTED_FIELDS = {"tags", "grantTypes", "users", "roles", "groups"}


class FieldDiff(BaseModel):
    field: str
    current: Any
    desired: Any


class Change(BaseModel):
    action: Action
    kind: Kind
    owner: str
    name: str
    diffs: list[FieldDiff] = []
    note: str | None = None

    @property
    def ident(self) -> str:
        return f"{self.owner}/{self.name}"

    def line(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-", "conflict": "!", "keep": "="}
        text = f"{sign[self.action]} {self.action} {self.kind} {self.ident}"
        if self.note:
            text += f"  ({self.note})"
        for diff in self.diffs:
            text += f"\n    {diff.field}: {diff.current!r} -> {diff.desired!r}"
        return text


class Plan(BaseModel):
    changes: list[Change] = []

    @property
    def writes(self) -> list[Change]:
        return [c for c in self.changes if c.action in ("create", "update", "delete")]

    @property
    def conflicts(self) -> list[Change]:
        return [c for c in self.changes if c.action == "conflict"]

    @property
    def is_noop(self) -> bool:
        return not self.writes and not self.conflicts

    def render(self) -> str:
        if not self.changes:
            return "no changes: Casdoor matches the tenant file"
        counts = {a: sum(c.action == a for c in self.changes) for a in ("create", "update")}
        counts["delete"] = sum(c.action == "delete" for c in self.changes)
        summary = ", ".join(f"{n} to {a}" for a, n in counts.items())
        lines = [c.line() for c in self.changes]
        if self.conflicts:
            summary += f", {len(self.conflicts)} conflict(s): apply refuses until resolved"
        return "\n".join([*lines, f"plan: {summary}"])


class Snapshot(BaseModel):
    """What Casdoor holds, keyed by ``(kind, owner, name)``."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    scanned_orgs: list[str] = []

    def get(self, kind: str, owner: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, owner, name))

    def children(self, organization: str) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for (kind, owner, _), obj in self.objects.items():
            if kind == "organization":
                continue
            if owner == organization or (
                kind == "application" and obj.get("organization") == organization
            ):
                out.append((kind, obj))
        return out


async def snapshot(client: CasdoorClient, organizations: set[str]) -> Snapshot:
    """Read the file's organizations and every managed organization (for prune)."""
    snap = Snapshot()
    orgs = await client.list_objects("organization", "admin")
    for org in orgs:
        snap.objects[("organization", "admin", org["name"])] = org
    existing = {o["name"] for o in orgs}
    managed = {o["name"] for o in orgs if is_managed_object("organization", o)}
    apps = await client.call("GET", "/api/get-applications", params={"owner": "admin"}) or []
    scan = sorted((organizations & existing) | managed)
    for app in apps:  # all of them: application names are global
        snap.objects[("application", "admin", app["name"])] = app
    for org in scan:
        for kind in ("group", "user", "role", "permission"):
            for obj in await client.list_objects(kind, org):  # type: ignore[arg-type]
                snap.objects[(kind, org, obj["name"])] = obj
    snap.scanned_orgs = scan
    return snap


def _norm(field: str, value: Any) -> Any:
    if field in _LIST_FIELDS:
        value = list(value or [])
        return sorted(value) if field in _SORTED_FIELDS else value
    if field == "properties":
        return dict(value or {})
    if isinstance(value, bool):
        return value
    return "" if value is None else value


def _current_value(desired: Desired, field: str, current: dict[str, Any]) -> Any:
    value = _norm(field, current.get(field))
    if desired.kind == "role" and field == "users":
        return sorted(set(value) & set(desired.seed_users))
    if field == "properties":
        return {k: value.get(k) for k in desired.fields["properties"] if k in value}
    return value


def field_diffs(desired: Desired, current: dict[str, Any]) -> list[FieldDiff]:
    diffs = []
    for field, want in desired.fields.items():
        have = _current_value(desired, field, current)
        if have != _norm(field, want):
            diffs.append(FieldDiff(field=field, current=have, desired=_norm(field, want)))
    return diffs


def merged(desired: Desired, current: dict[str, Any]) -> dict[str, Any]:
    """The object to send on update: Casdoor's, with our managed fields set."""
    out = dict(current)
    for field, want in desired.fields.items():
        if desired.kind == "role" and field == "users":
            others = [u for u in current.get("users") or [] if u not in desired.seed_users]
            out["users"] = sorted(set(others) | set(want))
        elif field == "properties":
            out["properties"] = {**(current.get("properties") or {}), **want}
        else:
            out[field] = want
    return out


def compute_plan(desired: list[Desired], snap: Snapshot, prune: bool = False) -> Plan:
    changes: list[Change] = []
    wanted = {(d.kind, d.owner, d.name) for d in desired}
    for d in sorted(desired, key=lambda d: KIND_ORDER.index(d.kind)):
        current = snap.get(d.kind, d.owner, d.name)
        if current is None:
            changes.append(Change(action="create", kind=d.kind, owner=d.owner, name=d.name))
        elif not is_managed_object(d.kind, current):
            changes.append(
                Change(
                    action="conflict",
                    kind=d.kind,
                    owner=d.owner,
                    name=d.name,
                    note="exists in Casdoor but is not managed by hanzo",
                )
            )
        elif diffs := field_diffs(d, current):
            changes.append(
                Change(action="update", kind=d.kind, owner=d.owner, name=d.name, diffs=diffs)
            )
    if prune:
        changes.extend(_prune_changes(wanted, snap))
    return Plan(changes=changes)


def _prune_changes(wanted: set[tuple[str, str, str]], snap: Snapshot) -> list[Change]:
    scanned = set(snap.scanned_orgs)
    doomed: list[Change] = []
    for (kind, owner, name), obj in snap.objects.items():
        if (kind, owner, name) in wanted or not is_managed_object(kind, obj):
            continue
        org = obj.get("organization") if kind == "application" else owner
        if kind != "organization" and org not in scanned:
            continue
        doomed.append(Change(action="delete", kind=kind, owner=owner, name=name))  # type: ignore[arg-type]
    doomed_ids = {(c.kind, c.owner, c.name) for c in doomed}
    out: list[Change] = []
    for change in doomed:
        if change.kind == "organization":
            foreign = [
                f"{kind} {obj['name']}"
                for kind, obj in snap.children(change.name)
                if (kind, obj["owner"], obj["name"]) not in doomed_ids
            ]
            if foreign:
                out.append(
                    change.model_copy(
                        update={
                            "action": "keep",
                            "note": "holds objects hanzo does not manage: "
                            + ", ".join(sorted(foreign)[:5]),
                        }
                    )
                )
                continue
        out.append(change)
    return sorted(out, key=lambda c: -KIND_ORDER.index(c.kind))
