"""How a user of a tenant signs the CLI in: the tenant's own CLI application.

The tenant sync creates it, ``hanzo login --device`` asks Casdoor for a device code with its
client id, and the gateway accepts the tokens it issues for users of that tenant only.

Why one per tenant, when PKCE uses the shared ``hanzo-cli`` application: Casdoor's device
grant keeps only the application's id (``admin/hanzo-cli``) for the code, so the device page
of a shared application signs users in to ``built-in``. An application whose organization
*is* the tenant makes the printed page sign the user in to their own organization.

The name is also the (public) client id. It must never contain ``-org-``, which Casdoor
reads as a shared application's ``<app>-org-<organization>`` suffix: ``_`` keeps an
organization named ``acme-org`` from forming one.
"""

from __future__ import annotations

#: ``{organization}`` is replaced by the tenant's name (the gateway's audience template)
ORG_CLI_APPLICATION = "{organization}_cli"


def org_cli_application(organization: str) -> str:
    """The tenant's CLI application: its Casdoor name and its client id."""
    return ORG_CLI_APPLICATION.replace("{organization}", organization)
