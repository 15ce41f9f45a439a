"""Typed errors for Casdoor replies: its API answers HTTP 200 with ``status: error``."""

from __future__ import annotations


class CasdoorError(Exception):
    """Casdoor refused the call; ``message`` is Casdoor's own ``msg``."""

    def __init__(self, message: str, *, action: str = "", status_code: int = 200) -> None:
        self.message = message
        self.action = action
        self.status_code = status_code
        super().__init__(f"Casdoor {action}: {message}" if action else f"Casdoor: {message}")


class CasdoorNotFound(CasdoorError):
    """The object does not exist (Casdoor says so, or answers ``data: null``)."""


class CasdoorAuthError(CasdoorError):
    """Our credentials were refused (wrong client id/secret, or not permitted)."""


class CasdoorUnavailable(CasdoorError):
    """Casdoor could not be reached after bounded retries (down, refusing, timing out)."""
