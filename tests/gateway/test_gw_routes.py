"""Route table: literal and pattern routes, public routes, default deny."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway_plugins.routes import RouteTable

TABLE = RouteTable.from_yaml(
    """
routes:
  - {methods: [GET], path: /v1/memory/retrieve, permission: memory:read}
  - {methods: [delete], path: "/v1/memory/{id}", permission: memory:delete}
  - {methods: ["*"], path: "/v1/files/{rest*}", permission: inference:invoke}
  - {methods: [GET], path: /healthz, permission: null}
"""
)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/memory/retrieve", "memory:read"),
        ("DELETE", "/v1/memory/abc-123", "memory:delete"),
        ("PATCH", "/v1/files/a/b/c.txt", "inference:invoke"),
        ("GET", "/v1/files/", "inference:invoke"),
    ],
)
def test_matching_routes_name_their_permission(method: str, path: str, expected: str) -> None:
    match = TABLE.match(method, path)
    assert match is not None and match.permission == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/memory/retrieve"),  # wrong method
        ("DELETE", "/v1/memory/abc/extra"),  # {id} is one segment only
        ("DELETE", "/v1/memory/"),  # empty segment
        ("GET", "/v1/memory/retrieve/"),  # literal routes are exact
        ("GET", "/v1/other"),  # unknown route
        ("GET", "/v1/filesX/a"),
    ],
)
def test_unknown_routes_are_denied(method: str, path: str) -> None:
    assert TABLE.match(method, path) is None


def test_public_route() -> None:
    match = TABLE.match("GET", "/healthz")
    assert match is not None and match.public


def test_bundled_default_table_loads() -> None:
    table = RouteTable.load(None)
    store = table.match("POST", "/v1/memory/store")
    assert store is not None and store.permission == "memory:write"
    assert table.match("GET", "/admin") is None


@pytest.mark.parametrize(
    "text",
    [
        "routes: [{methods: [], path: /a, permission: memory:read}]",
        "routes: [{methods: [GET], path: a, permission: memory:read}]",
        "routes: [{methods: [GET], path: /a, permission: memory:read, extra: 1}]",
        "routes: [{methods: [GET], path: /a}]",
    ],
)
def test_bad_tables_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        RouteTable.from_yaml(text)


def test_rest_segment_must_end_the_pattern() -> None:
    with pytest.raises(ValueError, match="must end"):
        RouteTable.from_yaml(
            "routes: [{methods: [GET], path: '/a/{r*}/b', permission: memory:read}]"
        )


def test_authenticated_routes_need_a_credential_but_no_scope() -> None:
    from hanzo_contract.principal import Principal

    table = RouteTable.from_yaml(
        "routes: [{methods: [GET], path: /v1/keys, permission: authenticated}]"
    )
    match = table.match("GET", "/v1/keys")
    assert match is not None and not match.public
    assert match.permits(Principal(organization="acme", subject="acme/a"))


def test_remembered_pattern_matches_answer_as_the_first_time() -> None:
    """Pattern matches are remembered per (method, path), denials included, and the
    memory is bounded: asked again, and past the bound, every answer is the same."""
    from gateway_plugins import routes

    table = RouteTable.from_yaml(
        """
routes:
  - {methods: [delete], path: "/v1/memory/{id}", permission: memory:delete}
  - {methods: [GET], path: "/v1/memory/{id}", permission: memory:read}
"""
    )
    asked = [("DELETE", "/v1/memory/a"), ("GET", "/v1/memory/a"), ("PUT", "/v1/memory/a")]
    asked += [("GET", "/v1/memory/a/b"), ("DELETE", "/v1/memory/a")]
    want = ["memory:delete", "memory:read", None, None, "memory:delete"]
    for _ in range(2):
        got = [getattr(table.match(m, p), "permission", None) for m, p in asked]
        assert got == want
    for n in range(routes._MATCHED_SIZE + 10):  # walks ids past the bound
        assert table.match("GET", f"/v1/memory/{n}").permission == "memory:read"  # type: ignore[union-attr]
    assert table._match_pattern.cache_info().currsize <= routes._MATCHED_SIZE
    assert [getattr(table.match(m, p), "permission", None) for m, p in asked] == want
