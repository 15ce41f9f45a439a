"""Counters and histograms for the hot path: plain numbers, read by a collector at scrape.

``prometheus_client``'s ``Counter.inc`` and ``Histogram.observe`` take a lock per call
(and per bucket), so that threads may share them; the decision core runs on one event
loop thread, and the lock was most of what counting a decision cost. Here an increment
is an attribute ``+=`` and an observation a ``bisect`` and two ``+=``; the collector
builds the same metric families (names, labels, ``le`` values, ``_total``/``_count``/
``_sum``/``_created`` samples, in the same order) when ``/metrics`` is scraped.

Only the event loop's thread may count into these: an ``+=`` from two threads can lose
an increment (a scrape from another thread only reads, and may see one in progress).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import metrics as _prometheus
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
    Sample,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString


def _created_on() -> bool:
    """Whether ``prometheus_client`` exports ``_created`` samples (its switch:
    ``PROMETHEUS_DISABLE_CREATED_SERIES`` or ``disable_created_metrics()``)."""
    return bool(_prometheus._use_created)


class TallyCount:
    """One labelled child: ``inc`` adds to a plain number."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class TallyCounter(Collector):
    """A labelled counter (``.labels(**values).inc()``) exposed as Prometheus'
    ``Counter`` would expose it."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], TallyCount] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, **values: str) -> TallyCount:
        """The child for these label values, made on first use (keep it: the lookup is
        the slow part, as with ``prometheus_client``)."""
        if set(values) != set(self._labelnames):
            raise ValueError(f"labels {sorted(values)} != {sorted(self._labelnames)}")
        key = tuple(str(values[name]) for name in self._labelnames)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, TallyCount())
        return child

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        created = _created_on()
        for key, child in list(self._children.items()):
            family.add_metric(key, child.value, created=child.created if created else None)
        yield family


class TallyHistogram(Collector):
    """An unlabelled histogram (``.observe(seconds)``) exposed as Prometheus'
    ``Histogram`` would expose it: an observation ``v`` counts in the first bucket with
    ``v <= le``, and in ``+Inf``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self._name = name
        self._documentation = documentation
        self._bounds = bounds
        self._le = [floatToGoString(b) for b in bounds]
        #: per bucket, not cumulative; the collector adds them up
        self._counts = [0] * len(bounds)
        self._sum = 0.0
        self._created = time.time()
        if registry is not None:
            registry.register(self)

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation)
        running, buckets = 0.0, []
        for le, count in zip(self._le, list(self._counts), strict=True):
            running += count
            buckets.append((le, running))
        family.add_metric([], buckets, self._sum)
        if _created_on():
            family.samples.append(Sample(f"{self._name}_created", {}, self._created))
        yield family
