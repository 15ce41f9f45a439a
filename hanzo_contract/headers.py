"""Identity headers sent to upstreams, stripped and set in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hanzo_contract.principal import Principal

USER_ID = "X-User-Id"
ORG_ID = "X-Org-Id"
ROLES = "X-Roles"
KEY_ID = "X-Key-Id"
SCOPES = "X-Scopes"
IS_ORG_ADMIN = "X-User-IsOrgAdmin"
REQUEST_ID = "X-Request-Id"
ASSERTION = "X-Hanzo-Identity"

#: Every header a client might forge to pass as someone else. All are removed before ours
#: are set; upstreams only ever see the values the plugin wrote.
IDENTITY_HEADERS: tuple[str, ...] = (
    USER_ID,
    ORG_ID,
    ROLES,
    KEY_ID,
    SCOPES,
    IS_ORG_ADMIN,
    ASSERTION,
)
_IDENTITY_LOWER = frozenset(h.lower() for h in IDENTITY_HEADERS)


def identity_header_values(principal: Principal, assertion: str) -> dict[str, str]:
    """The identity headers for ``principal``, in the names Hanzo's services read."""
    return {
        USER_ID: principal.subject,
        ORG_ID: principal.organization,
        ROLES: ",".join(principal.roles),
        KEY_ID: principal.key_id or "",
        SCOPES: ",".join(sorted(principal.scopes)),
        IS_ORG_ADMIN: "true" if principal.is_org_admin else "false",
        ASSERTION: assertion,
    }


def replace_identity_headers(
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    principal: Principal,
    assertion: str,
) -> list[tuple[str, str]]:
    """Drop every client-sent identity header and add ours, in one step.

    Strip and set live in one function so that no code path can do one without the other.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    kept = [(k, v) for k, v in items if k.lower() not in _IDENTITY_LOWER]
    return kept + list(identity_header_values(principal, assertion).items())


def replace_identity_headers_raw(
    raw: Iterable[tuple[bytes, bytes]], values: Mapping[str, str]
) -> list[tuple[bytes, bytes]]:
    """The ASGI-scope form of :func:`replace_identity_headers`, from already computed
    ``values`` (``identity_header_values``): strip every identity header, then set ours."""
    kept = [(k, v) for k, v in raw if k.decode("latin-1").lower() not in _IDENTITY_LOWER]
    return kept + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in values.items()]
