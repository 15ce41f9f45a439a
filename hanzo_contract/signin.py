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

Device sign-in is off unless the tenant file sets ``device_login: true`` for the tenant:
Casdoor (v1.1000.0) identifies the user of a device-code token by *name* only (its token
endpoint even takes a bare ``username`` with no code: hanzo_client/README.md, "Known
Casdoor flaws"), so whoever can reach Casdoor can sign in as a user of a tenant whose device
grant is on. While it
is off the CLI application keeps its name but answers to another client id
(:func:`org_cli_client_id`), so Casdoor refuses ``hanzo login --device`` at once, and it has
no device grant, so no device-code token is ever issued for it.
"""

from __future__ import annotations

#: ``{organization}`` is replaced by the tenant's name (the gateway's audience template)
ORG_CLI_APPLICATION = "{organization}_cli"


#: RFC 8628's grant type, as the CLI asks for it and the CLI application allows it
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: the tenant file's per-organization switch for ``hanzo login --device``
DEVICE_LOGIN_SETTING = "device_login"
#: why it is off by default, in one line (the tenant file's schema and the CLI both say it)
DEVICE_LOGIN_OFF_REASON = (
    "off by default: Casdoor's device grant identifies the user by name only, so a user "
    "of another tenant with the same name, or anyone naming a user of this tenant, "
    "can sign in as them"
)


def org_cli_application(organization: str) -> str:
    """The tenant's CLI application: its Casdoor name and, with device sign-in on, its
    client id."""
    return ORG_CLI_APPLICATION.replace("{organization}", organization)


def org_cli_client_id(organization: str, device_login: bool) -> str:
    """The client id the tenant's CLI application answers to: its name while device sign-in
    is on, else one nobody asks for (it ends ``_off``, which no tenant's ``_cli`` does)."""
    name = org_cli_application(organization)
    return name if device_login else f"{name}_off"
