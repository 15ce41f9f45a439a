"""Prometheus metrics, one registry per app instance (tests run several side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_VERIFY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class SidecarMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.verify = self._counter(
            "hanzo_sidecar_key_verify_total", "Key verifications by outcome", "outcome"
        )
        self.verify_seconds = Histogram(
            "hanzo_sidecar_key_verify_seconds",
            "Time to verify one key",
            registry=self.registry,
            buckets=_VERIFY_BUCKETS,
        )
        self.resolve = self._counter(
            "hanzo_sidecar_principal_resolve_total", "Principal resolutions by outcome", "outcome"
        )
        self.denials = self._counter(
            "hanzo_sidecar_denials_reported_total", "Denials reported by gateway plugins", "status"
        )
        self.reconcile = self._counter(
            "hanzo_sidecar_reconcile_runs_total", "Reconcile loop runs by outcome", "outcome"
        )
        self.reconcile_seconds = Histogram(
            "hanzo_sidecar_reconcile_seconds",
            "Duration of one reconcile run",
            registry=self.registry,
        )
        self.casdoor_up = Gauge(
            "hanzo_sidecar_casdoor_up", "1 if the last Casdoor call worked", registry=self.registry
        )
        self.last_reconcile = Gauge(
            "hanzo_sidecar_last_successful_reconcile_timestamp",
            "Unix time of the last successful reconcile",
            registry=self.registry,
        )

    def _counter(self, name: str, documentation: str, label: str) -> Counter:
        return Counter(name, documentation, [label], registry=self.registry)
