"""The one exception of the installer: a message for the operator, never a traceback."""

from __future__ import annotations


class InstallError(RuntimeError):
    """The configuration cannot be rendered, validated or applied; the message says why."""
