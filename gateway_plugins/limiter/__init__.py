"""Rate limits and quotas: in-process for one node, Redis when gateways are several."""

from gateway_plugins.limiter.base import (
    Clock,
    Limiter,
    LimiterUnavailable,
    LimitResult,
    wall_clock,
    windows_for,
)

__all__ = ["Clock", "LimitResult", "Limiter", "LimiterUnavailable", "wall_clock", "windows_for"]
