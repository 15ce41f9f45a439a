"""A small Python client for Hanzo's memory and key APIs, and the CLI's login flow."""

from hanzo_client.api import AsyncHanzoClient, HanzoClient, Page
from hanzo_client.errors import HanzoAPIError, HanzoConnectionError, HanzoError, LoginError

__all__ = [
    "AsyncHanzoClient",
    "HanzoAPIError",
    "HanzoClient",
    "HanzoConnectionError",
    "HanzoError",
    "LoginError",
    "Page",
]
