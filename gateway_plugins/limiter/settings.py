"""What the limiter can be told: its store, its fail mode, the budgets a request draws on.

Flat fields of the gateway settings (``HANZO_GATEWAY_LIMITER_BACKEND``, ``[gateway]
limiter_backend``, ...): :class:`gateway_plugins.settings.GatewaySettings` inherits them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class LimiterSettings(BaseModel):
    limiter_backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: ``redis_url`` is a seed node of a Redis/Valkey cluster (keys carry hash tags)
    redis_cluster: bool = False
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
    #: what a limit does when the store is unreachable, for routes that do not say
    #: (``on_limiter_down`` in the route table): ``open`` allows and logs (Kong's "fault
    #: tolerant"); ``closed`` answers 503; ``local`` counts in this process instead
    limiter_fail_mode: Literal["open", "closed", "local"] = "open"
    #: the ``local`` fallback admits this share of each limit per process (0.5 with two
    #: gateways keeps the sum at the limit while the store is down)
    limiter_local_share: float = Field(default=1.0, gt=0, le=1)
    #: which budgets a request draws on: the credential (key, user or application) and/or
    #: its whole organization
    limit_levels: list[Literal["credential", "organization"]] = Field(
        default_factory=lambda: ["credential"]
    )
    #: SQLite file where the in-process limiter keeps quota counters across restarts
    quota_db_path: Path | None = None
    quota_flush_seconds: float = Field(default=1.0, gt=0)
    #: how long a token reservation holds quota when it is never settled (an inference
    #: gateway that crashed mid-call): longer than the longest model call, or a call that
    #: outlives it is charged without its reservation (correctly, but not held meanwhile)
    token_reservation_seconds: float = Field(default=900.0, gt=0)
