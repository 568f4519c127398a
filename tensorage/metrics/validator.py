"""A validator's metrics: windows, scores and weights read from the engine at scrape time; verdict
counts, window durations and weight settings from its events (``WindowJudged``, ``WeightsSet``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client.metrics_core import Metric

from ..events import Event, WeightsSet, WindowJudged
from .node import counter, gauge
from .registry import NodeMetrics

if TYPE_CHECKING:
    from ..engines.validator import ValidatorEngine

WINDOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


class ValidatorCollector:
    def __init__(self, validator: "ValidatorEngine") -> None:
        self.validator = validator

    def collect(self) -> Iterable[Metric]:
        v = self.validator
        windows = counter("tensorage_validator_windows_total", ["state"])
        windows.add_metric(["judged"], v.rounds_run)
        windows.add_metric(["void"], v.windows_void)
        last = gauge("tensorage_validator_last_window")
        if v.last_window >= 0:
            last.add_metric([], v.last_window)
        synced = gauge("tensorage_validator_miners_synced")
        synced.add_metric([], len(v.miners))
        proven = gauge("tensorage_validator_miner_proven_bytes", ["uid", "hotkey"])
        score = gauge("tensorage_validator_miner_score", ["uid", "hotkey"])
        scores, _ = v.bounded()
        for s in v.scores.values():
            labels = [str(s.uid), s.hotkey]
            proven.add_metric(labels, s.proven_bytes())
            score.add_metric(labels, scores.get(s.hotkey, 0.0))
        block = gauge("tensorage_validator_weights_block")
        if v.last_weights_block is not None:
            block.add_metric([], v.last_weights_block)
        weight = gauge("tensorage_validator_weight", ["uid"])
        for uid, w in sorted(v.last_weights.items()):
            weight.add_metric([str(uid)], w)
        queue = gauge("tensorage_validator_verifier_queue")
        queue.add_metric([], v.verifier.in_flight)
        faults = counter("tensorage_validator_verifier_faults_total")
        faults.add_metric([], v.verifier.faults)
        return (windows, last, synced, proven, score, block, weight, queue, faults)


class ValidatorEvents:
    def __init__(self, metrics: NodeMetrics, source: str) -> None:
        self.source = source
        self.verdicts = metrics.counter("tensorage_validator_verdicts_total", ["result"])
        self.window_seconds = metrics.histogram("tensorage_validator_window_seconds", buckets=WINDOW_BUCKETS)
        self.weights = metrics.counter("tensorage_validator_weights_set_total", ["result"])
        for result in ("ok", "failed"):
            self.weights.labels(result)  # both shown from the start: a rate of failures reads 0, not nothing
        for result in ("pass", "fail", "timeout", "unreachable"):
            self.verdicts.labels(result)

    def __call__(self, event: Event) -> None:
        if event.source != self.source:
            return
        if isinstance(event, WindowJudged) and not event.void:
            for result, n in event.results.items():
                self.verdicts.labels(result).inc(n)
            self.window_seconds.observe(event.seconds)
        elif isinstance(event, WeightsSet):
            self.weights.labels("ok" if event.ok else "failed").inc()
