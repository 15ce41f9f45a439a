"""Rate limits and quotas: in-process for one node, Redis when gateways are several."""

from gateway_plugins.limiter.base import Limiter, LimiterUnavailable, LimitResult, windows_for

__all__ = ["LimitResult", "Limiter", "LimiterUnavailable", "windows_for"]
