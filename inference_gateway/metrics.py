"""Prometheus metrics of the inference gateway, in a registry of its own, served at
``/metrics`` on its own port (the gateway routes only the OpenAI paths here).

What an operator needs to tell a slow model from a slow gateway, and a quota refusal from
an upstream outage: requests by route and status, the time each upstream took to begin
its answer and its failures, and the tokens held and settled per model.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from hanzo_contract.request_metrics import request_metrics

REGISTRY = CollectorRegistry(auto_describe=True)

#: a model call takes from milliseconds (embeddings) to minutes (a long completion)
_MODEL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                  120.0, 300.0)  # fmt: skip

REQUESTS, REQUEST_SECONDS = request_metrics("hanzo_inference", REGISTRY, _MODEL_BUCKETS)
UPSTREAM_SECONDS = Histogram(
    "hanzo_inference_upstream_seconds",
    "Time from sending a call to its upstream until the answer began, by upstream and path",
    ["upstream", "path"],
    buckets=_MODEL_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "hanzo_inference_upstream_errors",
    "Upstream calls that failed, by upstream and our error code (upstream_timeout, "
    "upstream_unavailable, upstream_error: a refusal or an answer broken off)",
    ["upstream", "code"],
    registry=REGISTRY,
)
TOKENS_RESERVED = Counter(
    "hanzo_inference_tokens_reserved",
    "Tokens held against token quotas before an upstream call (the call's estimate)",
    ["model"],
    registry=REGISTRY,
)
TOKENS_SETTLED = Counter(
    "hanzo_inference_tokens_settled",
    "Tokens a call was charged once it ended, by model and kind (prompt, completion)",
    ["model", "kind"],
    registry=REGISTRY,
)
RESERVATIONS = Counter(
    "hanzo_inference_reservations",
    "Token reservations by outcome: settled (to usage or an estimate), released (nothing "
    "produced), refused (429: the quota is spent), unavailable (503: counters away)",
    ["model", "outcome"],
    registry=REGISTRY,
)
