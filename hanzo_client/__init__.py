"""A small Python client for Hanzo's memory and key APIs, and the CLI's login flow."""

from hanzo_client.api import AsyncHanzoClient, HanzoAPIError, HanzoClient

__all__ = ["AsyncHanzoClient", "HanzoAPIError", "HanzoClient"]
