"""The authorization matrix: every route of the stack's route table x credential kind x role
x tenant, sent through real nginx on the running stack.

The cells come from the route table as the gateway's own schema reads it
(``RouteTableSpec``) and the principals from the tenant file as the sidecar loads it
(``tests/security/principals.py``). Each cell's expected answer is computed from the
route's declared permission and the principal's granted scopes (data, not the gateway's
check, which is what is under test) and, where the upstream decides the rest, from the
upstream's own rules (``iam_sidecar.keys.grants`` for minting and rotating keys, the memory
service's erasure rule). Nothing about who may do what is written here twice, so a change
of the route table or of a role's scopes changes the expectations with it.

Cells: every route x {no credential, malformed, unknown key, expired key, revoked key}
(roles cycled for the last two: their answer never depends on the role), and every route x
{valid key: reader, writer, admin, application; Casdoor JWT: reader, writer, admin}, by-id
routes once with the caller's own resource and once with another tenant's. A new route in
the table without a request below fails ``test_every_route_has_a_request``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway_plugins.routes import AUTHENTICATED, RouteSpec, RouteTableSpec
from hanzo_contract.apikey import generate_key
from hanzo_contract.errors import ErrorBody
from hanzo_contract.mcp_tools import MCP_PATH
from hanzo_contract.principal import Principal
from hanzo_stack.gateway_install.layout import is_grpc_method
from iam_sidecar.errors import (
    ExpiredKey,
    GrantRefused,
    InvalidKey,
    KeyNotFound,
    RevokedKey,
)
from iam_sidecar.keys.grants import bound_new_key, check_rotation
from iam_sidecar.keys.models import KeyRecord, NewKey
from tests.e2e.support import RunningStack
from tests.security.principals import (
    HOME,
    OUTSIDER,
    ROLES,
    STACK_TENANT_FILE,
    USER_ROLES,
    Role,
    bearer,
    mint,
    plan_limits,
    sign_in,
)

#: the tenant file ``running_stack`` applies for this module (tests/e2e/conftest.py)
assert STACK_TENANT_FILE.exists()
REPO = Path(__file__).resolve().parents[2]
ROUTES_FILE = REPO / "deploy" / "stack" / "routes.yaml"
NO_ROLE_KINDS = ("none", "malformed", "unknown_key")
CYCLED_KINDS = ("expired_key", "revoked_key")


def _spoken_elsewhere(path: str) -> bool:
    """gRPC methods (nginx's HTTP/2 listener) and MCP (a JSON-RPC session) are not plain
    HTTP requests: tests/grpc and tests/mcp check their refusals in their own protocols,
    per method and per tool."""
    return is_grpc_method(path) or path == MCP_PATH


def _route_methods() -> dict[tuple[str, str], RouteSpec]:
    spec = RouteTableSpec.model_validate(yaml.safe_load(ROUTES_FILE.read_text()))
    return {
        (method, route.path): route
        for route in spec.routes
        for method in route.methods
        if not _spoken_elsewhere(route.path)
    }


#: (method, path pattern) -> the route as declared
ROUTE_METHODS = _route_methods()


def permitted(route: RouteSpec, scopes: frozenset[str]) -> bool:
    """The route table's contract: ``authenticated`` needs no scope, any other permission
    needs that scope among the credential's."""
    return route.permission == AUTHENTICATED or route.permission in scopes


def _by_id(path: str) -> bool:
    return "{id}" in path


@dataclass(frozen=True)
class Cell:
    method: str
    path: str
    credential: str
    role: str
    tenant: str

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}|{self.credential}|{self.role}|{self.tenant}"


def _cells() -> list[Cell]:
    cells: list[Cell] = []
    role_names = list(ROLES)
    for index, (method, path) in enumerate(ROUTE_METHODS):
        cells += [Cell(method, path, kind, "-", "own") for kind in NO_ROLE_KINDS]
        for offset, kind in enumerate(CYCLED_KINDS):
            role = role_names[(index + offset) % len(role_names)]
            cells.append(Cell(method, path, kind, role, "own"))
        tenants = ("own", "other") if _by_id(path) else ("own",)
        for tenant in tenants:
            cells += [Cell(method, path, "key", role, tenant) for role in ROLES]
            cells += [Cell(method, path, "jwt", role, tenant) for role in USER_ROLES]
    return cells


CELLS = _cells()


@dataclass
class World:
    """The running stack and the credentials and resources the cells use."""

    stack: RunningStack
    client: httpx.Client
    jwts: dict[str, str]
    keys: dict[str, tuple[str, KeyRecord]]  # role -> (secret, stored record)
    dead_keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, role)
    other_memory: str = ""
    other_key: str = ""
    other_jwt: str = ""
    admin_memory: str = ""

    def bearer(self, secret: str) -> dict[str, str]:
        return bearer(secret)

    def mint(self, by: str, owner: Role, scopes: list[str], **extra: Any) -> tuple[str, KeyRecord]:
        secret, record = mint(self.client, by, owner, scopes, **extra)
        return secret, KeyRecord.model_validate(record)

    def store(self, secret: str) -> str:
        reply = self.client.post(
            "/v1/memory/store",
            headers=self.bearer(secret),
            json={"content": f"matrix memory {uuid.uuid4().hex}"},
        )
        assert reply.status_code in (200, 201), reply.text
        return reply.json()["ids"][0]


@pytest.fixture(scope="module")
def world(running_stack: RunningStack) -> Iterator[World]:
    stack = running_stack
    jwts = {name: sign_in(stack, ROLES[name]) for name in USER_ROLES}
    admin = ROLES["admin"]
    with httpx.Client(base_url=stack.gateway, timeout=30) as client:
        world = World(stack, client, jwts, {})
        for name, role in ROLES.items():
            world.keys[name] = world.mint(jwts["admin"], role, sorted(role.scopes))
        for name, role in ROLES.items():
            expiring, _ = world.mint(jwts["admin"], role, sorted(role.scopes), expires_in_seconds=1)
            world.dead_keys[("expired_key", name)] = expiring
            revoked, record = world.mint(jwts["admin"], role, sorted(role.scopes))
            gone = client.delete(f"/v1/keys/{record.key_id}", headers=world.bearer(jwts["admin"]))
            assert gone.status_code == 200, gone.text
            world.dead_keys[("revoked_key", name)] = revoked
        # another tenant's memory and key: every by-id cell must find neither
        other_jwt = sign_in(stack, OUTSIDER)
        world.other_memory = world.store(other_jwt)
        shown = client.get("/v1/keys", headers=world.bearer(other_jwt))
        assert shown.status_code == 200
        minted = client.post(
            "/v1/keys", headers=world.bearer(other_jwt), json={"name": "globex", "scopes": []}
        )
        assert minted.status_code == 201, minted.text
        world.other_key = minted.json()["record"]["key_id"]
        world.admin_memory = world.store(world.keys["admin"][0])
        time.sleep(1.2)  # the 1 s keys are past their expiry; none was ever used
        assert admin.scopes  # the admin mints every role's key: it must hold every scope
        world.other_jwt = other_jwt
        yield world


# -- requests: one per route of the table ----------------------------------------------

REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/memory/capabilities"): {},
    ("POST", "/v1/memory/store"): {"json": {"content": "matrix store"}},
    ("GET", "/v1/memory/retrieve"): {"params": {"limit": 1}},
    ("POST", "/v1/memory/search"): {"json": {"query": "matrix", "mode": "keyword"}},
    ("GET", "/v1/memory/export"): {},
    ("POST", "/v1/memory/import"): {"content": json.dumps({"content": "matrix import"}) + "\n"},
    ("POST", "/v1/memory/erase"): {"json": {"user": "{user}"}},
    ("PATCH", "/v1/memory/{id}"): {"json": {"tags": ["patched"]}},
    ("DELETE", "/v1/memory/{id}"): {},
    ("GET", "/v1/keys"): {},
    ("POST", "/v1/keys"): {"json": {"name": "{name}", "scopes": "{scopes}"}},
    ("GET", "/v1/keys/{id}"): {},
    ("DELETE", "/v1/keys/{id}"): {},
    ("POST", "/v1/keys/{id}/rotate"): {"json": {"grace_seconds": 0}},
    ("GET", "/v1/usage"): {},
    ("POST", "/v1/chat/completions"): {"json": {"model": "m", "messages": []}},
    ("POST", "/v1/embeddings"): {"json": {"model": "m", "input": "matrix"}},
    ("GET", "/v1/models"): {},
    ("GET", "/v1/openapi/memory.json"): {},
    ("GET", "/v1/openapi/keys.json"): {},
    ("GET", "/v1/docs"): {},
}


def test_every_route_has_a_request() -> None:
    assert sorted(REQUESTS) == sorted(ROUTE_METHODS)


# -- expectations, from the product's own rules ----------------------------------------


@dataclass(frozen=True)
class Expected:
    status: int  # 200 stands for any 2xx
    code: str | None = None  # the error body's code, for a refusal


OK = Expected(200)


def _principal(cell: Cell, key_id: str | None) -> Principal:
    role = ROLES[cell.role]
    return Principal(
        organization=HOME.name,
        subject=role.subject,
        kind=role.kind,
        scopes=role.scopes,
        key_id=key_id,
    )


def _upstream_rules(
    cell: Cell,
    principal: Principal,
    body: dict[str, Any] | None,
    caller_key: KeyRecord | None,
    target: KeyRecord | None,
) -> Expected:
    """What the upstream itself refuses once the gateway let the call through."""
    route = (cell.method, cell.path)
    if cell.tenant == "other":
        code = KeyNotFound.code if cell.path.startswith("/v1/keys") else "not_found"
        return Expected(404, code)
    try:
        if route == ("POST", "/v1/keys"):
            assert body is not None
            new = NewKey(
                organization=principal.organization,
                owner=principal.subject,
                owner_kind=principal.kind,
                name=body["name"],
                scopes=body["scopes"],
            )
            bound_new_key(
                new, plan=plan_limits(), minter=principal, parent=caller_key, now=time.time()
            )
            return Expected(201)
        if route == ("POST", "/v1/keys/{id}/rotate"):
            assert target is not None
            check_rotation(
                principal, target, plan=plan_limits(), parent=caller_key, now=time.time()
            )
    except GrantRefused as refused:
        return Expected(refused.status, refused.code)
    return OK


def expected(
    cell: Cell,
    route: RouteSpec,
    body: dict[str, Any] | None,
    caller_key: KeyRecord | None,
    target: KeyRecord | None,
) -> Expected:
    if route.permission is None:
        return OK
    if cell.credential == "none":
        return Expected(401, "missing_credential")
    if cell.credential == "malformed":
        return Expected(401, "invalid_token")
    if cell.credential == "unknown_key":
        return Expected(401, InvalidKey.code)
    if cell.credential == "expired_key":
        return Expected(401, ExpiredKey.code)
    if cell.credential == "revoked_key":
        return Expected(401, RevokedKey.code)
    principal = _principal(cell, caller_key.key_id if caller_key else None)
    if not permitted(route, principal.scopes):
        return Expected(403, "forbidden")
    return _upstream_rules(cell, principal, body, caller_key, target)


# -- the matrix -------------------------------------------------------------------------


def _credential(world: World, cell: Cell) -> tuple[str | None, KeyRecord | None]:
    """The bearer secret the cell sends, and the key's record when it is a live key."""
    match cell.credential:
        case "none":
            return None, None
        case "malformed":
            return "not.a-token", None
        case "unknown_key":
            return generate_key()[0], None
        case "expired_key" | "revoked_key":
            return world.dead_keys[(cell.credential, cell.role)], None
        case "key":
            return world.keys[cell.role]
        case _:
            return world.jwts[cell.role], None


def _resource(
    world: World, cell: Cell, secret: str | None, route: RouteSpec
) -> tuple[str, KeyRecord | None]:
    """The id a by-id cell names (and the key's record for a key): another tenant's, or a
    fresh one of the caller's own (made by the caller when it may, else by the admin: then
    the gateway refuses first)."""
    memory = cell.path.startswith("/v1/memory/")
    if cell.tenant == "other":
        return (world.other_memory, None) if memory else (world.other_key, None)
    allowed = cell.credential in ("key", "jwt") and permitted(route, ROLES[cell.role].scopes)
    if not allowed:  # refused before the id matters: the admin's, never reached
        admin_key = world.keys["admin"][1]
        return (world.admin_memory, None) if memory else (admin_key.key_id, admin_key)
    if memory:
        assert secret is not None
        return world.store(secret), None
    record = world.mint(world.jwts["admin"], ROLES[cell.role], [])[1]
    return record.key_id, record


def _fill(template: Any, values: dict[str, Any]) -> Any:
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, str) and template in values:
        return values[template]
    return template


@pytest.mark.parametrize("cell", CELLS, ids=[cell.id for cell in CELLS])
def test_authz_cell(world: World, cell: Cell) -> None:
    route = ROUTE_METHODS[(cell.method, cell.path)]
    secret, caller_key = _credential(world, cell)
    path, target = cell.path, None
    if _by_id(path):
        resource, target = _resource(world, cell, secret, route)
        path = path.replace("{id}", resource)
    role = ROLES.get(cell.role)
    values = {
        "{user}": role.subject.split("/", 1)[1] if role else "nobody",
        "{name}": f"matrix-{uuid.uuid4().hex[:10]}",
        "{scopes}": sorted(role.scopes) if role else [],
    }
    request = _fill(REQUESTS[(cell.method, cell.path)], values)
    want = expected(cell, route, request.get("json"), caller_key, target)
    headers = world.bearer(secret) if secret else {}
    if "content" in request:
        headers["Content-Type"] = "application/x-ndjson"
    reply = world.client.request(cell.method, path, headers=headers, **request)
    where = (
        f"route {cell.method} {cell.path}, credential {cell.credential}, "
        f"role {cell.role}, tenant {cell.tenant}"
    )
    got = reply.status_code
    if want.status < 300:
        assert 200 <= got < 300, f"{where}: want 2xx, got {got} {reply.text[:300]}"
        assert want.status in (OK.status, got), f"{where}: want {want.status}, got {got}"
        return
    assert got == want.status, f"{where}: want {want.status}, got {got} {reply.text[:300]}"
    body = ErrorBody.model_validate_json(reply.content)
    assert body.error.code == want.code, f"{where}: want {want.code}, got {body.error.code}"
    assert body.error.request_id, f"{where}: the error body names no request id"


def test_other_tenant_resources_untouched(world: World) -> None:
    """Every cell that named the other tenant's memory or key left both as they were."""
    back = world.client.get(
        "/v1/memory/retrieve",
        params={"id": world.other_memory},
        headers=world.bearer(world.other_jwt),
    )
    assert back.status_code == 200, back.text
    key = world.client.get(f"/v1/keys/{world.other_key}", headers=world.bearer(world.other_jwt))
    assert key.status_code == 200 and key.json()["state"] == "active", key.text
