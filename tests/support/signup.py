"""The sign-up tests' tenants (one open to sign-ups, one closed) and the form Casdoor's
sign-up page posts."""

from __future__ import annotations

from typing import Any

from iam_sidecar.tenants.model import login_application

#: ``{open}``/``{closed}``: organization names; ``{signup}``: the open one's switch
TENANTS = """
version: 1
organizations:
  - name: {open}
    signup: {signup}
    signup_role: reader
    roles:
      - name: reader
        scopes: [memory:read]
      - name: admin
        scopes: [memory:read, memory:write, keys:manage]
  - name: {closed}
    roles:
      - name: member
        scopes: [memory:read, memory:write]
"""


def tenants_text(open_org: str, closed_org: str, signup: bool = True) -> str:
    return TENANTS.format(open=open_org, closed=closed_org, signup=str(signup).lower())


def signup_form(org: str, username: str, *, application: str | None = None) -> dict[str, Any]:
    """What Casdoor's sign-up page posts to ``/api/signup``."""
    return {
        "application": application or login_application(org),
        "organization": org,
        "username": username,
        "name": username,
        "password": f"Pw-{username}-12345",
        "confirm": "",
        "email": f"{username}@example.test",
    }
