"""Prometheus metrics of the decision core, in a registry of their own.

The three a decision touches on every request (``DECISIONS``, ``LATENCY``, ``CACHE``)
are plain counters and bucket arrays (:mod:`gateway_plugins.tally`) that a collector
reads at scrape time: ``prometheus_client``'s take a lock per increment and per bucket,
which was a few microseconds of every decision. Same names, labels, buckets and
exposition as the ``Counter``/``Histogram`` they replace (the Grafana panels read them).
The rare ones stay ``prometheus_client`` metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from gateway_plugins.tally import TallyCounter, TallyHistogram

REGISTRY = CollectorRegistry(auto_describe=True)

DECISIONS = TallyCounter(
    "hanzo_gateway_decisions",
    "Decisions by outcome (allow, or the denial code) and status",
    ("outcome", "status"),
    registry=REGISTRY,
)
LATENCY = TallyHistogram(
    "hanzo_gateway_decision_seconds",
    "Time to decide one request, sidecar calls included",
    buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
CACHE = TallyCounter(
    "hanzo_gateway_cache_lookups",
    "Credential cache lookups by cache (key, jwt) and result (hit, miss, negative_hit)",
    ("cache", "result"),
    registry=REGISTRY,
)
LIMITER_ERRORS = Counter(
    "hanzo_gateway_limiter_errors",
    "Limiter store failures, by the fail mode applied",
    ["fail_mode"],
    registry=REGISTRY,
)
USAGE_DROPPED = Counter(
    "hanzo_gateway_usage_dropped",
    "Allowed requests whose usage could not be reported (sidecar away too long)",
    registry=REGISTRY,
)
USAGE_UNCONFIRMED = Counter(
    "hanzo_gateway_usage_unconfirmed",
    "Usage reported whose answer was lost: likely counted, never sent twice",
    registry=REGISTRY,
)
AUDIT_DROPPED = Counter(
    "hanzo_gateway_audit_dropped",
    "Denial audit events dropped (queue full or sidecar unreachable)",
    registry=REGISTRY,
)
SIDECAR_FAILOVERS = Counter(
    "hanzo_gateway_sidecar_failovers",
    "Calls passed over to the next sidecar (or failed) because this one could not answer",
    ["sidecar"],
    registry=REGISTRY,
)
LIMITER_DEDUPLICATED = Counter(
    "hanzo_gateway_limiter_deduplicated",
    "Decisions asked again with the gateway's id of a counted one (nginx retried at the "
    "other plugin): answered as the first time, not counted again",
    registry=REGISTRY,
)
