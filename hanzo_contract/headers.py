"""Identity headers sent to upstreams, stripped and set in one place."""

from __future__ import annotations

import re
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
#: nginx's own id for a request (``$request_id``), set on its auth subrequest over anything
#: a client sent: the same on both tries of a decision nginx retries at another plugin,
#: which counts it once (never a client's ``X-Request-Id``: a client could repeat that)
DECISION_ID = "X-Hanzo-Decision-Id"

#: a request id a client may choose: a plain token, safe in logs, headers and JSON
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def safe_request_id(value: str | None) -> str | None:
    """``value`` when it is an acceptable request id (the gateways admit the same), else
    ``None``: a client's id is never echoed into a body or a log unless it is a plain token."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


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


def canonical_name(name: str) -> str:
    """The spelling-free form of a header name: ``X_Org_Id``, ``x-org-id`` and ``X-ORG-ID``
    are one header to whatever reads it (CGI/WSGI and several proxies fold ``_`` into
    ``-``), so each is stripped as the identity header it spells."""
    return name.strip().lower().replace("_", "-")


_IDENTITY_CANONICAL = frozenset(canonical_name(h) for h in IDENTITY_HEADERS)


def is_identity_header(name: str) -> bool:
    """Whether ``name``, in any case and with ``_`` for ``-``, is an identity header."""
    return canonical_name(name) in _IDENTITY_CANONICAL


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
    """Drop every client-sent identity header, in any spelling, and add ours, in one step.

    Strip and set live in one function so that no code path can do one without the other.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    kept = [(k, v) for k, v in items if not is_identity_header(k)]
    return kept + list(identity_header_values(principal, assertion).items())


def replace_identity_headers_raw(
    raw: Iterable[tuple[bytes, bytes]], values: Mapping[str, str]
) -> list[tuple[bytes, bytes]]:
    """The ASGI-scope form of :func:`replace_identity_headers`, from already computed
    ``values`` (``identity_header_values``): strip every identity header in any spelling,
    then set ours. Direct mode (``gateway_plugins.inline``) calls this one."""
    kept = [(k, v) for k, v in raw if not is_identity_header(k.decode("latin-1"))]
    return kept + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in values.items()]
