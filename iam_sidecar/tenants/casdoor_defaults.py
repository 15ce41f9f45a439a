"""Casdoor defaults our API-created objects need but the API does not fill in.

Casdoor silently ignores admin updates to user fields (``isForbidden``, ``isAdmin``,
``properties``...) unless the organization lists a matching account item; its UI adds
these when it creates an organization, its API does not. Copied from Casdoor v1.1000.0
``object/init.go`` ``getBuiltInAccountItems``.
"""

from __future__ import annotations

from typing import Any

_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("Organization", "Public", "Admin"),
    ("ID", "Public", "Immutable"),
    ("Name", "Public", "Admin"),
    ("Display name", "Public", "Self"),
    ("Avatar", "Public", "Self"),
    ("User type", "Public", "Admin"),
    ("Password", "Self", "Self"),
    ("Email", "Public", "Self"),
    ("Phone", "Public", "Self"),
    ("Country code", "Public", "Admin"),
    ("Country/Region", "Public", "Self"),
    ("Location", "Public", "Self"),
    ("Affiliation", "Public", "Self"),
    ("Title", "Public", "Self"),
    ("Homepage", "Public", "Self"),
    ("Bio", "Public", "Self"),
    ("Tag", "Public", "Admin"),
    ("Signup application", "Public", "Admin"),
    ("Roles", "Public", "Immutable"),
    ("Permissions", "Public", "Immutable"),
    ("Groups", "Public", "Admin"),
    ("3rd-party logins", "Self", "Self"),
    ("Properties", "Admin", "Admin"),
    ("Is admin", "Admin", "Admin"),
    ("Is forbidden", "Admin", "Admin"),
    ("Is deleted", "Admin", "Admin"),
    ("Multi-factor authentication", "Self", "Self"),
    ("WebAuthn credentials", "Self", "Self"),
    ("Managed accounts", "Self", "Self"),
    ("MFA accounts", "Self", "Self"),
)


def default_account_items() -> list[dict[str, Any]]:
    return [
        {"name": name, "visible": True, "viewRule": view, "modifyRule": modify, "regex": ""}
        for name, view, modify in _ITEMS
    ]


#: the sign-up form of a tenant with ``signup: true``: Casdoor's default items
#: (``object/init.go``) without phone and agreement, and the email taken without a code
#: (no mail provider is needed; it is not proof of the address)
_SIGNUP_ITEMS: tuple[tuple[str, bool, str], ...] = (
    ("ID", False, "Random"),
    ("Username", True, "None"),
    ("Display name", True, "None"),
    ("Password", True, "None"),
    ("Confirm password", True, "None"),
    ("Email", True, "No verification"),
)


def signup_items() -> list[dict[str, Any]]:
    """Every field of Casdoor's ``SignupItem``, so what Casdoor returns compares equal."""
    return [
        {
            "name": name,
            "visible": visible,
            "required": True,
            "prompted": False,
            "type": "",
            "customCss": "",
            "label": "",
            "placeholder": "",
            "options": None,
            "regex": "",
            "rule": rule,
        }
        for name, visible, rule in _SIGNUP_ITEMS
    ]
