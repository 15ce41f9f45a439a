"""Typed errors of the sidecar; each carries the HTTP status and the shared error code.

A subclass names both in its class line (``class X(SidecarError, code=..., status=...)``);
either may be left out to inherit the parent's.
"""

from __future__ import annotations

from typing import Any


class SidecarError(Exception):
    """Base: ``code`` goes into the shared error body, ``status`` is the HTTP status.

    ``status`` given to one instance overrides the class's: the same refusal can be a 404
    to a key manager and a 401 to a gateway asking who a credential belongs to.
    """

    code = "sidecar_error"
    status = 400

    def __init_subclass__(
        cls, *, code: str | None = None, status: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status

    def __init__(
        self, message: str, details: object | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if status is not None:
            self.status = status


class KeyVerificationError(SidecarError, status=401):
    """A presented key does not authenticate anyone."""


class InvalidKey(KeyVerificationError, code="invalid_key"): ...


class RevokedKey(KeyVerificationError, code="revoked_key"): ...


class ExpiredKey(KeyVerificationError, code="expired_key"): ...


class KeyNotFound(SidecarError, code="key_not_found", status=404):
    """No key with that id in the caller's organization (other tenants' keys included)."""


class DuplicateKeyName(SidecarError, code="duplicate_key_name", status=409): ...


class UniqueViolation(SidecarError, code="conflict", status=409):
    """A write broke a unique constraint (either engine); the store says which, in its terms."""


class InvalidRequest(SidecarError, code="invalid_request", status=400): ...


class UnknownScope(InvalidRequest, code="unknown_scope"):
    """A scope the registry (``hanzo_contract.scopes``) does not know."""


class KeyNotActive(InvalidRequest, code="key_not_active", status=409):
    """The key is revoked or expired, so it cannot be rotated."""


class GrantRefused(SidecarError, code="grant_refused", status=403):
    """A key was asked to carry more than whoever asked for it may hand out.

    Every subclass is audited where it is raised (``KeyIssuer``), so a refusal is a record.
    """


class ScopeEscalation(GrantRefused, code="scope_escalation"):
    """Requested scopes exceed what the owner's roles grant, or what the caller carries."""


class LimitEscalation(GrantRefused, code="limit_escalation"):
    """Requested limits are looser than the plan's (or the calling key's), field by field."""


class ExpiryEscalation(GrantRefused, code="expiry_escalation"):
    """A key minted by a key would outlive the key that minted it."""


class ManageRequired(GrantRefused, code="keys_manage_required"):
    """A key creates or rotates keys only when it carries ``keys:manage`` itself."""


class ParentKeyInactive(GrantRefused, code="parent_key_inactive"):
    """The key asking for a key was revoked or expired meanwhile (a cached answer)."""


class TooManyKeys(GrantRefused, code="too_many_keys", status=409):
    """The owner already holds the most live keys the sidecar allows one owner."""


class SignupRefused(SidecarError, code="signup_refused", status=403):
    """A sign-up for an organization that takes none through that application."""


class UnknownPrincipal(SidecarError, code="unknown_principal", status=404):
    """No such user or application, or it is disabled in Casdoor."""


class Unauthenticated(SidecarError, code="unauthenticated", status=401): ...


class UpstreamUnavailable(SidecarError, code="casdoor_unavailable", status=503): ...


class NotReady(SidecarError, code="not_ready", status=503):
    """The key store does not answer: a load balancer should send requests elsewhere."""


class UpstreamRefused(SidecarError, code="casdoor_error", status=502):
    """Casdoor answered with an error (wrong credentials, refused write...)."""


class TenantFileError(InvalidRequest, code="invalid_tenant_file"):
    """The file is not valid; ``problems`` lists ``{line, field, error}`` for each."""

    def __init__(self, source: str, problems: list[dict[str, Any]]) -> None:
        lines = [
            f"{source}:{p['line'] or '?'}: {p['field'] or '(top)'}: {p['error']}" for p in problems
        ]
        super().__init__("invalid tenant file\n" + "\n".join(lines), problems)
        self.problems = problems


class ApplyConflict(InvalidRequest, code="tenant_conflict", status=409):
    """The tenant file names objects that exist in Casdoor but are not ours."""


class ApplyFailed(SidecarError, code="tenant_apply_failed", status=502):
    """Casdoor refused or vanished midway: ``details`` lists applied, failed, not applied."""
