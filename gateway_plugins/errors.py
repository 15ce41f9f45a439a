"""Why the gateway refuses a credential, or cannot decide: one exception module.

A :class:`CredentialRefused` carries the denial code and message the client gets (401);
the ``...Unavailable`` errors are not the client's fault (503, or the fail mode decides).
"""

from __future__ import annotations


class CredentialRefused(Exception):
    """The credential is no good: its code and message go to the client as a 401."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Rejected(CredentialRefused):
    """The sidecar said no (401): the credential is unknown, revoked or expired."""


class InvalidToken(CredentialRefused):
    """A bearer JWT failed a check: signature, issuer, audience, expiry or its claims."""


class Unavailable(Exception):
    """The sidecar could not answer; not the client's fault (503)."""


class JwksUnavailable(Exception):
    """Casdoor's JWKS could not be fetched; not the client's fault."""
