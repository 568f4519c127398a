"""Run an engine headless until SIGINT/SIGTERM: rich logs on stderr, optionally events
as JSON lines on stdout (how a supervised devnet node reports to its supervisor)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Optional

from ..chain import connect
from ..chain.wallets import load_wallet
from ..config import Settings
from ..events import Event, EventBus
from ..logs import log_events, setup_logging
from ..procutil import die_with_parent
from .node import Node


def build_node(role: str, settings: Settings, bus: EventBus, source: Optional[str] = None) -> Node:
    from .miner import MinerEngine
    from .validator import ValidatorEngine

    wallet = load_wallet(settings)
    chain = connect(settings)
    cls = {"miner": MinerEngine, "validator": ValidatorEngine}[role]
    return cls(settings, wallet, chain, bus, source=source)


def relay_events_as_json(bus: EventBus, stream=None) -> None:
    out = stream or sys.stdout

    def write(event: Event) -> None:
        out.write(event.to_json() + "\n")
        out.flush()

    bus.subscribe(write)


async def run_node(node: Node) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.request_stop)
    await node.run_until_stopped()


def main(role: str, settings: Settings, events_jsonl: bool = False, node_factory=build_node) -> int:
    die_with_parent()  # only under a supervisor that asked (devnet up, the console): never for nohup or pm2
    setup_logging(settings.logging.debug, settings.logging.trace)
    bus = EventBus()
    log_events(bus)
    if events_jsonl:
        relay_events_as_json(bus)
    node = node_factory(role, settings, bus)
    asyncio.run(run_node(node))
    return 0
