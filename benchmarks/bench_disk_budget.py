"""A miner's disk time under proof windows: random reads per TB-hour at finney's constants.

* measured 1: read syscalls per chiapos lookup (``/proc/self/io`` syscr around
  ``get_qualities_for_challenge`` and ``get_full_proof``) on real plots of k=18..20. Each
  read is a seek on a hard disk (the page cache hides none of them from this count).
* measured 2: the lookups the protocol triggers. A real miner (MinerEngine on a devnet, four
  k=18 plots, its proof workers in their own processes) answers one window for 1 validator
  and then one window for 64 validators (64 registered hotkeys with permits, each a signed
  request); the read syscalls of its proof workers are counted with psutil.
* the figure: 20 TB of k=29 plots at finney's window, sample and J, reads/s from the measured
  reads per lookup, against one hard disk's ~120 random reads/s. Target <= 10 % of one disk
  at 64 validators.
* baseline: protocol 1 (every validator challenged every plot at least hourly on its own,
  J=4), the same arithmetic.

Run: python -m benchmarks.bench_disk_budget [--challenges 300]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.devnet_init import init_devnet
from tensorage.chain.wallets import create_wallet
from tensorage.config import PROFILES
from tensorage.net.client import SignedClient
from tensorage.net.messages import WindowChallenge
from tensorage.proofs import chia
from tensorage.proofs.plots import estimated_plot_bytes, plot_filename, plot_id, proof_rate
from tensorage.proofs.plotter import PlotJob, run_plot
from tensorage.proofs.windows import expected_per_challenge, sample_size, window_of, window_start

from .common import report
from .harness import make_plots, start_miner, stop_miner

HDD_READS_PER_S = 120.0
TB = 10**12


def syscr() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("syscr"):
                return int(line.split()[1])
    raise RuntimeError("no syscr in /proc/self/io")


async def reads_per_lookup(base: Path, k: int, challenges: int) -> tuple[float, float, int]:
    """(reads per qualities lookup, reads per full proof, proofs found) on a fresh plot of size k."""
    seed = hashlib.sha256(b"bench-disk" + bytes([k])).digest()
    hotkey = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    job = PlotJob(tmp_root=base / "tmp", final_dir=base, filename=plot_filename(k, seed), k=k,
                  plot_id=plot_id(hotkey, seed), threads=2, verify=False)
    path = (await run_plot(job)).path
    prover = chia.open_prover(path)
    q_reads = p_reads = proofs = 0
    for i in range(challenges):
        c = hashlib.sha256(b"c" + i.to_bytes(4, "big")).digest()
        before = syscr()
        qualities = prover.get_qualities_for_challenge(c)
        q_reads += syscr() - before
        for j in range(len(qualities)):
            before = syscr()
            prover.get_full_proof(c, j)
            p_reads += syscr() - before
            proofs += 1
    path.unlink()
    return q_reads / challenges, p_reads / max(1, proofs), proofs


async def window_reads(root: Path, validators: int) -> tuple[int, int, int, int, int]:
    """(read syscalls of the miner's proof workers, lookups computed, requests answered, plots
    sampled, proofs found) for one window asked by ``validators`` validators at once."""
    spec = SubnetSpec.load(root)
    miner_node = spec.of_role("miner")[0]
    engine = await start_miner(root, miner_node.name, root / "nodes" / miner_node.name)
    chain = Devnet.open(root)
    try:
        wallets = [create_wallet(root / "wallets", f"v{i}") for i in range(validators)]
        clients = [SignedClient(w) for w in wallets]
        workers = [psutil.Process(p.pid) for p in engine.pool.pool._processes.values()]
        # the next window with time to spare
        while True:
            head = chain.block()
            w = window_of(head, engine.profile) + 1
            start = window_start(w, engine.profile)
            begins = chain.block_timestamp(head) + (start - head) * chain.block_time()
            await asyncio.sleep(max(0.0, begins - time.time() + 0.05))
            if window_of(chain.block(), engine.profile) == w:
                break
        body = WindowChallenge(window=w, beacon=chain.block_hash(start).hex(), listing=engine.current_listing().hex,
                               deadline=chain.block_timestamp(start) + engine.profile.challenge_deadline_s)
        raw = body.model_dump_json().encode()
        before = sum(p.io_counters().read_count for p in workers)
        computed = engine.answerer.computed
        replies = await asyncio.gather(*(c.request("POST", "127.0.0.1", engine.served.port, "/v1/challenge",
                                                   receiver=engine.hotkey, body=raw, deadline=body.deadline)
                                         for c in clients))
        reads = sum(p.io_counters().read_count for p in workers) - before
        ok = sum(r.status == 200 for r in replies)
        if ok < len(replies):
            print("refused:", {r.error_message for r in replies if r.status != 200})
        for c in clients:
            await c.close()
        plots, proofs = engine.answerer.sizes[(w, body.listing)]
        return reads, engine.answerer.computed - computed, ok, plots, proofs
    finally:
        chain.close()
        await stop_miner(engine)


async def run(a: argparse.Namespace, base: Path) -> None:
    per_k = {k: await reads_per_lookup(base / f"k{k}", k, a.challenges) for k in (18, 19, 20)[:a.sizes]}
    q_reads = sum(v[0] for v in per_k.values()) / len(per_k)
    p_reads = sum(v[1] for v in per_k.values()) / len(per_k)
    for k, (q, p, n) in per_k.items():
        print(f"k={k}: {q:.1f} reads per qualities lookup, {p:.1f} per full proof ({n} proofs over "
              f"{a.challenges} challenges)")

    root = base / "devnet"
    init_devnet(root, miners=1, validators=1)
    chain = Devnet.open(root)
    try:  # 64 validators with permits
        for i in range(64):
            w = create_wallet(root / "wallets", f"v{i}")
            chain.register(w.hotkey.ss58_address, w.coldkeypub.ss58_address)
            chain.add_stake(w.hotkey.ss58_address, 5000.0 + i)  # the 64 permits go to these
    finally:
        chain.close()
    spec = SubnetSpec.load(root)
    miner = spec.of_role("miner")[0]
    await make_plots([(root / "nodes" / miner.name, spec.wallet(root, miner).hotkey.ss58_address, 4)])
    j = PROFILES["devnet"].challenges_per_plot
    runs = {n: await window_reads(root, n) for n in (1, 64)}
    for n, (reads, lookups, answers, plots, proofs) in runs.items():
        model = plots * j * q_reads + proofs * p_reads
        print(f"{n:2d} validator(s) asking one window: {answers} answers from {lookups} lookup of {plots} plots x "
              f"J={j} ({proofs} proofs): {reads} reads measured, {model:.0f} by reads per lookup")

    f = PROFILES["finney"]
    k = f.min_k
    n = int(20 * TB // estimated_plot_bytes(k))
    s = sample_size(n, f)
    per_challenge = q_reads + expected_per_challenge(k) * p_reads
    windows_per_h = 3600 / f.window_s
    scale = runs[64][1] / runs[1][1]  # measured: lookups a window for 64 validators over 1
    v2_1 = s * f.challenges_per_plot * per_challenge * windows_per_h / 3600
    v2_64 = v2_1 * scale
    v1_1 = n * 1.0 * 4 * (q_reads + proof_rate(k) * p_reads) / 3600  # each plot hourly, J=4, per validator
    v1_64 = 64 * v1_1
    report(f"miner disk reads for 20 TB of k={k} plots ({n} plots) at finney constants: window {f.window_s:.0f} s, "
           f"{s} plots sampled a window, J={f.challenges_per_plot}", [
               ("reads/s, 1 validator", f"{v2_1:.1f}", f"{HDD_READS_PER_S:.0f} (one hard disk)",
                f"{v2_1 / HDD_READS_PER_S:.1%}", "≤ 10 %"),
               ("reads/s, 64 validators", f"{v2_64:.1f}", f"{HDD_READS_PER_S:.0f} (one hard disk)",
                f"{v2_64 / HDD_READS_PER_S:.1%}", "≤ 10 %"),
               ("reads/s, 64 validators, protocol 1", f"{v1_64:.0f}", f"{HDD_READS_PER_S:.0f} (one hard disk)",
                f"{v1_64 / HDD_READS_PER_S:.0%}", ""),
               ("reads/s, 1 validator, protocol 1", f"{v1_1:.0f}", f"{HDD_READS_PER_S:.0f} (one hard disk)",
                f"{v1_1 / HDD_READS_PER_S:.0%}", ""),
               ("reads per TB-hour, 64 validators", f"{v2_64 * 3600 / 20:.0f}", f"{v1_64 * 3600 / 20:.0f} protocol 1",
                f"{v2_64 / v1_64:.3f}", ""),
           ])
    print(f"reads per lookup: {q_reads:.1f} (qualities), {p_reads:.1f} (full proof), measured at k=18..20 and "
          f"taken as constant in k (64 x-values a proof); 64 validators cost {scale:.2f}x the lookups of one "
          f"(measured). Rebuilding a k={k} plot on demand at {f.plot_challenges_per_hour} challenges a "
          f"plot-hour costs ~20x storing it (tensorage/config.py).")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--challenges", type=int, default=300)
    p.add_argument("--sizes", type=int, default=3, help="plot sizes measured, from k=18")
    a = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        asyncio.run(run(a, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
