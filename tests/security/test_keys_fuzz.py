"""The keys and usage API, fuzzed from the OpenAPI document it serves, through real nginx.

Schemathesis generates requests from ``/v1/openapi/keys.json`` as the gateway serves it;
each run is bounded (fixed seed, examples per operation, a time budget). Two callers: a
reader's key and a manager's key (``keys:manage``, but neither every scope nor a lasting
expiry nor the plan's limits). Half the cases are steered with hypothesis's data toward
what the schema cannot know (registered scopes, the caller itself as owner, real key ids:
one the caller may touch, one of another tenant), so the run reaches the grant rules.

Every answer: no 5xx; every error is the JSON error body with the request id; and nothing
grants more than the caller has: a key handed out (minted or rotated) carries scopes
within the caller's and its owner's, an expiry no later than the caller's, limits no
looser than the caller's, and the caller's organization; no answer names another
tenant's key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import checks

from hanzo_contract.errors import ErrorBody
from hanzo_contract.openapi import KEYS_OPENAPI_PATH
from hanzo_contract.principal import Limits
from hanzo_contract.scopes import KEYS_MANAGE, KNOWN_SCOPES
from tests.e2e.support import RunningStack
from tests.security.principals import (
    HOME,
    OUTSIDER,
    ROLES,
    STACK_TENANT_FILE,
    Role,
    bearer,
    mint,
    plan_limits,
    sign_in,
)
from tests.support.openapi_fuzz import fuzz

#: the tenant file ``running_stack`` applies for this module (tests/e2e/conftest.py)
assert STACK_TENANT_FILE.exists()
MAX_EXAMPLES = 30  # per operation and caller: 6 operations x 2 callers, ~360 requests
BUDGET_SECONDS = 100.0  # for both callers; later operations get fewer examples if needed
CALLER_LIFETIME = 3600.0
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@dataclass
class Caller:
    """A key the fuzz calls with, and what it may hand out."""

    role: Role
    secret: str
    key_id: str
    scopes: frozenset[str]
    expires_at: float
    limits: Limits
    #: a key of its own organization this caller may see (its own, or any with keys:manage)
    reachable: str
    #: a key of another organization: every by-id answer must be 404
    foreign: str

    @property
    def manages(self) -> bool:
        return KEYS_MANAGE in self.scopes


@dataclass
class Fuzzed:
    stack: RunningStack
    schema: Any
    reader: Caller
    manager: Caller


@pytest.fixture(scope="module")
def fuzzed(running_stack: RunningStack) -> Iterator[Fuzzed]:
    stack = running_stack
    admin, reader = ROLES["admin"], ROLES["reader"]
    admin_jwt = sign_in(stack, admin)
    with httpx.Client(base_url=stack.gateway, timeout=30) as client:
        outsider_jwt = sign_in(stack, OUTSIDER)
        _, foreign = mint(client, outsider_jwt, OUTSIDER, [])
        # the manager: keys:manage, but not every scope, an hour to live, tighter limits
        plan = plan_limits()
        assert plan.requests_per_minute and plan.units_per_day
        tight = Limits(
            requests_per_minute=plan.requests_per_minute // 2,
            units_per_day=plan.units_per_day // 2,
        )
        manager_scopes = sorted(admin.scopes - {"memory:delete"})
        assert KEYS_MANAGE in manager_scopes
        secret, record = mint(
            client,
            admin_jwt,
            admin,
            manager_scopes,
            expires_in_seconds=CALLER_LIFETIME,
            limits=tight.model_dump(exclude_none=True),
        )
        # a lasting, wider key of the same organization that the manager can reach
        _, wider = mint(client, admin_jwt, admin, sorted(admin.scopes))
        manager = Caller(
            admin,
            secret,
            record["key_id"],
            frozenset(manager_scopes),
            record["expires_at"],
            tight,
            wider["key_id"],
            foreign["key_id"],
        )
        secret, record = mint(
            client, admin_jwt, reader, sorted(reader.scopes), expires_in_seconds=CALLER_LIFETIME
        )
        _, own = mint(client, admin_jwt, reader, sorted(reader.scopes))
        reader_caller = Caller(
            reader,
            secret,
            record["key_id"],
            reader.scopes,
            record["expires_at"],
            plan,
            own["key_id"],
            foreign["key_id"],
        )
        served = client.get(KEYS_OPENAPI_PATH)
        assert served.status_code == 200, served.text
    yield Fuzzed(stack, schemathesis.openapi.from_dict(served.json()), reader_caller, manager)


def _prepare(caller: Caller) -> Any:
    def prepare(case: Any, data: st.DataObject) -> None:
        if "key_id" in (case.path_parameters or {}):
            choice = data.draw(st.sampled_from(["generated", "reachable", "foreign"]))
            if choice != "generated":
                case.path_parameters["key_id"] = getattr(caller, choice)
        body = case.body
        if isinstance(body, dict) and "scopes" in body and data.draw(st.booleans()):
            body["scopes"] = data.draw(st.lists(st.sampled_from(sorted(KNOWN_SCOPES)), unique=True))
            body["name"] = f"fuzz-{uuid.uuid4().hex[:10]}"  # generated names collide (409)
            owner = data.draw(st.sampled_from(["self", "generated", "reader", "application"]))
            if owner == "self":
                body.pop("owner", None)
                body.pop("owner_kind", None)
            elif owner != "generated":
                body["owner"], body["owner_kind"] = ROLES[owner].subject, ROLES[owner].kind.value

    return prepare


def _handed_out(caller: Caller, record: dict[str, Any]) -> list[str]:
    """What a key handed to ``caller`` carries beyond what the caller has."""
    problems = []
    owner = next((r for r in ROLES.values() if r.subject == record["owner"]), None)
    if record["organization"] != HOME.name:
        problems.append(f"key of organization {record['organization']!r}")
    if not set(record["scopes"]) <= caller.scopes:
        problems.append(f"scopes {record['scopes']} beyond the caller's {sorted(caller.scopes)}")
    if owner is not None and not set(record["scopes"]) <= owner.scopes:
        problems.append(f"scopes {record['scopes']} beyond its owner's roles")
    if record["expires_at"] is None or record["expires_at"] > caller.expires_at + 1e-3:
        problems.append(
            f"expires at {record['expires_at']}, after the caller ({caller.expires_at})"
        )
    limits = Limits(**(record["limits"] or {}))
    if record["limits"] is None and caller.limits != plan_limits():
        problems.append("no limits of its own: charged at the plan, looser than the caller")
    if looser := limits.looser_than(caller.limits):
        problems.append(f"limits looser than the caller's: {looser}")
    return problems


def _inspect(caller: Caller) -> Any:
    def inspect(case: Any, response: httpx.Response) -> list[str]:
        status = response.status_code
        if status >= 400:
            try:
                error = ErrorBody.model_validate_json(response.content).error
            except ValueError:
                return [f"not the JSON error body: {response.text[:200]!r}"]
            return [] if error.request_id else ["the error body names no request id"]
        if (case.path_parameters or {}).get("key_id") == caller.foreign:
            return [f"answered {status} for another tenant's key"]
        body = response.json()
        records = body.get("keys", [body.get("record", body)])
        problems = [
            f"names organization {r['organization']!r}"
            for r in records
            if isinstance(r, dict) and r.get("organization", HOME.name) != HOME.name
        ]
        if not caller.manages:
            problems += [
                f"shows {r['owner']}'s key to {caller.role.subject}"
                for r in records
                if isinstance(r, dict)
                and r.get("owner", caller.role.subject) != caller.role.subject
            ]
        if "key" in body:  # a secret handed out: minted or rotated
            problems += _handed_out(caller, body["record"])
        if "credential" in body:  # the usage report: the caller's own, at its own limits
            if body["credential"] != f"key:{caller.key_id}":
                problems.append(f"usage of {body['credential']}")
            if looser := Limits(**body["limits"]).looser_than(caller.limits):
                problems.append(f"usage limits looser than the caller's: {looser}")
        return problems

    return inspect


def test_keys_api_fuzz_grants_nothing_beyond_the_caller(fuzzed: Fuzzed) -> None:
    deadline = time.monotonic() + BUDGET_SECONDS
    operations = [
        op
        for op in (r.ok() for r in fuzzed.schema.get_all_operations())
        if not op.path.startswith("/v1/openapi") and op.path != "/v1/docs"
    ]
    # revoking last: the keys the other operations reach are still active for them
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    labels = sorted(op.label for op in operations)
    assert labels == sorted(
        [
            "GET /v1/keys",
            "POST /v1/keys",
            "GET /v1/keys/{key_id}",
            "DELETE /v1/keys/{key_id}",
            "POST /v1/keys/{key_id}/rotate",
            "GET /v1/usage",
        ]
    ), labels
    sent: dict[str, dict[int, int]] = {}
    failures: list[str] = []
    for caller in (fuzzed.reader, fuzzed.manager):
        for operation in operations:
            label = f"{caller.role.name} {operation.label}"
            sent[label], failed = fuzz(
                operation,
                fuzzed.stack.gateway,
                bearer(caller.secret),
                deadline,
                max_examples=MAX_EXAMPLES,
                checks=CHECKS,
                prepare=_prepare(caller),
                inspect=_inspect(caller),
            )
            failures += failed
    print("status codes by caller and operation:", sent)  # with -s, and on failure
    total = sum(sum(counts.values()) for counts in sent.values())
    assert total >= 12 * 5, sent  # the budget left room for a real run
    assert not failures, "\n\n".join(failures[:8])
    # the run reached the grant rules, not only validation: the manager minted, and was
    # refused a grant; the reader was refused minting
    assert sent["admin POST /v1/keys"].get(201), sent
    assert sent["admin POST /v1/keys"].get(403), sent
    assert sent["reader POST /v1/keys"].get(403), sent
    assert sent["reader GET /v1/keys/{key_id}"].get(200), sent
