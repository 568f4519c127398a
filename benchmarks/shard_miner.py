"""A storage-only miner for the client-data benchmarks: the real MinerEngine (signed server, shard
store, per-validator indexes, room accounting) with plotting switched off, so the whole share is
room for shards and no plotting competes for the 2 cores during a measurement.

    python -m benchmarks.shard_miner <tensorage miner flags>
"""

from __future__ import annotations

import argparse
import sys

from tensorage.config import add_axon_flags, add_common_flags, settings_from_namespace
from tensorage.engines.miner import MinerEngine
from tensorage.engines.run import build_node, main as run_main


class ShardOnlyMiner(MinerEngine):
    async def reallocate(self) -> str:
        return "benchmark: no plots, the share is all shards"

    async def scrub(self) -> str:
        return "benchmark: no scrub"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.shard_miner")
    p.add_argument("--events", default=None)
    add_common_flags(p)
    add_axon_flags(p)
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if k != "events"}
    settings = settings_from_namespace(args)

    def factory(role, settings, bus, source=None):
        node = build_node("miner", settings, bus, source=source)
        node.__class__ = ShardOnlyMiner
        return node

    return run_main("miner", settings, events_jsonl=False, node_factory=factory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
