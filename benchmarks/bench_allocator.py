"""Allocator overhead and worker scaling.

* overhead: wall time of plan + plot + verify of N plots through the allocator engine
  (the same code `tensorage allocate` runs) vs chiapos `create_plot_disk` called directly
  for the same k values in this process. Target: direct / allocator >= 0.95.
* workers: plots/hour with --workers 1 and 2 on the same share.

Run: python -m benchmarks.bench_allocator [--plots 6] [--k 19]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from tensorage.chain.devnet_init import init_devnet
from tensorage.chain.wallets import load_wallet
from tensorage.config import settings_from_namespace
from tensorage.engines.allocator import Allocator
from tensorage.proofs import chia
from tensorage.proofs.plots import estimated_plot_bytes, peak_bytes

from .common import report, timer, headline, parse_args


def direct_chiapos(root: Path, ks: list[int], threads: int) -> float:
    """The baseline: chiapos called directly, output silenced the same way (fd 1 to /dev/null)."""
    root.mkdir(parents=True, exist_ok=True)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with timer() as t:
            for i, k in enumerate(ks):
                chia.create_plot(root, root, f"direct-{i}.plot", k, os.urandom(32), threads)
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
    return t[0]


def share_for(ks: list[int], parallel: int) -> float:
    """A share (GB) that holds these plots and lets ``parallel`` of them be built at once."""
    finals = sum(estimated_plot_bytes(k) for k in ks)
    return (finals + parallel * peak_bytes(max(ks))) / 0.9 / 1e9


def allocator_run(base: Path, ks: list[int], workers: int, verify: bool) -> tuple[float, int]:
    devnet = base / "devnet"
    if not devnet.exists():
        init_devnet(devnet, miners=1, validators=1)
    db_root = base / f"node-w{workers}-{'v' if verify else 'nv'}"
    shutil.rmtree(db_root, ignore_errors=True)
    # the planner fills the share largest-first; cap it to exactly these plots
    settings = settings_from_namespace({
        "subtensor.network": "devnet", "devnet.root": str(devnet), "wallet.name": "miner-0",
        "db_root_path": str(db_root), "size_in_gb": share_for(ks, workers), "workers": workers,
        "disable_verify": not verify, "disable_prompt": True,
    })
    allocator = Allocator(settings, load_wallet(settings).hotkey.ss58_address)
    with timer() as t:
        plan = allocator.plan()
        plan.add = list(ks)  # same plots as the baseline
        allocator.recover()
        allocator._apply(plan)
        done = asyncio.run(allocator._make_plots())
    shutil.rmtree(db_root, ignore_errors=True)
    allocator.close()
    return t[0], done.plots


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--plots", type=int, default=4)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2, help="alternate baseline and allocator runs, keep the best")
    a = parse_args(p)
    ks = [a.k] * a.plots
    cpus = os.cpu_count() or 1
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    direct, alloc_v, alloc_nv = [], [], []
    try:
        for _ in range(a.rounds):  # interleaved so drift on a shared machine hits both sides
            direct.append(direct_chiapos(base / "direct", ks, threads=cpus))
            alloc_v.append(allocator_run(base, ks, workers=1, verify=True)[0])
            alloc_nv.append(allocator_run(base, ks, workers=1, verify=False)[0])
        d, v, nv = min(direct), min(alloc_v), min(alloc_nv)
        w2, n2 = allocator_run(base, ks, workers=2, verify=False)
        per_plot = (v - d) / a.plots
        rows = [
            (f"{a.plots}×k{a.k}: allocator (plan+plot+verify) vs direct chiapos", f"{v:.2f}s", f"{d:.2f}s",
             f"{d / v:.3f}", "≥ 0.95"),
            (f"{a.plots}×k{a.k}: allocator (plan+plot, --disable_verify) vs direct", f"{nv:.2f}s", f"{d:.2f}s",
             f"{d / nv:.3f}", "≥ 0.95"),
            ("overhead per plot (child process, verify)", f"{per_plot * 1000:.0f} ms", "", "", ""),
            ("plots/hour, 1 worker", f"{a.plots / nv * 3600:.0f}", "", "1.00", ""),
            ("plots/hour, 2 workers", f"{n2 / w2 * 3600:.0f}", f"{a.plots / nv * 3600:.0f}",
             f"{(n2 / w2) / (a.plots / nv):.2f}", f"≤ {min(2, cpus)} on {cpus} cores"),
        ]
        report("allocator", rows)
        headline(f"plots/hour through the allocator (plan+plot+verify, {a.plots}×k{a.k}) / direct chiapos",
                 d / v, "", 1.0, "direct chiapos create_plot_disk", "≥ 0.95", d / v >= 0.95,
                 note=f"{v:.2f} s vs {d:.2f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
