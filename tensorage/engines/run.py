"""Run an engine headless until SIGINT/SIGTERM: rich logs on stderr, optionally events
as JSON lines on stdout (how a supervised devnet node reports to its supervisor)."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections import deque
from typing import Optional, TextIO

from ..chain import connect
from ..chain.wallets import load_wallet
from ..config import Settings
from ..events import Event, EventBus, LogEvent
from ..logs import log_events, setup_logging_for
from ..net.address import plan_axon
from ..storage.layout import Layout
from ..storage.lock import refuse_if_held
from ..procutil import die_with_parent, tune_for_bulk_bytes
from .node import Node


def build_node(role: str, settings: Settings, bus: EventBus, source: Optional[str] = None) -> Node:
    from .miner import MinerEngine
    from .validator import ValidatorEngine

    plan_axon(settings)  # an address validators cannot reach is refused before the wallet or the chain
    for root in settings.db_roots if role == "miner" else [settings.db_root]:
        Layout(root).check_writable_target()  # a file or /proc/x is refused in one line, before any mkdir
    refuse_if_held(Layout(settings.db_root), role)  # a second copy opens none of the running node's files
    wallet = load_wallet(settings)
    chain = connect(settings)
    cls = {"miner": MinerEngine, "validator": ValidatorEngine}[role]
    return cls(settings, wallet, chain, bus, source=source)


class EventRelay:
    """Engine events as JSON lines on a pipe (how a supervised node reports to its supervisor),
    written by a thread of its own: a reader that stalls (a busy console) fills the pipe, and then
    only this thread waits, never the engine's event loop. Past ``capacity`` waiting lines the
    oldest are dropped, and the reader is told how many."""

    def __init__(self, bus: EventBus, stream: TextIO, capacity: int = 10_000) -> None:
        self.stream = stream
        self.lines: deque[str] = deque(maxlen=capacity)
        self.dropped = 0
        self._ready = threading.Condition()
        self._closing = False
        self._unsubscribe = bus.subscribe(self)
        self._thread = threading.Thread(target=self._write, name="event-relay", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        line = event.to_json()
        with self._ready:
            if len(self.lines) == self.lines.maxlen:
                self.dropped += 1
            self.lines.append(line)
            self._ready.notify()

    def _write(self) -> None:
        while True:
            with self._ready:
                while not self.lines and not self._closing:
                    self._ready.wait()
                if not self.lines and self._closing:
                    return
                batch, dropped = list(self.lines), self.dropped
                self.lines.clear()
                self.dropped = 0
            if dropped:
                note = LogEvent(message=f"{dropped} events dropped: the reader of this node's events fell behind",
                                severity="warning")
                batch.insert(0, note.to_json())
            try:
                self.stream.write("".join(line + "\n" for line in batch))
                self.stream.flush()
            except (OSError, ValueError):  # the reader is gone: nothing left to tell
                return

    def close(self, timeout: float = 2.0) -> None:
        """Stop relaying; give the writer a moment to deliver what is queued."""
        self._unsubscribe()
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout)


def relay_events_as_json(bus: EventBus, stream: Optional[TextIO] = None) -> EventRelay:
    return EventRelay(bus, stream or sys.stdout)


# What a stop leaves behind, by role (said when SIGINT/SIGTERM arrives).
STOPPING = {
    "miner": "a plot being made is undone; finished plots stay",
    "validator": "a proof window in flight is left unscored; scores, weights and client data stay",
}


async def run_node(node: Node) -> None:
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        node.bus.log(f"{sig.name}: stopping ({STOPPING.get(node.role, 'its state is kept')})", source=node.source)
        node.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    await node.run_until_stopped()


def main(role: str, settings: Settings, events_jsonl: bool = False, node_factory=build_node) -> int:
    die_with_parent()  # only under a supervisor that asked (devnet up, the console): never for nohup or pm2
    setup_logging_for(settings.logging, role, settings.wallet.name)
    bus = EventBus()
    log_events(bus)
    relay = relay_events_as_json(bus) if events_jsonl else None
    try:
        node = node_factory(role, settings, bus)
        tune_for_bulk_bytes()  # after the imports and the node's making: what exists now is never garbage
        asyncio.run(run_node(node))
    finally:
        if relay is not None:
            relay.close()
    return 0
