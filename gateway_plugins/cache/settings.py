"""What the credential caches can be told: how long answers live, how many are kept.

Flat fields of the gateway settings (``HANZO_GATEWAY_POSITIVE_CACHE_MAX_SECONDS``, ...):
:class:`gateway_plugins.settings.GatewaySettings` inherits them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class CacheSettings(BaseModel):
    #: upper bound on how long a positive verify/resolve answer is cached (the revocation
    #: bound is ``min(this, the sidecar's cache_ttl_seconds)``)
    positive_cache_max_seconds: float = Field(default=5.0, ge=0)
    negative_cache_seconds: float = Field(default=1.0, ge=0)
    cache_size: int = Field(default=100_000, ge=1)
