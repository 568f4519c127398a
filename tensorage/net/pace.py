"""A floor on an upload's average rate, so a peer cannot hold an upload slot with a trickle.

An idle bound alone (nothing for 60 s) lets a peer keep a slot for ever by sending a byte every
59 s: the miner has a few slots per gateway and the gateway two per client, so a handful of such
connections starve honest uploads. After a grace period the bytes received must keep up with
``MIN_BYTES_PER_S`` on average; a peer on a slow link still gets ``GRACE_S`` plus the time its
bytes need at the floor rate. 32 KiB/s (256 kbit/s) is below any link a node can be run on: a
16 MiB shard at the floor takes 522 s.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Awaitable, Callable, Optional, TypeVar

T = TypeVar("T")

MIN_BYTES_PER_S = 32 << 10
GRACE_S = 10.0


class TooSlow(Exception):
    """The upload fell below the floor rate (or went idle): the caller answers 408."""


class Pace:
    """Counts only the time spent waiting for the peer: time the node spends on its own work between
    reads (hashing, writing, placing a segment at miners) is not the peer's to make up."""

    def __init__(self, idle_s: float, min_bytes_per_s: Optional[float] = None, grace_s: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s, self.clock = idle_s, clock
        self.min_rate = MIN_BYTES_PER_S if min_bytes_per_s is None else min_bytes_per_s
        self.grace_s = GRACE_S if grace_s is None else grace_s
        self.waited = 0.0
        self.received = 0

    def timeout_for(self, more: int) -> float:
        """Seconds the next ``more`` bytes may take: until the average would fall below the floor
        once they are in, and never more than the idle bound. At most 0 means too slow already."""
        return min(self.idle_s, self.grace_s + (self.received + more) / self.min_rate - self.waited)

    async def read(self, more: int, receive: Awaitable[T]) -> T:
        """Await ``receive`` (bringing up to ``more`` bytes) within the floor: :class:`TooSlow` if
        the peer is too slow. The caller counts what arrived with :meth:`got`."""
        left = self.timeout_for(more)
        began = self.clock()
        try:
            if left <= 0:
                raise TimeoutError
            async with asyncio.timeout(left):
                return await receive
        except TimeoutError:
            raise TooSlow(self.why()) from None
        finally:
            if left <= 0 and inspect.iscoroutine(receive):
                receive.close()  # never awaited: no "coroutine was never awaited" warning
            self.waited += self.clock() - began

    def got(self, n: int) -> None:
        self.received += n

    def why(self) -> str:
        return (f"{self.received} bytes in {self.waited:.0f}s of waiting is below the floor of "
                f"{self.min_rate / 1024:.0f} KiB/s, or nothing came for {self.idle_s:.0f}s: send the upload "
                f"without pausing, on a faster link")
