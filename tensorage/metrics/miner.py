"""A miner's metrics: disks, plots and shards read from the engine at scrape time; window lookups
timed from its ``ChallengeServed`` events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client.metrics_core import Metric

from ..events import ChallengeServed, Event
from .node import counter, gauge
from .registry import NodeMetrics

if TYPE_CHECKING:
    from ..engines.miner import MinerEngine

CHALLENGE_ROUTE = "/v1/challenge"
LOOKUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # the deadline is 8 s on finney


class MinerCollector:
    """Counters of the miner's in-memory state, on the event loop."""

    def __init__(self, miner: "MinerEngine") -> None:
        self.miner = miner

    def collect(self) -> Iterable[Metric]:
        m = self.miner
        allocating = gauge("tensorage_miner_allocating")
        allocating.add_metric([], 1 if m.allocator.status.busy else 0)
        answered = counter("tensorage_miner_windows_answered_total", ["result"])
        for result, n in sorted(m.windows_answered.items()):
            answered.add_metric([result], n)
        for (route, reason), n in sorted(m.requests_refused.items()):
            if route == CHALLENGE_ROUTE:
                answered.add_metric([reason], n)
        return (allocating, answered)


class MinerStorageCollector:
    """Disks (a statvfs each) and shards (the per-validator SQLite indexes): in the scrape's thread,
    so a slow or hung disk holds a scrape, never the event loop. It reads what the loop replaces
    whole (the held plots, the listing) or copies first (the index map)."""

    def __init__(self, miner: "MinerEngine") -> None:
        self.miner = miner

    def collect(self) -> Iterable[Metric]:
        m = self.miner
        per_disk = m.plots_per_disk()
        plots = gauge("tensorage_miner_plots", ["disk"])
        plot_bytes = gauge("tensorage_miner_plot_bytes", ["disk"])
        free = gauge("tensorage_miner_disk_free_bytes", ["disk"])
        share = gauge("tensorage_miner_disk_share_bytes", ["disk"])
        up = gauge("tensorage_miner_disk_up", ["disk"])
        for disk in m.allocator.disk_states(per_disk):  # what node.json's "disks" carries (snapshot.DiskState)
            path = [disk["path"]]
            plots.add_metric(path, disk.get("plots", 0))
            plot_bytes.add_metric(path, disk.get("plot_bytes", 0))
            free.add_metric(path, disk.get("device_free", 0))
            share.add_metric(path, disk.get("share_bytes", 0))
            up.add_metric(path, 1 if disk.get("state", "ok") == "ok" else 0)
        yield from (plots, plot_bytes, free, share, up)
        yield from self._shards()

    def _shards(self) -> Iterable[Metric]:
        m = self.miner
        counts = m.shards.store.counts()
        listing = m._listing
        certified_bytes = sum(c.size for c in listing.certificates()) if listing is not None else 0
        for name, value in (("tensorage_miner_shards", counts.files), ("tensorage_miner_shard_bytes", counts.bytes),
                            ("tensorage_miner_shard_free_bytes", m.shards.free_bytes()),
                            ("tensorage_miner_certified_shards", counts.certified),
                            ("tensorage_miner_certified_bytes", certified_bytes)):
            g = gauge(name)
            g.add_metric([], value)
            yield g


class MinerEvents:
    """Lookup seconds from the miner's ``ChallengeServed`` events: the first answer of a window is
    the one looked up on disk; the same answer sent to other validators costs no lookup."""

    def __init__(self, metrics: NodeMetrics, source: str) -> None:
        self.source = source
        self.lookup = metrics.histogram("tensorage_miner_lookup_seconds", buckets=LOOKUP_BUCKETS)

    def __call__(self, event: Event) -> None:
        if isinstance(event, ChallengeServed) and event.source == self.source and not event.cached:
            self.lookup.observe(event.latency_ms / 1000)
