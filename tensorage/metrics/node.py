"""What every node serves: who it is, its chain, the requests it refused, and its jobs (read from
:meth:`tensorage.scheduler.Jobs.state` at scrape time; run durations from ``JobRan`` events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .. import PROTOCOL_VERSION, __version__
from ..events import Event, JobRan
from .names import family
from .registry import NodeMetrics

if TYPE_CHECKING:
    from ..engines.node import Node


def gauge(name: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, family(name).help, labels=list(labels))


def counter(name: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    fam = family(name)
    return CounterMetricFamily(fam.base, fam.help, labels=list(labels))


JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class NodeCollector:
    def __init__(self, node: "Node") -> None:
        self.node = node

    def collect(self) -> Iterable[Metric]:
        node = self.node
        info = gauge("tensorage_node_info", ["role", "network", "hotkey", "version", "protocol"])
        info.add_metric([node.role, node.settings.network, node.hotkey, __version__, str(PROTOCOL_VERSION)], 1)
        up = gauge("tensorage_chain_up")
        up.add_metric([], 1 if node.chain_health.state == "ok" else 0)
        block = gauge("tensorage_chain_block")
        mg = node.metagraph
        if mg is not None:
            block.add_metric([], mg.block)
        refused = counter("tensorage_requests_refused_total", ["route", "reason"])
        for (route, reason), n in sorted(node.requests_refused.items()):
            refused.add_metric([route, reason], n)
        yield from (info, up, block, refused)
        yield from self._jobs()

    def _jobs(self) -> Iterable[Metric]:
        runs = counter("tensorage_job_runs_total", ["job"])
        failures = counter("tensorage_job_failures_total", ["job"])
        last_ok = gauge("tensorage_job_last_success_timestamp_seconds", ["job"])
        running = gauge("tensorage_job_running", ["job"])
        chain = gauge("tensorage_job_chain_failures", ["job"])
        for job in self.node.jobs.state():
            runs.add_metric([job.id], job.runs)
            failures.add_metric([job.id], job.failures)
            if job.last_ok_at is not None:
                last_ok.add_metric([job.id], job.last_ok_at)
            running.add_metric([job.id], 1 if job.running else 0)
            chain.add_metric([job.id], job.chain_failures)
        return (runs, failures, last_ok, running, chain)


class JobDurations:
    """``tensorage_job_duration_seconds`` from the node's ``JobRan`` events (no state keeps them)."""

    def __init__(self, metrics: NodeMetrics, source: str) -> None:
        self.source = source
        self.seconds = metrics.histogram("tensorage_job_duration_seconds", ["job"], buckets=JOB_BUCKETS)

    def __call__(self, event: Event) -> None:
        if isinstance(event, JobRan) and event.source == self.source:
            self.seconds.labels(event.job_id).observe(event.duration_s)
