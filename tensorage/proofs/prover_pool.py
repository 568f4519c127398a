"""Proof lookups in worker processes: chiapos holds the GIL, the event loop must not wait on it.

Each worker keeps its open provers keyed by (path, inode, mtime) so a replaced or
deleted plot is never answered from a stale file handle.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

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


class ProverPool:
    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: Optional[ProcessPoolExecutor] = None

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = child_pool(self.workers)
        return self._pool

    async def warm(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, os.getpid) for _ in range(self.workers)))

    async def prove(self, tasks: list[PlotTask], challenge: bytes, per_plot: int) -> list:
        if not tasks:
            return []
        loop = asyncio.get_running_loop()
        chunks = [tasks[i::self.workers] for i in range(min(self.workers, len(tasks)))]
        parts = await asyncio.gather(*(loop.run_in_executor(self.pool, partial(prove_batch, c, challenge, per_plot))
                                       for c in chunks))
        return [item for part in parts for item in part]

    async def check(self, path: Path, plot_id: bytes, k: int) -> int:
        return await asyncio.get_running_loop().run_in_executor(self.pool, check_plot, str(path), plot_id, k)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
