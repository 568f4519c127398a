"""Validator memory and database size with many miners, at the rounds table's pruning steady state.

* measured: a real validator process (``python -m tensorage validator --seconds_per_weights 5``:
  it checks every proof window) on a devnet with ``--miners`` registered miner hotkeys (254 by
  default: the devnet holds 256 uids; the validator and the client wallet take two), for
  ``--windows`` windows.
  Its RSS is sampled with psutil; its SQLite state (validator.sqlite + -wal) is measured while
  it runs. Targets: RSS <= 300 MB, SQLite <= 50 MB.
* baselines for RSS, side by side: the same validator process right after start (initial sync
  done, 0 windows), and a bare ``python -c "import tensorage.engines.validator"``.

The miners are SIMULATED (``harness.SimMiner``): plain aiohttp apps in this benchmark process
(not the validator's), one per registered hotkey, serving it on the devnet chain. Each publishes
one canonical listing of ``--plots`` plots at k=18 (one SQLite row, a blob, per miner), of which
``--real_plots`` are real plots bound to its hotkey and the rest invented seeds, and answers
every window well-formed: for each sampled plot (the devnet samples 4) and j < 4, the real
proofs of a real plot (one shared ProverPool) or one right-length junk proof of an invented one.
So the validator parses and verifies about as many proofs as honest miners would send (most
invalid: windows are "fail"), while the few real proofs give miners credit and the validator sets
real weights on chain every 5 s. The simulated miners do not check signatures.

The rounds table (one row per miner a window, with its window) keeps KEEP_ROUNDS_PER_MINER=200
rows per miner, pruned every 20 windows, so it is at steady state from window 220 on; the
trajectory every 20 windows is printed. Windows are 3 blocks of ``--block_time`` seconds (the
devnet's 1 s by default; shorter gets through the windows sooner if the validator keeps up).

Run: python -m benchmarks.bench_validator_scale [--miners 254] [--plots 100] [--windows 260] [--block_time 1]
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

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.devnet_init import init_devnet
from tensorage.config import PROFILES
from tensorage.net.server import serve
from tensorage.proofs.prover_pool import ProverPool
from tensorage.storage.layout import Layout
from tensorage.storage.validator_db import KEEP_ROUNDS_PER_MINER

from .common import report
from .harness import SimMiner, make_plots, real_plots

MB = 1e6
PROFILE = PROFILES["devnet"]


def bare_import_rss() -> int:
    code = "import tensorage.engines.validator, psutil; print(psutil.Process().memory_info().rss)"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def db_bytes(path: Path) -> tuple[int, int]:
    def size(p: Path) -> int:
        try:
            return p.stat().st_size
        except FileNotFoundError:
            return 0

    return size(path), size(Path(str(path) + "-wal"))


def read_state(layout: Layout) -> dict:
    try:
        return json.loads((layout.index / "node.json").read_text())
    except (OSError, ValueError):
        return {}


async def run(a: argparse.Namespace, base: Path) -> None:
    root = base / "devnet"
    t0 = time.monotonic()
    init_devnet(root, miners=a.miners, validators=1, miner_sizes_gb=(0.01,), block_time=a.block_time)
    init_s = time.monotonic() - t0
    spec = SubnetSpec.load(root)
    hotkeys = {n.name: spec.wallet(root, n).hotkey.ss58_address for n in spec.of_role("miner")}
    sims = {name: base / "sim" / name for name in hotkeys}
    plot_s = await make_plots([(sims[name], hotkeys[name], a.real_plots) for name in hotkeys]) if a.real_plots else 0.0
    chain = Devnet.open(root)
    pool = ProverPool(1)
    served = []
    proc = None
    log = open(base / "validator.log", "wb")
    try:
        for name, hotkey in hotkeys.items():
            real = real_plots(sims[name], hotkey) if a.real_plots else {}
            s = await serve(SimMiner(hotkey, real, pool, plots=a.plots).app())
            chain.serve_hotkey(hotkey, "127.0.0.1", s.port)
            served.append(s)
        await pool.warm()
        bare = bare_import_rss()
        db_root = root / "nodes" / "validator-0"
        layout = Layout(db_root)
        argv = [sys.executable, "-m", "tensorage", "validator", "--subtensor.network", "devnet",
                "--devnet.root", str(root), "--wallet.name", "validator-0", "--db_root_path", str(db_root),
                "--seconds_per_weights", "5"]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                    env={**os.environ, "COLUMNS": "200"})
        ps = psutil.Process(proc.pid)
        started = start_t = time.monotonic()
        start_rss = None
        peak = 0
        trajectory: list[tuple[int, float, int, int]] = []
        last = {}
        next_mark = 20
        while time.monotonic() - started < a.timeout:
            if proc.returncode is not None:
                raise RuntimeError(f"the validator exited with {proc.returncode}: see its log")
            rss = ps.memory_info().rss
            peak = max(peak, rss)
            state = read_state(layout)
            if state and start_rss is None:
                start_rss = rss  # node.json is first written at the end of start(): synced, 0 windows
                start_t = time.monotonic()
            windows = int(state.get("rounds_run") or 0)
            last = {"rss": rss, "windows": windows, "last_window": state.get("last_window"),
                    "db": db_bytes(layout.validator_state_db)}
            if windows >= next_mark:
                trajectory.append((windows, time.monotonic() - start_t, rss, sum(last["db"])))
                next_mark = (windows // 20 + 1) * 20
            if windows >= a.windows:
                break
            await asyncio.sleep(0.25)
        if start_rss is None:
            raise RuntimeError(f"the validator did not finish starting within {a.timeout:.0f}s: see its log")
        run_s = time.monotonic() - start_t
        end = last
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        proc = None
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        for s in served:
            await s.close()
        chain.close()
        pool.close()

    con = sqlite3.connect(f"file:{layout.validator_state_db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        results = dict(con.execute("SELECT result, COUNT(*) FROM rounds GROUP BY result").fetchall())
        first_window, last_window, n_windows = con.execute(
            'SELECT MIN("window"), MAX("window"), COUNT(DISTINCT "window") FROM rounds').fetchone()
        listing_bytes = con.execute("SELECT COALESCE(SUM(LENGTH(blob)), 0) FROM listings").fetchone()[0]
        owner = dict(con.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
        pages: dict[str, int] = {}
        for name, size in con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            pages[owner.get(name, name)] = pages.get(owner.get(name, name), 0) + size
    finally:
        con.close()
    main_db, wal = end["db"]
    windows = end["windows"]
    report(f"validator at scale: {a.miners} simulated miners × {a.plots} listed plots, {windows} windows "
           f"(steady state from window {KEEP_ROUNDS_PER_MINER + 20})", [
               ("validator RSS after the last window", f"{end['rss'] / MB:.1f} MB",
                f"{start_rss / MB:.1f} MB at start (0 windows)", f"{end['rss'] / start_rss:.2f}×", "≤ 300 MB"),
               ("validator RSS after the last window vs bare import", f"{end['rss'] / MB:.1f} MB",
                f"{bare / MB:.1f} MB bare import", f"{end['rss'] / bare:.2f}×", "≤ 300 MB"),
               ("validator peak RSS (sampled every 0.25 s)", f"{peak / MB:.1f} MB", "", "", "≤ 300 MB"),
               ("SQLite validator.sqlite + -wal (while running)", f"{(main_db + wal) / MB:.1f} MB",
                f"{main_db / MB:.1f} + {wal / MB:.1f} MB", "", "≤ 50 MB"),
           ])
    print(f"rows: {counts}; window results {results}; rounds kept for windows {first_window}-{last_window} "
          f"({n_windows} distinct); listings hold {listing_bytes / MB:.2f} MB of entries")
    print("bytes by table, indexes included (after the validator stopped): "
          + ", ".join(f"{t} {b / MB:.1f} MB" for t, b in sorted(pages.items(), key=lambda kv: -kv[1])
                      if b >= 0.05 * MB))
    window_s = PROFILE.window_blocks * a.block_time
    print(f"{windows} windows checked in {run_s:.0f}s ({run_s / max(1, windows):.2f}s per window checked; windows "
          f"are {window_s:g}s, the validator's last was {end['last_window']}); devnet init {init_s:.1f}s, "
          f"{a.real_plots * a.miners} real plots made in {plot_s:.0f}s. Miners are simulated (this process, no "
          f"signature checks; {a.real_plots} real plot(s) of {a.plots} listed each, one junk proof per (other "
          f"sampled plot, j)); the validator is a separate real process.")
    print("trajectory (windows, seconds, RSS MB, SQLite+WAL MB):")
    for r, t, rss, size in trajectory:
        print(f"  {r:4d} {t:6.0f}s {rss / MB:7.1f} {size / MB:7.1f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--miners", type=int, default=254,
                   help="at most 254: the devnet has 256 uids, the validator and the client wallet take two")
    p.add_argument("--plots", type=int, default=100, help="plots each simulated miner lists")
    p.add_argument("--real_plots", type=int, default=1, help="real k=18 plots among each miner's listed plots")
    p.add_argument("--windows", type=int, default=260, help="windows the validator checks before it is stopped")
    p.add_argument("--block_time", type=float, default=PROFILE.block_time_s, help="devnet seconds a block")
    p.add_argument("--timeout", type=float, default=1800, help="stop after this many seconds whatever the windows")
    a = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        asyncio.run(run(a, base))
    except BaseException:
        log = base / "validator.log"
        if log.exists():
            print("validator log (tail):\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        raise
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
