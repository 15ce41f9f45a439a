"""The hot-path counters (``gateway_plugins.tally``) expose what ``prometheus_client``'s
``Counter``/``Histogram`` exposed for the same observations: the Grafana panels and the
alerts read these series by name, label and ``le``."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway_plugins import metrics
from gateway_plugins.tally import TallyCounter, TallyHistogram

BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: on a bound, between bounds, past the last, zero: every branch of the bucket choice
OBSERVED = (0.0, 0.0001, 0.00015, 0.0002, 0.003, 0.0099, 0.01, 0.7, 1.0, 1.5, 42.0)
DECIDED = (("allow", "200"), ("invalid_key", "401"), ("allow", "200"), ("rate_limited", "429"))


def _masked(text: bytes) -> str:
    """The exposition with the ``_created`` timestamps (the moment each series was made,
    which differs between the two registries) replaced by a mark."""
    return re.sub(r"^([a-z_]+_created(?:\{[^}]*\})?) \S+$", r"\1 T", text.decode(), flags=re.M)


def _exposition(counter: type, histogram: type) -> str:
    registry = CollectorRegistry(auto_describe=True)
    decisions = counter(
        "hanzo_gateway_decisions", "Decisions", ("outcome", "status"), registry=registry
    )
    latency = histogram(
        "hanzo_gateway_decision_seconds", "Time", buckets=BUCKETS, registry=registry
    )
    for outcome, status in DECIDED:
        decisions.labels(outcome=outcome, status=status).inc()
    for seconds in OBSERVED:
        latency.observe(seconds)
    return _masked(generate_latest(registry))


def test_tally_exposition_equals_prometheus_client():
    ours = _exposition(TallyCounter, TallyHistogram)
    theirs = _exposition(Counter, Histogram)
    assert ours == theirs
    # and the figures are the ones the observations make, not merely equal
    assert 'hanzo_gateway_decisions_total{outcome="allow",status="200"} 2.0' in ours
    assert 'hanzo_gateway_decision_seconds_bucket{le="0.0001"} 2.0' in ours
    assert 'hanzo_gateway_decision_seconds_bucket{le="0.01"} 7.0' in ours
    assert 'hanzo_gateway_decision_seconds_bucket{le="+Inf"} 11.0' in ours
    assert "hanzo_gateway_decision_seconds_count 11.0" in ours


def test_tally_counter_refuses_wrong_labels():
    counter = TallyCounter("c", "doc", ("outcome", "status"))
    with pytest.raises(ValueError):
        counter.labels(outcome="allow")


def test_gateway_registry_exposes_the_decision_series():
    metrics.DECISIONS.labels(outcome="allow", status="200").inc()
    metrics.LATENCY.observe(0.0003)
    metrics.CACHE.labels(cache="key", result="hit").inc()
    text = generate_latest(metrics.REGISTRY).decode()
    assert "# TYPE hanzo_gateway_decisions_total counter" in text
    assert "# TYPE hanzo_gateway_decision_seconds histogram" in text
    assert 'hanzo_gateway_decision_seconds_bucket{le="0.0005"}' in text
    assert 'hanzo_gateway_cache_lookups_total{cache="key",result="hit"}' in text
