"""The limiter a gateway runs, chosen by :class:`LimiterSettings`."""

from __future__ import annotations

from pathlib import Path

from gateway_plugins.limiter.base import Clock, Limiter, wall_clock
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.limiter.redis_store import RedisLimiter
from gateway_plugins.limiter.settings import LimiterSettings


def build_limiter(
    settings: LimiterSettings, quota_db_path: Path, clock: Clock = wall_clock
) -> Limiter:
    """Redis when gateways share budgets; else in-process, quotas kept in SQLite."""
    if settings.limiter_backend == "redis":
        return RedisLimiter(
            settings.redis_url,
            settings.redis_timeout_seconds,
            clock=clock,
            cluster=settings.redis_cluster,
        )
    return MemoryLimiter(quota_db_path, settings.quota_flush_seconds, clock=clock)
