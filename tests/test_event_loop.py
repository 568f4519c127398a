"""Issue 9, "no blocking work on an event loop": a stalled reader of a node's event pipe, the miner's
periodic plot recovery (a header read per plot) and node.json's fsyncs never run on the loop.

Each test records which thread did the work; none measures time."""

from __future__ import annotations

import asyncio
import os
import threading

from tensorage.chain.wallets import load_wallet
from tensorage.config import settings_from_namespace
from tensorage.events import EventBus, LogEvent


def settings_for(root, **flags):
    return settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root), "wallet.name": "miner-0",
                                    "db_root_path": str(root / "nodes" / "miner-0"), **flags})


def test_events_to_a_pipe_nobody_reads_never_block_the_publisher():
    """A console that stops reading a node's stdout fills the pipe (64 KiB); the engine publishing
    events must go on. Before, the relay wrote on the publisher's thread and hung there."""
    from tensorage.engines.run import relay_events_as_json

    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    bus = EventBus()
    relay = relay_events_as_json(bus, stream)

    def publish() -> None:
        for i in range(20_000):  # ~2 MB of JSON lines: 30x what the pipe holds
            bus.publish(LogEvent(message=f"event {i} " + "x" * 60))

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    publisher.join(timeout=120)  # a bound for a hung test, not a speed check
    stuck = publisher.is_alive()
    os.close(read_end)  # the reader goes away: the relay's writer gives up
    if hasattr(relay, "close"):
        relay.close()
    assert not stuck, "publishing blocked on a pipe nobody reads"


async def test_periodic_recovery_reads_plot_headers_off_the_event_loop(plotted_devnet, monkeypatch):
    import tensorage.engines.allocator as allocator_module
    from tensorage.engines.allocator import Allocator

    loop_thread = threading.get_ident()
    readers: list[int] = []
    real = allocator_module.verify_header

    def recording(*args, **kwargs):
        readers.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(allocator_module, "verify_header", recording)
    settings = settings_for(plotted_devnet, size_in_gb=0.03)
    allocator = Allocator(settings, load_wallet(settings).hotkey.ss58_address, EventBus())
    try:
        plan = await allocator.reallocate()  # what the miner's reallocate job runs
    finally:
        allocator.close()
    assert len(plan.keep) == 4 and len(readers) >= 4  # every plot's header was read
    assert loop_thread not in readers


async def test_node_state_is_written_off_the_event_loop(plotted_devnet, monkeypatch):
    import tensorage.engines.node as node_module
    from tensorage.engines.run import build_node

    loop_thread = threading.get_ident()
    writers: list[int] = []
    real = node_module.atomic_write

    def recording(path, data):
        writers.append(threading.get_ident())
        return real(path, data)

    monkeypatch.setattr(node_module, "atomic_write", recording)
    miner = build_node("miner", settings_for(plotted_devnet, size_in_gb=0.03, seconds_per_reallocate=3600),
                       EventBus())
    start = getattr(miner, "launch", miner.start)
    await start()
    try:
        for _ in range(3):
            miner.jobs.run_now("sync")  # each run ends with a JobRan, which rewrites node.json
            await asyncio.sleep(0.2)
        for _ in range(100):
            if len(writers) >= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        await getattr(miner, "shutdown", miner.stop)()
    assert writers and loop_thread not in writers
