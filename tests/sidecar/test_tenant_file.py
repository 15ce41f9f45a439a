"""Tenant file validation: errors name the line and the field; policy from plans."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hanzo_contract.principal import Limits
from hanzo_contract.signin import DEVICE_CODE_GRANT, DEVICE_LOGIN_OFF_REASON, org_cli_application
from iam_sidecar.errors import TenantFileError
from iam_sidecar.tenants.desired import desired_objects, policy_of
from iam_sidecar.tenants.loader import load_tenant_file, parse_tenant_text

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "tenants" / "example.yaml"


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(TenantFileError) as info:
        parse_tenant_text(text, "t.yaml")
    assert "t.yaml:" in info.value.message
    return [(p["line"], p["field"], p["error"]) for p in info.value.problems]


def test_example_file_is_valid_and_yields_policy() -> None:
    spec = load_tenant_file(EXAMPLE)
    assert [o.name for o in spec.organizations] == ["acme", "globex"]
    policy = policy_of(spec)
    assert policy.limits_for("acme") == Limits(
        requests_per_minute=600, units_per_day=100000, units_per_month=2000000
    )
    assert policy.limits_for("nobody") == Limits()
    assert policy.scopes_for_application("acme", "acme-indexer") == {"memory:write"}
    kinds = [d.kind for d in desired_objects(spec)]
    assert kinds.count("permission") == 7  # 5 distinct scopes in acme, 2 in globex
    # a login app and a CLI app per tenant; the indexer is our principal, never a Casdoor
    # application (no secret)
    assert kinds.count("application") == 4


def test_each_tenant_gets_its_own_device_sign_in_application() -> None:
    """The device page of a tenant's CLI app signs in to that tenant (hanzo_contract.signin);
    its tokens live an hour (Casdoor's default of 0 would expire them as they are issued).
    Device sign-in is off unless the file says ``device_login: true``: then the app has the
    device grant and answers to its own name as client id."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["organizations"][0]["device_login"] = True  # acme on, globex by default
    spec = parse_tenant_text(yaml.safe_dump(data))
    apps = {
        d.name: d.fields
        for d in desired_objects(spec, "http://127.0.0.1:1/casdoor-static")
        if d.kind == "application"
    }
    for org in ("acme", "globex"):
        cli = apps[org_cli_application(org)]
        assert cli["organization"] == org
        assert cli["expireInHours"] >= 1
        assert cli["logo"] == "http://127.0.0.1:1/casdoor-static/img/hanzo.svg"
    acme, globex = apps[org_cli_application("acme")], apps[org_cli_application("globex")]
    assert acme["clientId"] == "acme_cli" and DEVICE_CODE_GRANT in acme["grantTypes"]
    assert globex["clientId"] == "globex_cli_off" and globex["grantTypes"] == ["refresh_token"]
    assert "logo" not in next(d for d in desired_objects(load_tenant_file(EXAMPLE))).fields


def test_device_login_is_off_in_the_example_and_must_be_a_yaml_bool() -> None:
    """The shipped example turns no tenant's device sign-in on (deployments copy it); a
    quoted value is refused, and the error says why the setting is off by default."""
    assert not any(o.device_login for o in load_tenant_file(EXAMPLE).organizations)
    text = 'version: 1\norganizations:\n  - name: acme\n    device_login: "yes"\n'
    ((line, field, error),) = _problems(text)
    assert (line, field) == (4, "organizations[0].device_login")
    assert DEVICE_LOGIN_OFF_REASON in error and "true or false" in error


def test_organization_names_that_casdoor_reads_as_shared_app_suffixes_are_refused() -> None:
    problems = _problems("version: 1\norganizations:\n  - name: a-org-b\n")
    assert any("'-org-'" in error for _, _, error in problems)


def test_schema_errors_name_line_and_field() -> None:
    text = """version: 1
organizations:
  - name: acme
    roles:
      - name: reader
        scopes: [memory:read, memory]
    users:
      - name: alice
        colour: blue
"""
    problems = _problems(text)
    assert [(line, field) for line, field, _ in problems] == [
        (6, "organizations[0].roles[0].scopes[1]"),
        (9, "organizations[0].users[0].colour"),
    ]
    assert "pattern" in problems[0][2]
    assert problems[1][2] == "Extra inputs are not permitted"


def test_duplicates_and_unknown_references_are_reported() -> None:
    text = """version: 1
plans:
  free: {requests_per_minute: 10}
organizations:
  - name: acme
    plan: gold
    roles:
      - name: reader
      - name: reader
    applications:
      - name: acme-login
    users:
      - name: bob
        roles: [writer]
  - name: acme
"""
    problems = _problems(text)
    assert (6, "organizations[0].plan", "unknown plan 'gold' (not under plans:)") in problems
    assert (
        9,
        "organizations[0].roles[1].name",
        "duplicate role 'reader' in organization 'acme'",
    ) in problems
    assert (
        14,
        "organizations[0].users[0].roles[0]",
        "unknown role 'writer' in organization 'acme'",
    ) in problems
    assert any(p[0] == 15 and "duplicate organization 'acme'" in p[2] for p in problems)
    # the login application is implicit: a service app may not take its name
    assert any(p[0] == 11 and "duplicate application name 'acme-login'" in p[2] for p in problems)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("version: 1\norganizations: [\n", 3, "expected"),
        ("- just\n- a list\n", 1, "expected a mapping"),
        ("version: 2\n", 1, "Input should be 1"),
        ("version: 1\norganizations:\n  - name: Bad Name\n", 3, "pattern"),
        ("version: 1\nplans:\n  free: {requests_per_minute: 0}\n", 3, "greater than or equal"),
    ],
)
def test_malformed_files(text: str, line: int, fragment: str) -> None:
    problems = _problems(text)
    assert problems[0][0] == line
    assert fragment in problems[0][2]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TenantFileError, match="No such file"):
        load_tenant_file(tmp_path / "absent.yaml")


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda data: yaml.safe_dump({"version": 1, "organizations": data})),
    )
)
def test_any_input_is_either_valid_or_a_tenant_file_error(text: str) -> None:
    try:
        parse_tenant_text(text)
    except TenantFileError as exc:
        assert exc.problems and all("error" in p for p in exc.problems)
