"""Reading the Prometheus text a service serves at ``/metrics``: sums by label subset, so a
test reads how much a counter grew across its own requests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(sample name, labels): value}`` of a Prometheus text exposition."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 when there is
    none): the registry is the process's, so earlier tests may have left other label sets
    (another method, another backend) that match; a test reads how much this sum grew."""
    want = set(labels.items())
    return sum(v for (n, got), v in samples(text).items() if n == name and want <= got)
