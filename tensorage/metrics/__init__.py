"""Prometheus metrics of a running node (docs/operators.md#monitoring): one registry per node,
collectors that read engine state when scraped, served on a port of its own (--metrics.port)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .registry import NodeMetrics
from .server import MetricsServer

if TYPE_CHECKING:
    from ..engines.node import Node

__all__ = ["NodeMetrics", "MetricsServer", "metrics_for"]


def metrics_for(node: "Node") -> tuple[NodeMetrics, list[Callable]]:
    """The node's registry, and the event subscribers that feed its counters (the caller subscribes
    them to the node's bus)."""
    from .node import JobDurations, NodeCollector

    from prometheus_client import ProcessCollector

    metrics = NodeMetrics()
    metrics.add(NodeCollector(node))
    metrics.add(ProcessCollector(registry=None), in_thread=True)  # memory, CPU, open files (against LimitNOFILE)
    subscribers: list[Callable] = [JobDurations(metrics, node.source)]
    if node.role == "miner":
        from .miner import MinerCollector, MinerEvents, MinerStorageCollector

        metrics.add(MinerCollector(node))  # type: ignore[arg-type]
        metrics.add(MinerStorageCollector(node), in_thread=True)  # type: ignore[arg-type]
        subscribers.append(MinerEvents(metrics, node.source))
    elif node.role == "validator":
        from .validator import ValidatorCollector, ValidatorEvents

        metrics.add(ValidatorCollector(node))  # type: ignore[arg-type]
        subscribers.append(ValidatorEvents(metrics, node.source))
        gateway = getattr(node, "gateway", None)
        if gateway is not None:
            from .gateway import GatewayCollector, GatewayEvents

            metrics.add(GatewayCollector(gateway), in_thread=True)
            subscribers.append(GatewayEvents(metrics, node.source))
    return metrics, subscribers
