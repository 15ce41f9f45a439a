"""The registry of scopes: every permission a credential can carry, named once.

The route tables (``gateway_plugins/routes.default.yaml``, ``deploy/stack/routes.yaml``)
may require only these; the tenant file may grant only these; ``POST /v1/keys`` accepts
only these. A scope nothing checks is a grant nobody can reason about, so a new service
adds its scopes here first and every part refuses the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

#: manage every key of one's organization; a key needs it to create or rotate keys
KEYS_MANAGE = "keys:manage"

KNOWN_SCOPES: frozenset[str] = frozenset(
    {
        "memory:read",
        "memory:write",
        "memory:delete",
        "inference:invoke",
        KEYS_MANAGE,
    }
)


def unknown_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes in ``scopes`` the registry does not know, sorted."""
    return sorted({s for s in scopes if s not in KNOWN_SCOPES})
