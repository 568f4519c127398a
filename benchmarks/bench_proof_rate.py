"""Proofs per challenge per plot, measured with the repo's plotter, against the constants the
estimator assumes (``proofs/plots.py`` ``proof_rate``, ``proofs/windows.py`` ``expected_per_challenge``).

A window credits ``valid / expected`` of a sampled plot's bytes, so an assumed rate that is too
high under-credits every honest miner by the same factor, and one too low over-credits. The rate is
a property of the plot population, not of one plot: plots differ (table-7 entries / 2^k vary), so
the figure that matters is the mean over many plots, and its standard error is the spread of the
per-plot means over sqrt(plots) (which already holds the Poisson noise of the challenges).

For each k it makes ``--plots`` plots bound to a fixed hotkey (``proofs.plotter.run_plot``, the
allocator's own child process, verification off), counts the proofs of each for ``--challenges``
challenges derived as windows derive them (``challenges.derive``; qualities only: a quality is a
full proof), deletes it, and prints the measured mean ± standard error next to the assumed rate, the
capped mean next to ``expected_per_challenge``, and how many standard errors apart they are.

Run: python -m benchmarks.bench_proof_rate [--ks 18,19,20] [--plots 64,32,16] [--challenges 1000]
(defaults: about 3-4 minutes on 2 free cores).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tensorage.proofs import chia
from tensorage.proofs.challenges import derive
from tensorage.proofs.plots import plot_filename, plot_id, proof_rate
from tensorage.proofs.plotter import PlotJob, run_plot
from tensorage.proofs.windows import MAX_PROOFS_PER_CHALLENGE, expected_per_challenge

from .common import report, headline, parse_args

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def count_proofs(path: Path, pid: bytes, challenges: int) -> tuple[float, float]:
    """(mean proofs per challenge, mean capped at MAX_PROOFS_PER_CHALLENGE) of one plot."""
    prover = chia.open_prover(path)
    total = capped = 0
    for j in range(challenges):
        n = len(prover.get_qualities_for_challenge(derive(b"tensorage/bench/rate", pid, j)))
        total += n
        capped += min(n, MAX_PROOFS_PER_CHALLENGE)
    return total / challenges, capped / challenges


async def measure_k(k: int, plots: int, challenges: int, base: Path, parallel: int) -> list[tuple[float, float]]:
    sem = asyncio.Semaphore(parallel)
    out: list[tuple[float, float]] = []

    async def one() -> None:
        seed = os.urandom(32)
        pid = plot_id(HOTKEY, seed)
        job = PlotJob(tmp_root=base / "tmp", final_dir=base, filename=plot_filename(k, seed), k=k, plot_id=pid,
                      threads=1, verify=False)
        async with sem:
            path = (await run_plot(job)).path
            try:
                out.append(await asyncio.to_thread(count_proofs, path, pid, challenges))
            finally:
                path.unlink(missing_ok=True)

    await asyncio.gather(*(one() for _ in range(plots)))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ks", default="18,19,20")
    p.add_argument("--plots", default="64,32,16", help="plots per k (one figure, or one per k)")
    p.add_argument("--challenges", type=int, default=1000, help="challenges counted per plot")
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    a = parse_args(p)
    ks = [int(k) for k in a.ks.split(",")]
    plots = [int(n) for n in a.plots.split(",")]
    plots = plots * len(ks) if len(plots) == 1 else plots
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-rate-"))
    rows = []
    notes = []
    try:
        for k, n in zip(ks, plots):
            t = time.monotonic()
            per_plot = asyncio.run(measure_k(k, n, a.challenges, base, a.parallel))
            means = [m for m, _ in per_plot]
            capped = [c for _, c in per_plot]
            mean, se = statistics.fmean(means), statistics.stdev(means) / math.sqrt(len(means))
            cmean, cse = statistics.fmean(capped), statistics.stdev(capped) / math.sqrt(len(capped))
            assumed, expected = proof_rate(k), expected_per_challenge(k)
            headline(f"k={k} proofs per challenge ({n} plots × {a.challenges} challenges; ± {se:.4f} SE)", mean, "",
                     assumed, "the estimator's assumed rate", "|Δ| ≤ 2 SE", abs(mean - assumed) <= 2 * se)
            rows.append((f"k={k}: proofs / challenge ({n} plots × {a.challenges} challenges)",
                         f"{mean:.4f} ± {se:.4f}", f"{assumed:.3f} assumed", f"{(mean - assumed) / se:+.1f} SE",
                         "|Δ| ≤ 2 SE"))
            rows.append((f"k={k}: capped at {MAX_PROOFS_PER_CHALLENGE} (what a window expects)",
                         f"{cmean:.4f} ± {cse:.4f}", f"{expected:.4f} expected", f"{(cmean - expected) / cse:+.1f} SE",
                         "|Δ| ≤ 2 SE"))
            notes.append(f"k={k}: plot-to-plot sd {statistics.stdev(means):.3f}, min {min(means):.3f}, "
                         f"max {max(means):.3f}; {time.monotonic() - t:.0f}s")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report("proof rate per k: measured with the repo's plotter vs the estimator's constants", rows)
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
