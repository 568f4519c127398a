"""A node whose wall clock is off: ``python -m tests.faults.skewed_clock tensorage miner ...``.

The offset in seconds is read from the file named by ``TENSORAGE_TEST_CLOCK_FILE`` (missing or
empty: 0) at most every 0.2 s, so a test turns the skew on and off while the node runs, as NTP
would. Only the wall clock moves (``time.time``, ``time.time_ns``, what request signing and
freshness checks read); monotonic clocks and the scheduler's timers keep real time."""

from __future__ import annotations

import os
import sys
import time

_real_time, _real_time_ns, _real_mono = time.time, time.time_ns, time.monotonic
_cache = {"at": float("-inf"), "offset": 0.0}


def offset() -> float:
    now = _real_mono()
    if now - _cache["at"] > 0.2:
        try:
            with open(os.environ["TENSORAGE_TEST_CLOCK_FILE"]) as f:
                text = f.read().strip()
            _cache["offset"] = float(text) if text else 0.0
        except (OSError, KeyError, ValueError):
            _cache["offset"] = 0.0
        _cache["at"] = now
    return _cache["offset"]


def skewed_time() -> float:
    return _real_time() + offset()


def skewed_time_ns() -> int:
    return _real_time_ns() + int(offset() * 1e9)


class RealTime:
    """The time module as it was before the skew."""

    time = staticmethod(_real_time)
    time_ns = staticmethod(_real_time_ns)

    def __getattr__(self, name: str):
        return getattr(time, name)


def skewed_pool_child(*args: object) -> None:
    """A node's spawned children (its signing child above all: it stamps the window requests' nonces)
    read the same machine clock as the node, so they are skewed too."""
    time.time, time.time_ns = skewed_time, skewed_time_ns
    from tensorage import procutil

    procutil._pool_child(*args)  # the child's own, unpatched initializer


def main() -> None:
    time.time, time.time_ns = skewed_time, skewed_time_ns
    from tensorage import procutil

    procutil._pool_child = skewed_pool_child  # child_pool's initializer, pickled by name for the spawned child
    assert sys.argv[1] == "tensorage", "usage: python -m tests.faults.skewed_clock tensorage <command> ..."
    sys.argv = sys.argv[1:]
    import tensorage.chain.devnet as devnet
    import tensorage.chain.devnet_faults as devnet_faults
    from tensorage.cli import main as tensorage_main

    # the devnet derives blocks from the wall clock of whoever reads it; a real chain's blocks do
    # not move with a node's clock, so the devnet keeps real time here
    devnet.time = devnet_faults.time = RealTime()  # type: ignore[assignment]

    tensorage_main()


if __name__ == "__main__":
    main()
