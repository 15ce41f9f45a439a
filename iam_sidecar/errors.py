"""Typed errors of the sidecar; each carries the HTTP status and the shared error code."""

from __future__ import annotations


class SidecarError(Exception):
    """Base: ``code`` goes into the shared error body, ``status`` is the HTTP status."""

    code = "sidecar_error"
    status = 400

    def __init__(self, message: str, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class KeyVerificationError(SidecarError):
    """A presented key does not authenticate anyone."""

    status = 401


class InvalidKey(KeyVerificationError):
    code = "invalid_key"


class RevokedKey(KeyVerificationError):
    code = "revoked_key"


class ExpiredKey(KeyVerificationError):
    code = "expired_key"


class KeyNotFound(SidecarError):
    """No key with that id in the caller's organization (other tenants' keys included)."""

    code = "key_not_found"
    status = 404


class DuplicateKeyName(SidecarError):
    code = "duplicate_key_name"
    status = 409


class InvalidRequest(SidecarError):
    code = "invalid_request"
    status = 400


class ScopeEscalation(SidecarError):
    """Requested scopes exceed what the owner's Casdoor roles grant."""

    code = "scope_escalation"
    status = 403


class UnknownPrincipal(SidecarError):
    code = "unknown_principal"
    status = 404


class Forbidden(SidecarError):
    code = "forbidden"
    status = 403


class Unauthenticated(SidecarError):
    code = "unauthenticated"
    status = 401


class UpstreamUnavailable(SidecarError):
    code = "casdoor_unavailable"
    status = 503


class UpstreamRefused(SidecarError):
    """Casdoor answered with an error (wrong credentials, refused write...)."""

    code = "casdoor_error"
    status = 502
