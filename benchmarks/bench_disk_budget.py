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
* the burst (issue 14): one window's sampled lookups must fit the deadline on the disk that holds
  them. For single-disk miners of 4, 10 and 20 TB of k=29 and k=32 plots, and an 80 TB miner on 4
  disks of 20 TB, the read-count arithmetic (plots sampled x ~77 reads / 120 reads/s) next to the
  emulated seconds per disk measured through a FUSE hard disk (tensorage.devtools.hddfs: 8 ms a
  seek, one head, no page cache), with real chiapos lookups through ``ProverPool.prove`` (one
  process per disk, each disk its own mount, in parallel), against the deadline and half of it.
  The 80 TB miner also through its pool as built (MinerEngine: 2 workers, tasks striped over all
  disks). Baseline: the same 20 TB disk at the constants before issue 14 (25-block windows: 40 plots).
  k=18 plots stand in for k=29: a lookup's seek count does not depend on k.

Run: python -m benchmarks.bench_disk_budget [--challenges 300] [--windows 3] [--burst-only | --no-burst]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import statistics
import shutil
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.devnet_init import init_devnet
from tensorage.chain.wallets import create_wallet
from tensorage.config import PROFILES, NetworkProfile
from tensorage.devtools.burst import answer, window_burst
from tensorage.devtools.hddfs import SEEK_S, EmulatedDisk, fuse_unavailable
from tensorage.net.client import SignedClient
from tensorage.net.messages import WindowChallenge
from tensorage.proofs import chia
from tensorage.proofs.plots import estimated_plot_bytes, plot_filename, plot_id, proof_rate
from tensorage.proofs.plotter import PlotJob, run_plot
from tensorage.proofs.prover_pool import ProverPool
from tensorage.proofs.windows import expected_per_challenge, sample_size, window_of, window_start

from .common import console, report, headline, parse_args
from .harness import make_plots, start_miner, stop_miner

HDD_READS_PER_S = 120.0
READS_PER_LOOKUP = 77  # ~10 for the qualities + ~67 for ~1 full proof (tensorage/config.py)
TB = 10**12
MINER_WORKERS = 4  # MinerEngine's proof workers on 4 disks: one per disk (Settings.proof_processes)
BEFORE_ISSUE_14 = dataclasses.replace(PROFILES["finney"], window_blocks=25, max_sample_plots=4096)


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
        body = WindowChallenge(window=w, beacon=chain.block_hash(start).hex(),
                               listing=engine.current_listing().digest_hex,
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
    headline(f"miner disk reads/s, 20 TB of k={k} plots at finney, 64 validators", v2_64, "reads/s", v1_64,
             "protocol 1 (every validator on its own)", f"≤ 10 % of {HDD_READS_PER_S:.0f}/s",
             v2_64 <= 0.10 * HDD_READS_PER_S, note=f"{v2_64 / HDD_READS_PER_S:.1%} of one hard disk")
    print(f"reads per lookup: {q_reads:.1f} (qualities), {p_reads:.1f} (full proof), measured at k=18..20 and "
          f"taken as constant in k (64 x-values a proof); 64 validators cost {scale:.2f}x the lookups of one "
          f"(measured). Rebuilding a k={k} plot on demand at {f.plot_challenges_per_hour} challenges a "
          f"plot-hour costs ~20x storing it (tensorage/config.py).")


# --- the burst: one window's lookups on emulated hard disks -------------------------------------

@dataclasses.dataclass
class BurstCase:
    what: str
    profile: NetworkProfile
    tb_per_disk: int
    k: int
    disks: int
    windows: int
    miner_pool: bool = False  # the miner's own pool: one process per disk, lookups queued per disk

    @property
    def plots_per_disk(self) -> int:
        return int(self.tb_per_disk * TB // estimated_plot_bytes(self.k))


def burst_cases(windows: int, old_windows: int) -> list[BurstCase]:
    f = PROFILES["finney"]
    cases = [BurstCase(f"{tb} TB k={k}, 1 disk", f, tb, k, 1, windows) for k in (29, 32) for tb in (4, 10, 20)]
    cases += [BurstCase(f"80 TB k={k}, 4 disks of 20 TB", f, 20, k, 4, windows) for k in (29, 32)]
    cases.append(BurstCase(f"80 TB k=29, 4 disks, the miner's pool ({MINER_WORKERS} workers, queued per disk)", f, 20,
                           29, 4, windows, miner_pool=True))
    if old_windows:
        cases.append(BurstCase("20 TB k=29, 1 disk, 25-block windows (before)", BEFORE_ISSUE_14, 20, 29, 1,
                               old_windows))
    return cases


async def _plots_for_burst(base: Path, n: int = 4) -> list[str]:
    """n k=18 plots (fixed seeds) in ``base``; their file names."""
    jobs = []
    for i in range(n):
        seed = hashlib.sha256(b"bench-disk-burst" + bytes([i])).digest()
        jobs.append(run_plot(PlotJob(tmp_root=base / "tmp", final_dir=base, filename=plot_filename(18, seed), k=18,
                                     plot_id=plot_id("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", seed),
                                     threads=1, verify=False)))
    return sorted(r.path.name for r in await asyncio.gather(*jobs))


async def _one_window(case: BurstCase, w: int, disks: list[EmulatedDisk], pools: list[ProverPool],
                      miner_pool: ProverPool, files: list[str]) -> list[tuple[int, int, float, float, int]]:
    """(lookups, proofs, emulated s, wall s, seeks) of each disk for window ``w``: one prover process
    per disk, in parallel; or (``case.miner_pool``) every lookup through one pool as MinerEngine does
    (its proofs are all counted on the first disk, its wall time on every disk)."""
    mounts = [d.mountpoint for d in disks[:case.disks]]
    burst = window_burst(case.profile, case.plots_per_disk, case.k, mounts, files,
                         hashlib.sha256(b"bench-disk-burst/beacon" + w.to_bytes(4, "big")).digest())
    before = [d.stats() for d in disks[:case.disks]]
    if case.miner_pool:
        every = [t for tasks in burst.per_disk for t in tasks]
        one = await answer(miner_pool, every, burst.challenge, case.profile.challenges_per_plot)
        answers = [one] + [dataclasses.replace(one, proofs=0)] * (case.disks - 1)
    else:
        answers = await asyncio.gather(*(answer(pool, tasks, burst.challenge, case.profile.challenges_per_plot)
                                         for pool, tasks in zip(pools, burst.per_disk)))
    out = []
    for tasks, a, disk, b in zip(burst.per_disk, answers, disks, before):
        d = disk.stats() - b
        out.append((len(tasks), a.proofs, d.emulated_s, a.seconds, d.seeks))
    return out


async def run_burst(a: argparse.Namespace, base: Path) -> None:
    cases = burst_cases(a.windows, a.old_windows)
    why_not = fuse_unavailable()
    deadline = PROFILES["finney"].challenge_deadline_s
    rows: list[tuple[BurstCase, list[list[tuple[int, int, float, float, int]]]]] = []
    if why_not:
        console.print(f"[yellow]no emulated hard disk here ({why_not}): the arithmetic only[/]")
        rows = [(c, []) for c in cases]
    else:
        plots = base / "burst-plots"
        files = await _plots_for_burst(plots)
        disk_count = max(c.disks for c in cases)
        disks = [EmulatedDisk(plots, base / f"disk{i}", seek_s=a.seek_ms / 1000) for i in range(disk_count)]
        pools = [ProverPool(1) for _ in range(disk_count)]  # one prover process per disk
        miner_pool = ProverPool(MINER_WORKERS)
        try:
            for d in disks:
                d.mount()
            await asyncio.gather(*(p.warm() for p in [*pools, miner_pool]))
            for case in cases:
                rows.append((case, [await _one_window(case, w, disks, pools, miner_pool, files)
                                    for w in range(case.windows)]))
        finally:
            for p in [*pools, miner_pool]:
                p.close()
            for d in disks:
                d.unmount()

    t = Table(title=f"one window's burst per disk against finney's {deadline:.0f} s deadline: emulated hard disk, "
                    f"{a.seek_ms:g} ms a seek, one head")
    for col in ("miner", "window", "plots / disk (mean, max)", "arithmetic s / disk", "proofs / disk",
                "seeks / lookup", "emulated s / disk", "busiest disk emulated s (mean, max)",
                "window wall s (mean, max)", "disk mean / half deadline", "window wall max / deadline"):
        t.add_column(col, justify="left" if col == "miner" else "right")
    for case, windows in rows:
        s = sample_size(case.plots_per_disk * case.disks, case.profile)
        arithmetic = s / case.disks * READS_PER_LOOKUP / HDD_READS_PER_S
        window = f"{case.profile.window_s:.0f} s"
        if not windows:
            t.add_row(case.what, window, f"{s / case.disks:.1f}", f"{arithmetic:.1f}", *[""] * 7)
            continue
        disks = [d for w in windows for d in w]  # every (window, disk)
        mean = statistics.mean(d[2] for d in disks)
        busiest = [max(d[2] for d in w) for w in windows]
        walls = [max(d[3] for d in w) for w in windows]  # a window ends when its last lookup does
        lookups = sum(d[0] for d in disks)
        t.add_row(case.what, window, f"{lookups / len(disks):.1f}, {max(d[0] for d in disks)}", f"{arithmetic:.1f}",
                  f"{sum(d[1] for d in disks) / len(disks):.1f}", f"{sum(d[4] for d in disks) / max(1, lookups):.0f}",
                  f"{mean:.2f}", f"{statistics.mean(busiest):.2f}, {max(busiest):.2f}",
                  f"{statistics.mean(walls):.2f}, {max(walls):.2f}", f"{mean / (deadline / 2):.2f}",
                  f"{max(walls) / deadline:.2f}")
    wide = Console(width=max(console.width, 220))  # eleven columns: never fold them
    wide.print(t)
    wide.print(f"[dim]{a.windows} window(s) a row (the 25-block baseline: {a.old_windows}), fixed beacons; "
                  f"arithmetic: plots x {READS_PER_LOOKUP} reads / {HDD_READS_PER_S:.0f} reads/s; plots per disk "
                  "from estimated_plot_bytes(k); k=18 plots stand in (seeks per lookup do not depend on k). A "
                  "window's proofs are Poisson (~0.95 a plot) and a multi-disk sample falls unevenly on the disks, "
                  "so a window's time varies around the mean[/]")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--challenges", type=int, default=300)
    p.add_argument("--sizes", type=int, default=3, help="plot sizes measured, from k=18")
    p.add_argument("--windows", type=int, default=3, help="windows measured per burst row")
    p.add_argument("--old-windows", type=int, default=1,
                   help="windows of the 25-block baseline row (~27 s each; 0 leaves it out)")
    p.add_argument("--seek-ms", type=float, default=SEEK_S * 1000, help="the emulated disk's seek time")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--burst-only", action="store_true", help="only the window burst on emulated disks")
    which.add_argument("--no-burst", action="store_true", help="leave the window burst out")
    a = parse_args(p)
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        if not a.burst_only:
            asyncio.run(run(a, base))
        if not a.no_burst:
            asyncio.run(run_burst(a, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
