"""The small contract shared by every Hanzo service.

It defines what crosses the boundaries between the sidecar, the gateway plugins and the
memory service: the principal, the identity headers and signed assertion, the API key
format, the error body, and the settings base. Nothing here talks to a network.
"""

from hanzo_contract.principal import Limits, Principal, PrincipalKind

__all__ = ["Limits", "Principal", "PrincipalKind"]
