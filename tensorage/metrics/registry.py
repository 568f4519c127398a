"""One node's metrics: its own CollectorRegistry (several nodes share a process in tests and
benchmarks), collectors that read engine state when scraped, and the few counters and histograms
fed by engine events where no state keeps the number.

A scrape collects in two parts: collectors of in-memory state run on the node's event loop (the
state is only changed there, so they read it whole), collectors that read SQLite run in a thread,
and the text is encoded in that thread too."""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.metrics_core import Metric

from .names import family

# No ``*_created`` series: a sample per counter and histogram that dashboards never read.
disable_created_metrics()


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class _Families:
    """Metric families already collected, for the encoder."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._on_loop: list[Collector] = []
        self._in_thread: list[Collector] = []

    def add(self, collector: Collector, in_thread: bool = False) -> None:
        """``in_thread``: the collector reads SQLite (or anything slow): it runs off the event loop."""
        self.registry.register(collector)  # type: ignore[arg-type]
        (self._in_thread if in_thread else self._on_loop).append(collector)

    def counter(self, name: str, labels: Sequence[str] = ()) -> Counter:
        fam = family(name)
        metric = Counter(fam.base, fam.help, list(labels), registry=None)
        self.add(metric)
        return metric

    def histogram(self, name: str, labels: Sequence[str] = (), buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS
                  ) -> Histogram:
        fam = family(name)
        metric = Histogram(fam.base, fam.help, list(labels), buckets=buckets, registry=None)
        self.add(metric)
        return metric

    def collect_on_loop(self) -> list[Metric]:
        return [m for c in self._on_loop for m in c.collect()]

    def render(self, on_loop: Sequence[Metric]) -> bytes:
        """The exposition text: what was collected on the loop and what the threaded collectors read now."""
        families = [*on_loop, *(m for c in self._in_thread for m in c.collect())]
        return generate_latest(_Families(families))  # type: ignore[arg-type]

    def scrape(self) -> bytes:
        """Everything at once, on the caller's thread (tests, a node without a loop)."""
        return self.render(self.collect_on_loop())
