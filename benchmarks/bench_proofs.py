"""Proof verification rate and proof lookup from a cold vs a warm page cache.

* verification: proofs verified per second on one core (target >= 10,000), against a
  baseline of sha256 over the same proof bytes in the same loop (the floor any check pays).
* lookup: a full proof (qualities + get_full_proof) with the plot evicted from the page
  cache (posix_fadvise DONTNEED) vs the same lookups warm.

Run: python -m benchmarks.bench_proofs [--k 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tensorage.proofs import chia
from tensorage.proofs.challenges import derive
from tensorage.proofs.plots import plot_filename, plot_id
from tensorage.proofs.plotter import PlotJob, run_plot

from .common import report, headline, parse_args

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def lookups(path: Path, pid: bytes, start: int, n: int, cold: bool) -> list[float]:
    times = []
    for j in range(start, start + n):
        if cold:
            evict(path)
        prover = chia.open_prover(path)  # a fresh prover: its header is read again too
        c = derive(b"bench", pid, j)
        t = time.perf_counter()
        proofs = chia.full_proofs(prover, c)
        if proofs:
            times.append((time.perf_counter() - t) / len(proofs))
    return times


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--challenges", type=int, default=3000)
    a = parse_args(p)
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        seed = os.urandom(32)
        pid = plot_id(HOTKEY, seed)
        job = PlotJob(tmp_root=base / "tmp", final_dir=base, filename=plot_filename(a.k, seed), k=a.k, plot_id=pid,
                      threads=os.cpu_count() or 1, verify=False)
        path = asyncio.run(run_plot(job)).path
        prover = chia.open_prover(path)
        items = []
        for j in range(a.challenges):
            c = derive(b"verify", pid, j)
            items.extend((c, proof) for proof in chia.full_proofs(prover, c))
        best_v, best_h = 0.0, 0.0
        for _ in range(3):
            t = time.perf_counter()
            ok = sum(chia.verify(pid, a.k, c, proof) for c, proof in items)
            best_v = max(best_v, len(items) / (time.perf_counter() - t))
            t = time.perf_counter()
            for c, proof in items:
                hashlib.sha256(pid + c + proof).digest()
            best_h = max(best_h, len(items) / (time.perf_counter() - t))
        assert ok == len(items)
        warm = lookups(path, pid, 10_000, 200, cold=False)
        cold = lookups(path, pid, 20_000, 60, cold=True)
        mw, mc = statistics.median(warm) * 1000, statistics.median(cold) * 1000
        report(f"proofs (k={a.k}, {len(items)} proofs)", [
            ("verified proofs / s / core", f"{best_v:,.0f}", f"{best_h:,.0f} sha256/s", f"{best_v / best_h:.3f}",
             "≥ 10,000/s"),
            ("full proof lookup, cold page cache (median)", f"{mc:.2f} ms", f"{mw:.2f} ms warm", f"{mc / mw:.2f}×", ""),
        ])
        headline(f"verified proofs/s on one core (k={a.k})", best_v, "/s", best_h, "sha256 of the same bytes",
                 "≥ 10,000/s", best_v >= 10_000)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
