"""A validator gateway's metrics: the manifest's objects and shards read from its SQLite at scrape
time (in a thread), transfer bytes and durations from its ``ObjectEvent``s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client.metrics_core import Metric

from ..events import Event, ObjectEvent, ShardLost, ShardRepaired
from .node import gauge
from .registry import NodeMetrics

if TYPE_CHECKING:
    from ..gateway import Gateway

TRANSFER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class GatewayCollector:
    """Reads SQLite: registered to run off the event loop."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway

    def collect(self) -> Iterable[Metric]:
        gw = self.gateway
        totals = gw.db.totals()
        objects = gauge("tensorage_gateway_objects", ["state"])
        object_bytes = gauge("tensorage_gateway_object_bytes", ["state"])
        for state, (n, size) in sorted(totals.objects.items()):
            objects.add_metric([state], n)
            object_bytes.add_metric([state], size)
        shards = gauge("tensorage_gateway_shards", ["state"])
        for state, n in sorted(totals.shards.items()):
            shards.add_metric([state], n)
        for state in ("suspect", "lost"):  # shown at 0 too: an alert on them needs the series
            if state not in totals.shards:
                shards.add_metric([state], 0)
        queue = gauge("tensorage_gateway_repair_queue")
        queue.add_metric([], totals.repair_segments)
        flight = gauge("tensorage_gateway_transfers_in_flight", ["op"])
        flight.add_metric(["store"], len(gw.active))
        flight.add_metric(["retrieve"], gw._retrieves)
        return (objects, object_bytes, shards, queue, flight)


class GatewayEvents:
    def __init__(self, metrics: NodeMetrics, source: str) -> None:
        self.source = source
        self.stored = metrics.counter("tensorage_gateway_stored_bytes_total")
        self.retrieved = metrics.counter("tensorage_gateway_retrieved_bytes_total")
        self.store_s = metrics.histogram("tensorage_gateway_store_seconds", buckets=TRANSFER_BUCKETS)
        self.retrieve_s = metrics.histogram("tensorage_gateway_retrieve_seconds", buckets=TRANSFER_BUCKETS)
        self.actions = metrics.counter("tensorage_gateway_object_events_total", ["action"])
        self.lost = metrics.counter("tensorage_gateway_shards_lost_total")
        self.repaired = metrics.counter("tensorage_gateway_shards_repaired_total")

    def __call__(self, event: Event) -> None:
        if event.source != self.source:
            return
        if isinstance(event, ObjectEvent):
            self.actions.labels(event.action).inc()
            if event.action == "stored":
                self.stored.inc(event.bytes)
                self.store_s.observe(event.seconds)
            elif event.action == "retrieved":
                self.retrieved.inc(event.bytes)
                self.retrieve_s.observe(event.seconds)
        elif isinstance(event, ShardLost):
            self.lost.inc()
        elif isinstance(event, ShardRepaired):
            self.repaired.inc(len(event.indices))
