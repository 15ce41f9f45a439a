"""Every error the client raises, in one place, so callers catch :class:`HanzoError`."""

from __future__ import annotations

from typing import Any


class HanzoError(Exception):
    """Base of everything the client raises."""


class HanzoAPIError(HanzoError):
    """A non-success reply: the service's error ``code``, ``message`` and ``details`` (what
    exactly was wrong, e.g. the invalid fields), and the ``request_id`` to quote to an
    operator, who finds the request in every log by it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status, self.code, self.message = status, code, message
        self.details, self.request_id = details, request_id
        text = f"HTTP {status} {code}: {message}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text)


class HanzoConnectionError(HanzoError):
    """The server did not answer (down, moved, or unreachable); says which URL."""

    def __init__(self, url: str, cause: Exception) -> None:
        self.url = url
        super().__init__(f"cannot reach {url}: {type(cause).__name__}: {cause}")


class LoginError(HanzoError):
    """The sign-in did not complete; the message says which step failed."""


class DeviceLoginOff(LoginError):
    """Casdoor will not run the device grant for this client id: no such application, or
    the tenant's device sign-in is off (``device_login`` in the tenant file)."""
