"""Validator memory, database size and window timing with many miners, up to the listing limit.

* measured: a real validator process (``python -m tensorage validator --seconds_per_weights 5``:
  it checks every proof window) on a devnet with ``--miners`` registered miner hotkeys (254 by
  default: the devnet holds 256 uids; the validator and the client wallet take two), for
  ``--windows`` windows, once per listing shape in ``--shapes`` (plots each miner lists): by
  default 100 (the shape this benchmark always measured: the baseline row) and 65,536
  (``max_listed_plots``, the limit every profile allows).
  Its RSS is sampled with psutil (its verify workers' too, shown apart); its SQLite state
  (validator.sqlite + -wal) and its spool of listing files are measured while it runs.
  Targets: RSS <= 300 MB at 100 plots a miner, <= 600 MB at the limit; SQLite <= 50 MB.
* windows: every check of a window (the ``proof_round`` job, from node.json) is timed; a window
  is finished in time when its check ended before the next window began (so no window is
  skipped), and every answer was read before the answer deadline (no "timeout" rows).
* baselines for RSS, side by side: the same validator process right after start (initial sync
  done, 0 windows), and a bare ``python -c "import tensorage.engines.validator"``.

The miners are SIMULATED (``harness.SimMiner``): plain aiohttp apps in this benchmark process
(not the validator's), one per registered hotkey, serving it on the devnet chain. Each publishes
one canonical listing of the shape's plots at k=18, of which ``--real_plots`` are real plots bound
to its hotkey and the rest invented seeds (at the limit, one sorted table of invented seeds shared
by all simulated miners, each miner's real seeds spliced in: ``harness.SharedListing``), and answers
every window well-formed: for each sampled plot and j < 4, the real proofs of a real plot (one
shared ProverPool) or one right-length junk proof of an invented one. So the validator parses and
verifies about as many proofs as honest miners would send (most invalid: windows are "fail"), while
the few real proofs give miners credit and the validator sets real weights on chain every 5 s. The
simulated miners do not check signatures. The devnet samples ceil(plots x 0.3/h x 3 s / 3600) plots
a window (17 of 65,536, 4 of 100; finney at 36 s windows: 197 of 65,536): the listing limit is what
this benchmark loads, not the finney sample.

The rounds table (one row per miner a window, with its window) keeps KEEP_ROUNDS_PER_MINER=200
rows per miner, pruned every 20 windows, so it is at steady state from window 220 on; the
trajectory every 20 windows is printed. Windows are 3 blocks of ``--block_time`` seconds (the
devnet's 1 s by default).

Run: python -m benchmarks.bench_validator_scale [--miners 254] [--shapes 100,65536] [--windows 60]
     [--real_plots 1] [--block_time 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
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

from .common import report, headline, parse_args
from .harness import SimMiner, make_plots, real_plots, shared_junk

MB = 1e6
PROFILE = PROFILES["devnet"]
SHARED_FROM = 1000  # listings larger than this share one table of invented seeds (harness.SharedListing)
ROUND_LAG_S = 0.05  # the validator starts a window's check this long after its first block


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


def dir_bytes(path: Path) -> tuple[int, int]:
    """(files, bytes) under a directory."""
    try:
        entries = [e for e in os.scandir(path) if e.is_file()]
    except FileNotFoundError:
        return 0, 0
    return len(entries), sum(e.stat().st_size for e in entries)


def children_rss(ps: psutil.Process) -> int:
    total = 0
    for child in ps.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


async def run(a: argparse.Namespace, base: Path, plots: int) -> dict:
    """One validator on a fresh devnet whose miners each list ``plots`` plots: its figures."""
    root = base / "devnet"
    t0 = time.monotonic()
    init_devnet(root, miners=a.miners, validators=1, miner_sizes_gb=(0.01,), block_time=a.block_time)
    init_s = time.monotonic() - t0
    spec = SubnetSpec.load(root)
    hotkeys = {n.name: spec.wallet(root, n).hotkey.ss58_address for n in spec.of_role("miner")}
    sims = {name: base / "sim" / name for name in hotkeys}
    plot_s = await make_plots([(sims[name], hotkeys[name], a.real_plots) for name in hotkeys]) if a.real_plots else 0.0
    junk = shared_junk(plots - a.real_plots) if plots > SHARED_FROM else None
    chain = Devnet.open(root)
    pool = ProverPool(1)
    served = []
    proc = None
    log = open(base / "validator.log", "wb")
    window_s = PROFILE.window_blocks * a.block_time
    rounds: dict[float, tuple[float, str]] = {}  # proof_round runs: started at -> (seconds, result)
    try:
        for name, hotkey in hotkeys.items():
            real = real_plots(sims[name], hotkey) if a.real_plots else {}
            s = await serve(SimMiner(hotkey, real, pool, plots=plots, junk=junk).app())
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
        peak = peak_children = 0
        trajectory: list[tuple[int, float, int, int]] = []
        last = {}
        next_mark = 20
        while time.monotonic() - started < a.timeout:
            if proc.returncode is not None:
                raise RuntimeError(f"the validator exited with {proc.returncode}: see its log")
            rss = ps.memory_info().rss
            peak = max(peak, rss)
            kids = children_rss(ps)
            peak_children = max(peak_children, kids)
            state = read_state(layout)
            if state and start_rss is None:
                start_rss = rss  # node.json is first written at the end of start(): synced, 0 windows
                start_t = time.monotonic()
            for job in state.get("jobs", []):
                if job.get("id") == "proof_round" and job.get("last_run_at") and job.get("last_duration_s") is not None:
                    rounds[job["last_run_at"]] = (job["last_duration_s"], job.get("last_result") or "")
            windows = int(state.get("rounds_run") or 0)
            last = {"rss": rss, "children": kids, "windows": windows, "last_window": state.get("last_window"),
                    "db": db_bytes(layout.validator_state_db), "spool": dir_bytes(layout.index / "verify" / "listings")}
            if windows >= next_mark:
                trajectory.append((windows, time.monotonic() - start_t, rss, sum(last["db"])))
                next_mark = (windows // 20 + 1) * 20
            if windows >= a.windows:
                break
            await asyncio.sleep(0.1)
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
        timeout_windows = [w for (w,) in con.execute(
            'SELECT DISTINCT "window" FROM rounds WHERE result = \'timeout\' ORDER BY "window"')]
        owner = dict(con.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
        pages: dict[str, int] = {}
        for name, size in con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            pages[owner.get(name, name)] = pages.get(owner.get(name, name), 0) + size
    finally:
        con.close()
    checked = sorted((t, d, r) for t, (d, r) in rounds.items() if r.startswith("window ") and "passed" in r)
    durations = [d for _, d, _ in checked]
    return {"plots": plots, "end": end, "start_rss": start_rss, "bare": bare, "peak": peak,
            "peak_children": peak_children, "counts": counts, "results": results, "windows": end["windows"],
            "first_window": first_window, "last_window": last_window, "n_windows": n_windows,
            "listing_bytes": listing_bytes, "pages": pages, "timeout_windows": timeout_windows, "run_s": run_s, "init_s": init_s, "plot_s": plot_s,
            "trajectory": trajectory, "durations": durations, "window_s": window_s,
            "late": sum(1 for d in durations if d + ROUND_LAG_S >= window_s)}


def print_shape(a: argparse.Namespace, f: dict) -> None:
    end, plots = f["end"], f["plots"]
    target = "≤ 300 MB" if plots <= 1000 else "≤ 600 MB"
    durations = sorted(f["durations"]) or [0.0]
    skipped = (f["last_window"] - f["first_window"] + 1 - f["n_windows"]) if f["n_windows"] else 0
    timeouts = f["results"].get("timeout", 0)
    in_time = f["late"] == 0 and skipped == 0 and timeouts == 0
    main_db, wal = end["db"]
    files, spool = end["spool"]
    report(f"validator at scale: {a.miners} simulated miners × {plots:,} listed plots, {f['windows']} windows", [
        ("validator RSS after the last window", f"{end['rss'] / MB:.1f} MB",
         f"{f['start_rss'] / MB:.1f} MB at start (0 windows)", f"{end['rss'] / f['start_rss']:.2f}×", target),
        ("validator RSS after the last window vs bare import", f"{end['rss'] / MB:.1f} MB",
         f"{f['bare'] / MB:.1f} MB bare import", f"{end['rss'] / f['bare']:.2f}×", target),
        ("validator peak RSS (sampled every 0.1 s)", f"{f['peak'] / MB:.1f} MB", "", "", target),
        ("its verify workers' RSS (peak)", f"{f['peak_children'] / MB:.1f} MB", f"{end['children'] / MB:.1f} MB at end",
         "", ""),
        ("window checks that ended before the next window", f"{len(f['durations']) - f['late']}/{len(f['durations'])}",
         f"{f['window_s']:g} s windows", "", "all"),
        ("window check seconds: median / p99 / max", f"{statistics.median(durations):.2f} / "
         f"{durations[min(len(durations) - 1, int(0.99 * len(durations)))]:.2f} / {durations[-1]:.2f} s",
         f"{f['window_s']:g} s window", f"{durations[-1] / f['window_s']:.2f}×", f"< {f['window_s']:g} s"),
        ("windows skipped / answers timed out", f"{skipped} / {timeouts}", "", "", "0 / 0"),
        ("every window finished in time", "yes" if in_time else "NO", "", "", "yes"),
        ("SQLite validator.sqlite + -wal (while running)", f"{(main_db + wal) / MB:.1f} MB",
         f"{main_db / MB:.1f} + {wal / MB:.1f} MB", "", "≤ 50 MB"),
        ("listing files spooled (on disk, not in RSS)", f"{spool / MB:.1f} MB", f"{files} files", "", ""),
    ])
    headline(f"validator RSS, {a.miners} miners × {plots:,} listed plots, {f['windows']} windows", end["rss"] / MB, "MB",
             f["bare"] / MB, "bare import", target, end["rss"] / MB <= (300 if plots <= 1000 else 600) and in_time,
             note=f"every window in time: {'yes' if in_time else 'NO'}; SQLite+WAL {(main_db + wal) / MB:.1f} MB")
    if f["timeout_windows"]:
        print(f"windows with a timed-out answer: {len(f['timeout_windows'])} of {f['n_windows']} "
              f"({', '.join(str(w) for w in f['timeout_windows'][:20])})")
    print(f"rows: {f['counts']}; window results {f['results']}; rounds kept for windows {f['first_window']}-"
          f"{f['last_window']} ({f['n_windows']} distinct); listing rows hold {f['listing_bytes'] / MB:.2f} MB")
    print("bytes by table, indexes included (after the validator stopped): "
          + ", ".join(f"{t} {b / MB:.1f} MB" for t, b in sorted(f["pages"].items(), key=lambda kv: -kv[1])
                      if b >= 0.05 * MB))
    print(f"{f['windows']} windows checked in {f['run_s']:.0f}s ({f['run_s'] / max(1, f['windows']):.2f}s per window "
          f"checked; windows are {f['window_s']:g}s, the validator's last was {end['last_window']}); devnet init "
          f"{f['init_s']:.1f}s, {a.real_plots * a.miners} real plots made in {f['plot_s']:.0f}s. Miners are simulated "
          f"(this process, no signature checks; {a.real_plots} real plot(s) of {plots} listed each, one junk proof "
          f"per (other sampled plot, j)); the validator is a separate real process.")
    print("trajectory (windows, seconds, RSS MB, SQLite+WAL MB):")
    for r, t, rss, size in f["trajectory"]:
        print(f"  {r:4d} {t:6.0f}s {rss / MB:7.1f} {size / MB:7.1f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--miners", type=int, default=254,
                   help="at most 254: the devnet has 256 uids, the validator and the client wallet take two")
    p.add_argument("--shapes", default=f"100,{PROFILE.max_listed_plots}",
                   help="plots each simulated miner lists, one validator run per figure (100: the baseline shape)")
    p.add_argument("--real_plots", type=int, default=1, help="real k=18 plots among each miner's listed plots")
    p.add_argument("--windows", type=int, default=60, help="windows the validator checks before it is stopped "
                                                          "(260 reaches the rounds table's steady state)")
    p.add_argument("--block_time", type=float, default=PROFILE.block_time_s, help="devnet seconds a block")
    p.add_argument("--timeout", type=float, default=1800, help="stop after this many seconds whatever the windows")
    a = parse_args(p)
    figures = []
    for plots in (int(x) for x in a.shapes.split(",")):
        base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
        try:
            figures.append(asyncio.run(run(a, base, plots)))
        except BaseException:
            log = base / "validator.log"
            if log.exists():
                print("validator log (tail):\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
            raise
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print_shape(a, figures[-1])
    if len(figures) > 1:
        rows = [(f"{a.miners} miners × {f['plots']:,} plots", f"{f['end']['rss'] / MB:.1f} MB",
                 f"{f['peak'] / MB:.1f} MB peak", f"{f['end']['rss'] / figures[0]['end']['rss']:.2f}×",
                 f"{len(f['durations']) - f['late']}/{len(f['durations'])} windows in time") for f in figures]
        report("validator RSS after the last window, per listing shape (first row: the baseline shape)", rows)


if __name__ == "__main__":
    main()
