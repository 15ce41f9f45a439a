"""Credential caches in front of the sidecar: the principal cache and its settings."""
