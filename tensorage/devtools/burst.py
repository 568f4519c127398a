"""One window's burst of lookups, as a miner with hard disks meets it (tests and benchmarks only).

A window samples plots from a miner's listing (``proofs.windows.draw_sample``); each sampled plot is
looked up on the disk that holds it, and the whole burst must arrive within the deadline. The seek
count of a lookup does not depend on k (a proof is 64 x-values from 7 tables whatever the plot size),
so a few small plots served through :class:`~tensorage.devtools.hddfs.EmulatedDisk` stand in for a
disk of k=29 plots: a listing of the real size is sampled, and each sampled entry is looked up (with
its own derived challenge) in one of the small files on the disk its listing index falls on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..proofs.listing import Listing
from ..proofs.plots import plot_id_from_key
from ..proofs.prover_pool import PlotTask, ProverPool
from ..proofs.windows import draw_sample, window_challenge

HOTKEY = "burst-miner"  # the sample only hashes the hotkey; plot ids use a fixed key below
_KEY = hashlib.sha256(b"tensorage/burst/key").digest()


@dataclass(frozen=True)
class Burst:
    challenge: bytes
    per_disk: list[list[PlotTask]]  # the sampled lookups on each disk

    @property
    def lookups(self) -> int:
        return sum(len(tasks) for tasks in self.per_disk)


def window_burst(profile, plots_per_disk: int, listed_k: int, mounts: Sequence[Path], files: Sequence[str],
                 beacon: bytes, window: int = 1) -> Burst:
    """The sample a window draws from ``plots_per_disk * len(mounts)`` listed plots of size
    ``listed_k`` (disk d holds listing indices [d*plots_per_disk, (d+1)*plots_per_disk)), as
    prover tasks on the emulated disks: entry i is file ``files[i % len(files)]`` under its disk's
    mount. The tasks carry the listed plot's id, so each lookup has its own derived challenge."""
    n = plots_per_disk * len(mounts)
    seeds = [hashlib.sha256(b"tensorage/burst/seed" + i.to_bytes(4, "big")).digest() for i in range(n)]
    listing = Listing.from_plots((s, listed_k) for s in seeds)
    index = {seed: i for i, (seed, _) in enumerate(listing.entries())}
    challenge = window_challenge(beacon, window)
    per_disk: list[list[PlotTask]] = [[] for _ in mounts]
    for plot in draw_sample(profile, challenge, HOTKEY, listing):
        i = index[plot.seed]
        disk = i // plots_per_disk
        per_disk[disk].append(PlotTask(seed=plot.seed.hex(), path=str(mounts[disk] / files[i % len(files)]),
                                       plot_id=plot_id_from_key(_KEY, plot.seed), k=plot.k,
                                       disk=str(mounts[disk])))  # the miner's pool queues lookups per disk
    return Burst(challenge, per_disk)


@dataclass(frozen=True)
class Answered:
    seconds: float          # wall time from the first lookup to the last (or to the deadline)
    finished: bool          # every lookup came back before the deadline
    proofs: int             # full proofs found (when finished)
    unreadable: int         # plots that could not be read (when finished)


async def answer(pool: ProverPool, tasks: list[PlotTask], challenge: bytes, per_plot: int,
                 deadline_s: Optional[float] = None) -> Answered:
    """Look ``tasks`` up through the miner's pool (``ProverPool.prove``), stopped at ``deadline_s``.
    After a deadline the pool's workers are still reading: the caller must :func:`stop` the pool."""
    started = time.monotonic()
    try:
        results = await asyncio.wait_for(pool.prove(tasks, challenge, per_plot), deadline_s)
    except asyncio.TimeoutError:
        return Answered(time.monotonic() - started, False, 0, 0)
    seconds = time.monotonic() - started
    return Answered(seconds, True, sum(len(r[2]) for r in results if r[1] is not None),
                    sum(r[1] is None for r in results))


def stop(pool: ProverPool) -> None:
    """Stop a pool whose workers may be mid-lookup (a burst cut at its deadline): kill them, so
    nothing keeps reading the emulated disk, then close it."""
    executor = pool._pool
    if executor is not None:
        procs = list((executor._processes or {}).values())
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.join(timeout=5)
    pool.close()
