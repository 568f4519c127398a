"""A validator checking 1,024 miners, one of which answers 8 MiB of junk: does anyone notice?

* measured: a real validator process (``python -m tensorage validator``, every window) on a
  devnet holding 1,024 registered miner hotkeys (the devnet's uid cap is raised for this
  benchmark; real subnets stop at 256). Its CPU per window (psutil, its proof-check workers
  included), its ``GET /v1/health`` latency (polled every 20 ms by a separate small process, so
  the simulated miners' own load does not blur it), and the honest miners' verdicts and latency.
* baseline, same process and run: the same windows with the junk miner answering like the others.
  Phase A: everybody answers well-formed. Phase B: one miner answers 8 MiB of ``{}``.
  Targets: honest results unaffected, no health stall over 100 ms.

The miners are SIMULATED (aiohttp apps in this benchmark process, no signature checks): 16
honest ones hold 2 real k=18 plots each and answer real proofs; the other 1,007 list 4 invented
plots and answer a right-length junk proof per (plot, j), so the validator verifies about as many
proofs as it would for honest miners; one of them turns hostile in phase B.

Run: python -m benchmarks.bench_hostile_round [--miners 1024] [--windows 12] [--nice -10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

import tensorage.chain.devnet as devnet_module
from tensorage.chain.devnet import Devnet
from tensorage.chain.devnet_init import init_devnet
from tensorage.chain.wallets import create_wallet
from tensorage.config import PROFILES
from tensorage.net.server import serve
from tensorage.proofs.plots import plot_filename, plot_id
from tensorage.proofs.prover_pool import PlotTask, ProverPool
from tensorage.storage.layout import Layout
from tensorage.storage.models import MinerIndex

from .common import pct, report, headline, parse_args
from .harness import SimMiner, make_plots

PROFILE = PROFILES["devnet"]
HEALTH_POLLER = r"""
import http.client, sys, time
port, out, every = int(sys.argv[1]), open(sys.argv[2], "w"), float(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
while True:
    t0 = time.perf_counter()
    try:
        conn.request("GET", "/v1/health"); conn.getresponse().read()
    except Exception:
        conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30); continue
    out.write(f"{time.time():.4f} {(time.perf_counter() - t0) * 1000:.3f}\n"); out.flush()
    time.sleep(every)
"""


def cpu_s(proc: psutil.Process) -> float:
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def renice(pid: int, nice: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except PermissionError:
        print(f"--nice {nice} needs root: measuring at the default priority")


def loop_cpu_s(proc: psutil.Process) -> tuple[float, float]:
    """(the main thread's CPU: the node's event loop; the process's other threads': the peer loop,
    chain and SQLite threads). CPU time, unlike latency, is little disturbed by a shared machine."""
    main = next((t.user_time + t.system_time for t in proc.threads() if t.id == proc.pid), 0.0)
    return main, sum(proc.cpu_times()[:2]) - main


async def run(a: argparse.Namespace, base: Path) -> None:
    devnet_module.MAX_UIDS = a.miners + 8
    root = base / "devnet"
    init_devnet(root, miners=1, validators=1, miner_sizes_gb=(0.01,))
    chain = Devnet.open(root)
    hotkeys = {}
    for i in range(a.miners):  # registered straight on the chain: init_devnet stops at 256 neurons
        wallet = create_wallet(root / "wallets", f"sim-{i}")
        chain.register(wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address)
        hotkeys[f"sim-{i}"] = wallet.hotkey.ss58_address
    chain.close()
    names = list(hotkeys)
    honest = names[:a.honest]
    junk_name = names[-1]
    plot_s = await make_plots([(base / "sim" / name, hotkeys[name], 2) for name in honest])
    pool = ProverPool(1)
    chain = Devnet.open(root)
    sims: dict[str, SimMiner] = {}
    served = []
    proc = poller = None
    log = open(base / "validator.log", "wb")
    try:
        for name, hotkey in hotkeys.items():
            real = {}
            if name in honest:
                layout = Layout(base / "sim" / name)
                index = MinerIndex(layout.miner_db)
                for row in index.plots():
                    seed = bytes.fromhex(row.seed)
                    real[seed] = PlotTask(seed=row.seed, path=str(layout.plots / plot_filename(row.k, seed)),
                                          plot_id=plot_id(hotkey, seed), k=row.k)
                index.close()
            sims[name] = SimMiner(hotkey, real, pool)
            s = await serve(sims[name].app())
            chain.serve_hotkey(hotkey, "127.0.0.1", s.port)
            served.append(s)
        await pool.warm()
        db_root = root / "nodes" / "validator-0"
        argv = [sys.executable, "-m", "tensorage", "validator", "--subtensor.network", "devnet", "--devnet.root",
                str(root), "--wallet.name", "validator-0", "--db_root_path", str(db_root),
                "--seconds_per_weights", "60", "--axon.port", str(a.port)]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                    env={**os.environ, "COLUMNS": "200"})
        ps = psutil.Process(proc.pid)
        if a.nice:  # before it starts its threads and children: they inherit it
            renice(proc.pid, a.nice)
        state_file = Layout(db_root).index / "node.json"
        deadline = time.monotonic() + 300
        while not state_file.exists():
            if time.monotonic() > deadline or proc.returncode is not None:
                raise RuntimeError("the validator did not start: see its log")
            await asyncio.sleep(0.5)
        health_file = base / "health.txt"
        poller = subprocess.Popen([sys.executable, "-c", HEALTH_POLLER, str(a.port), str(health_file), "0.02"])
        if a.nice:
            renice(poller.pid, a.nice)

        def windows_done() -> int:
            try:
                return int(json.loads(state_file.read_text()).get("rounds_run") or 0)
            except (OSError, ValueError):
                return 0

        threads: dict[str, tuple[float, float]] = {}

        async def phase(windows: int, name: str) -> tuple[float, float, float, int]:
            start_rounds, t0, c0, l0 = windows_done(), time.time(), cpu_s(ps), loop_cpu_s(ps)
            while windows_done() < start_rounds + windows:
                if proc.returncode is not None:
                    raise RuntimeError("the validator exited: see its log")
                await asyncio.sleep(0.2)
            l1, n = loop_cpu_s(ps), windows_done() - start_rounds
            threads[name] = ((l1[0] - l0[0]) / n, (l1[1] - l0[1]) / n)
            return t0, time.time(), cpu_s(ps) - c0, n

        while windows_done() < 2:  # the first windows include the first sync of every listing
            await asyncio.sleep(0.2)
        a_t0, a_t1, a_cpu, a_n = await phase(a.windows, "A")
        sims[junk_name].hostile = True
        b_t0, b_t1, b_cpu, b_n = await phase(a.windows, "B")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        proc = None
    finally:
        if poller is not None:
            poller.kill()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        for s in served:
            await s.close()
        chain.close()
        pool.close()

    samples = [tuple(map(float, line.split())) for line in (base / "health.txt").read_text().splitlines() if line]
    health_a = [ms for t, ms in samples if a_t0 <= t <= a_t1]
    health_b = [ms for t, ms in samples if b_t0 <= t <= b_t1]
    con = sqlite3.connect(f"file:{db_root / 'index' / 'validator.sqlite'}?mode=ro", uri=True)
    try:
        def verdicts(names: list[str], t0: float, t1: float) -> tuple[dict, float]:
            marks = ",".join("?" * len(names))
            rows = con.execute(f"SELECT result, latency_ms FROM rounds WHERE hotkey IN ({marks}) AND started_at "
                               f"BETWEEN ? AND ?", [hotkeys[n] for n in names] + [t0, t1]).fetchall()
            results: dict[str, int] = {}
            for r, _ in rows:
                results[r] = results.get(r, 0) + 1
            return results, (sum(ms for _, ms in rows) / len(rows) if rows else 0.0)

        honest_a, lat_a = verdicts(honest, a_t0, a_t1)
        honest_b, lat_b = verdicts(honest, b_t0, b_t1)
        junk_b, _ = verdicts([junk_name], b_t0, b_t1)
        detail = con.execute("SELECT detail FROM rounds WHERE hotkey=? ORDER BY id DESC LIMIT 1",
                             [hotkeys[junk_name]]).fetchone()
    finally:
        con.close()
    report(f"validator with {a.miners} simulated miners, {a.windows} windows a phase "
           f"(A: all well-formed; B: one answers 8 MiB of junk)", [
               ("validator CPU per window", f"{b_cpu / b_n:.2f} s", f"{a_cpu / a_n:.2f} s (A)",
                f"{(b_cpu / b_n) / (a_cpu / a_n):.2f}×", "unaffected"),
               ("  of it, the event loop's thread", f"{threads['B'][0] * 1000:.0f} ms",
                f"{threads['A'][0] * 1000:.0f} ms (A)", f"{threads['B'][0] / threads['A'][0]:.2f}×", ""),
               ("  of it, the validator's other threads (peer loop, chain, SQLite)",
                f"{threads['B'][1] * 1000:.0f} ms", f"{threads['A'][1] * 1000:.0f} ms (A)",
                f"{threads['B'][1] / threads['A'][1]:.2f}×", ""),
               ("/v1/health p99", f"{pct(health_b, 99):.1f} ms", f"{pct(health_a, 99):.1f} ms (A)",
                f"{pct(health_b, 99) / pct(health_a, 99):.2f}×", "≤ 100 ms"),
               ("/v1/health max", f"{max(health_b):.1f} ms", f"{max(health_a):.1f} ms (A)", "", "≤ 100 ms"),
               ("/v1/health p50", f"{pct(health_b, 50):.1f} ms", f"{pct(health_a, 50):.1f} ms (A)", "", ""),
               (f"{a.honest} honest miners: verdicts", json.dumps(honest_b), json.dumps(honest_a) + " (A)", "",
                "all pass"),
               (f"{a.honest} honest miners: mean latency", f"{lat_b:.0f} ms", f"{lat_a:.0f} ms (A)",
                f"{lat_b / max(lat_a, 1e-9):.2f}×", "unaffected"),
           ])
    headline(f"/v1/health p99, validator with {a.miners} miners, one answering 8 MiB of junk", pct(health_b, 99),
             "ms", pct(health_a, 99), "all answers well-formed (A)", "≤ 100 ms",
             max(health_b) <= 100 and max(health_a) <= 100,
             note=f"max {max(health_b):.0f} ms vs {max(health_a):.0f} ms (A); p50 {pct(health_b, 50):.1f} ms; "
                  f"honest verdicts {json.dumps(honest_b)}; event-loop thread CPU a window "
                  f"{threads['B'][0] * 1000:.0f} ms, other threads {threads['B'][1] * 1000:.0f} ms")
    print(f"junk miner in B: {junk_b}; its last detail: {detail[0] if detail else '-'}")
    print(f"{len(health_a) + len(health_b)} health samples; {2 * a.honest} real plots made in {plot_s:.0f}s; "
          f"the validator is a separate process with its proof-check pool; windows are "
          f"{PROFILE.window_s:.0f} s, deadline {PROFILE.challenge_deadline_s:g} s.")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--miners", type=int, default=1024)
    p.add_argument("--honest", type=int, default=16)
    p.add_argument("--windows", type=int, default=12)
    p.add_argument("--port", type=int, default=18391)
    p.add_argument("--nice", type=int, default=0, help="the validator's and the health poller's niceness (below 0 "
                   "needs root): on a machine shared with other work, -10 keeps that work's load out of the figure")
    a = parse_args(p)
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        asyncio.run(run(a, base))
    except BaseException:
        log = base / "validator.log"
        if log.exists():
            print("validator log (tail):\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        raise
    finally:
        if os.environ.get("KEEP_BENCH_LOG"):
            shutil.copy(base / "validator.log", os.environ["KEEP_BENCH_LOG"])
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
