"""Child-process hygiene (kept light: plotting children import it)."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING

PARENT_ENV = "TENSORAGE_PARENT_PID"
PR_SET_PDEATHSIG = 1

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor


def die_with_parent(parent_pid: int | None = None) -> None:
    """For supervised children only: SIGKILL when the parent dies, and Ctrl-C left to the parent.

    A child is supervised when its parent says so: ``parent_pid`` here, or TENSORAGE_PARENT_PID
    in its environment (set by :func:`child_env`). Anything else is a no-op, so `nohup tensorage
    miner &` outlives the shell that started it. If the expected parent is already gone when this
    runs, exit at once. A terminal's Ctrl-C reaches the whole process group; a supervised child
    ignores it (a traceback per child otherwise) and stops when its parent stops it. Children that
    install their own SIGINT handler afterwards (a devnet node) keep theirs.
    """
    expected = parent_pid or int(os.environ.get(PARENT_ENV) or 0)
    if not expected:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected:  # the parent died before prctl took effect
        os._exit(1)


def _pool_child(parent_pid: int, niceness: int) -> None:
    die_with_parent(parent_pid)
    if niceness:
        with contextlib.suppress(OSError):
            os.nice(niceness)


def child_pool(workers: int, niceness: int = 0) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process: spawned, not forked (the event loop
    has threads) nor forkserver (its server would outlive a killed node). ``niceness``: workers
    yield the CPU to this process (a validator reading answers against their deadline)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_pool_child, initargs=(os.getpid(), niceness))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child that should die with this process."""
    return {**os.environ, PARENT_ENV: str(os.getpid()), **(extra or {})}


# glibc serves allocations over 128 KiB with fresh mmaps and returns them on free: every 1 MiB buffer a
# node moves (a shard's bytes through wrap, hash, spool and socket) then costs 256 page faults, which
# measured a third of a gateway's CPU per GiB. Keep them in the heap instead.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_BUFFERS = 64 << 20


def tune_for_bulk_bytes() -> None:
    """A long-running node that moves bulk bytes: big buffers stay in the heap (glibc), and the cyclic
    GC ignores the objects made at start-up and runs less often (it measured 23 % of a gateway's CPU
    scanning a heap of imports per collection)."""
    import gc

    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_BUFFERS)
        libc.mallopt(M_TRIM_THRESHOLD, 4 * HEAP_BUFFERS)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
