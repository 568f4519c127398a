"""Proof lookups in worker processes: chiapos holds the GIL, the event loop must not wait on it.

One disk head serves one lookup at a time (a full proof is ~77 random reads; two at once on one
head only thrash), while different disks work in parallel. So lookups queue per disk
(:attr:`PlotTask.disk`) and a free worker takes the next plot of a disk nobody is reading, one plot
per call, never a static chunk. Tasks with no disk named are not queued (any free worker).

Each worker keeps its open provers keyed by (path, inode, mtime) so a replaced or
deleted plot is never answered from a stale file handle.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from ..errors import PlotError
from ..procutil import child_pool
from .challenges import derive

MAX_OPEN_PROVERS = 4096  # each holds a file descriptor; plots beyond this are reopened on use
_PROVERS: "OrderedDict[tuple[str, int, int], object]" = OrderedDict()


@dataclass(frozen=True)
class PlotTask:
    seed: str
    path: str
    plot_id: bytes
    k: int
    disk: str = ""  # the disk (--db_root_path directory) the plot is on: lookups on it queue


def _prover(path: str):
    from . import chia

    st = os.stat(path)  # FileNotFoundError when the plot is gone
    key = (path, st.st_ino, st.st_mtime_ns)
    prover = _PROVERS.get(key)
    if prover is None:
        for stale in [k for k in _PROVERS if k[0] == path]:
            del _PROVERS[stale]
        prover = _PROVERS[key] = chia.open_prover(Path(path))
        while len(_PROVERS) > MAX_OPEN_PROVERS:  # least recently used first: deleted plots age out
            _PROVERS.popitem(last=False)
    else:
        _PROVERS.move_to_end(key)
    return prover


def prove_batch(tasks: list[PlotTask], challenge: bytes, per_plot: int) -> list[tuple[str, int, list[bytes]] | tuple[str, None, str]]:
    """(seed, j, proofs) for every task and j < per_plot; (seed, None, reason) when a plot cannot be read."""
    from . import chia

    out: list = []
    for task in tasks:
        try:
            prover = _prover(task.path)
            for j in range(per_plot):
                out.append((task.seed, j, chia.full_proofs(prover, derive(challenge, task.plot_id, j))))
        except (OSError, PlotError) as exc:
            out.append((task.seed, None, str(exc)))
    return out


def check_plot(path: str, plot_id: bytes, k: int) -> int:
    from .plot_check import verify_plot

    return verify_plot(Path(path), plot_id, k)


Lookup = Callable[[list[PlotTask], bytes, int], list]


class ProverPool:
    """``workers`` lookup processes shared by every disk; at most one lookup per disk at a time.
    ``lookup`` and ``executor`` are for tests that count what runs where."""

    def __init__(self, workers: int, lookup: Lookup = prove_batch, executor: Optional[Executor] = None) -> None:
        self.workers = max(1, workers)
        self.lookup = lookup
        self._pool: Optional[Executor] = executor
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._disk_locks: dict[str, asyncio.Lock] = {}
        self._slots: Optional[asyncio.Semaphore] = None

    @property
    def pool(self) -> Executor:
        if self._pool is None:
            self._pool = child_pool(self.workers)
        return self._pool

    def _queues(self) -> tuple[dict[str, asyncio.Lock], asyncio.Semaphore]:
        """The per-disk queues and the worker slots of the running loop (a pool may outlive one)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop, self._disk_locks, self._slots = loop, {}, asyncio.Semaphore(self.workers)
        return self._disk_locks, self._slots

    async def warm(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, os.getpid) for _ in range(self.workers)))

    async def _run(self, disk: str, call: Callable[[], object]):
        """``call`` in a worker: first in ``disk``'s queue (FIFO), then on the next free worker."""
        locks, slots = self._queues()
        loop = asyncio.get_running_loop()
        if not disk:
            async with slots:
                return await loop.run_in_executor(self.pool, call)
        async with locks.setdefault(disk, asyncio.Lock()):
            async with slots:
                return await loop.run_in_executor(self.pool, call)

    async def prove(self, tasks: list[PlotTask], challenge: bytes, per_plot: int) -> list:
        """(seed, j, proofs) or (seed, None, reason) for every task, in the tasks' order."""
        if not tasks:
            return []
        parts = await asyncio.gather(*(self._run(t.disk, partial(self.lookup, [t], challenge, per_plot))
                                       for t in tasks))
        return [item for part in parts for item in part]

    async def check(self, path: Path, plot_id: bytes, k: int, disk: str = "") -> int:
        """A scrub's sample challenges, queued on the plot's disk like a lookup."""
        return await self._run(disk, partial(check_plot, str(path), plot_id, k))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
