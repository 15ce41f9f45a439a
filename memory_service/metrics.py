"""Prometheus metrics of the memory service, in a registry of its own; requests are counted
by route template (``hanzo_contract.request_metrics``).

Served at ``/metrics`` on the service's own port; the gateway routes only ``/v1/memory/*``
here, so users never reach it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from hanzo_contract.request_metrics import LATENCY_BUCKETS, request_metrics

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS, REQUEST_SECONDS = request_metrics("hanzo_memory", REGISTRY)
BACKEND_SECONDS = Histogram(
    "hanzo_memory_backend_seconds",
    "Time of one storage backend operation, by backend and operation",
    ["backend", "operation"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BACKEND_ERRORS = Counter(
    "hanzo_memory_backend_errors",
    "Backend operations that raised, by backend and operation",
    ["backend", "operation"],
    registry=REGISTRY,
)
EMBEDDING_SECONDS = Histogram(
    "hanzo_memory_embedding_seconds",
    "Time to embed one batch (kind=batch) or one search query (kind=query)",
    ["model", "kind"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
EMBEDDED_TEXTS = Counter(
    "hanzo_memory_embedded_texts",
    "Texts embedded, by model",
    ["model"],
    registry=REGISTRY,
)
