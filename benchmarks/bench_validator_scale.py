"""Validator memory and database size with many miners, at the rounds table's pruning steady state.

* measured: a real validator process (``python -m tensorage validator --seconds_per_round 1
  --seconds_per_weights 5``) on a devnet with ``--miners`` registered miner hotkeys (255 by
  default: the devnet holds 256 uids and the validator takes one). Its RSS is sampled with
  psutil; its SQLite state (validator.sqlite + -wal) is measured while it runs.
  Targets: RSS <= 300 MB, SQLite <= 50 MB.
* baselines for RSS, side by side: the same validator process right after start (initial sync
  done, 0 rounds), and a bare ``python -c "import tensorage.engines.validator"``.

The miners are SIMULATED: lightweight aiohttp servers in this benchmark process (not the
validator's), one per registered hotkey, serving it on the devnet chain. ``GET /v1/plots``
lists ``--plots`` seeds at k=18, of which ``--real_plots`` are real plots bound to that hotkey
and the rest random seeds; ``POST /v1/challenge`` answers a well-formed ChallengeResponse with
an entry for every (sampled plot, j): real proofs (one shared ProverPool) for a real plot, one
replayed junk proof of the right length otherwise. So the validator parses and verifies about
as many proofs as honest miners would send (most invalid: rounds are "fail"), while the few
real proofs give miners a score and the validator sets real weights on chain every 5 s.
The simulated miners do not check signatures.

The rounds table keeps KEEP_ROUNDS_PER_MINER=200 rounds per miner, pruned every 20 rounds,
so it is at steady state from round 220 on; the trajectory every 20 rounds is printed.

Run: python -m benchmarks.bench_validator_scale [--miners 255] [--plots 100] [--rounds 260]
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
from aiohttp import web

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.devnet_init import init_devnet
from tensorage.net.server import serve
from tensorage.proofs.plots import plot_filename, plot_id
from tensorage.proofs.prover_pool import PlotTask, ProverPool
from tensorage.storage.models import MinerIndex
from tensorage.storage.validator_db import KEEP_ROUNDS_PER_MINER
from tensorage.storage.layout import Layout

from .common import report
from .harness import K, make_plots

MB = 1e6


def sim_app(hotkey: str, n_plots: int, real: dict[str, PlotTask], pool: ProverPool, k: int = K) -> web.Application:
    seeds = list(real) + [os.urandom(32).hex() for _ in range(n_plots - len(real))]
    listing = json.dumps({"protocol": 1, "hotkey": hotkey, "plots": [{"seed": s, "k": k} for s in seeds]}).encode()
    junk = os.urandom(8 * k).hex()  # a replayed proof: right length, verifies for nothing

    async def plots(request: web.Request) -> web.Response:
        return web.Response(body=listing, content_type="application/json")

    async def challenge(request: web.Request) -> web.Response:
        req = json.loads(await request.read())
        held = [real[s] for s in req["plots"] if s in real]
        proofs = [{"seed": seed, "j": j, "proofs": [p.hex() for p in found]}
                  for seed, j, found in await pool.prove(held, bytes.fromhex(req["challenge"]), req["per_plot"])]
        proofs += [{"seed": s, "j": j, "proofs": [junk]} for s in req["plots"] if s not in real
                   for j in range(req["per_plot"])]
        return web.Response(body=json.dumps({"protocol": 1, "proofs": proofs, "missing": []}).encode(),
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/plots", plots)
    app.router.add_post("/v1/challenge", challenge)
    return app


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
    init_devnet(root, miners=a.miners, validators=1, miner_sizes_gb=(0.01,))
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
            real: dict[str, PlotTask] = {}
            if a.real_plots:
                sim_layout = Layout(sims[name])
                index = MinerIndex(sim_layout.miner_db)
                for row in index.plots():
                    seed = bytes.fromhex(row.seed)
                    real[row.seed] = PlotTask(seed=row.seed, path=str(sim_layout.plots / plot_filename(row.k, seed)),
                                              plot_id=plot_id(hotkey, seed), k=row.k)
                index.close()
            s = await serve(sim_app(hotkey, a.plots, real, pool))
            chain.serve_hotkey(hotkey, "127.0.0.1", s.port)
            served.append(s)
        await pool.warm()
        bare = bare_import_rss()
        db_root = root / "nodes" / "validator-0"
        layout = Layout(db_root)
        argv = [sys.executable, "-m", "tensorage", "validator", "--subtensor.network", "devnet",
                "--devnet.root", str(root), "--wallet.name", "validator-0", "--db_root_path", str(db_root),
                "--seconds_per_round", "1", "--seconds_per_weights", "5"]
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
                start_rss = rss  # node.json is first written at the end of start(): synced, 0 rounds
                start_t = time.monotonic()
            rounds = int(state.get("rounds_run") or 0)
            last = {"rss": rss, "rounds": rounds, "db": db_bytes(layout.validator_state_db)}
            if rounds >= next_mark:
                trajectory.append((rounds, time.monotonic() - start_t, rss, sum(last["db"])))
                next_mark = (rounds // 20 + 1) * 20
            if rounds >= a.rounds:
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
        counts = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("miners", "miner_plots", "rounds", "scores", "weights")}
        results = dict(con.execute("SELECT result, COUNT(*) FROM rounds GROUP BY result").fetchall())
        owner = dict(con.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
        pages: dict[str, int] = {}
        for name, size in con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            pages[owner.get(name, name)] = pages.get(owner.get(name, name), 0) + size
    finally:
        con.close()
    main_db, wal = end["db"]
    rounds = end["rounds"]
    report(f"validator at scale: {a.miners} simulated miners × {a.plots} plots, {rounds} rounds "
           f"(steady state from round {KEEP_ROUNDS_PER_MINER + 20})", [
               ("validator RSS after the last round", f"{end['rss'] / MB:.1f} MB",
                f"{start_rss / MB:.1f} MB at start (0 rounds)", f"{end['rss'] / start_rss:.2f}×", "≤ 300 MB"),
               ("validator RSS after the last round vs bare import", f"{end['rss'] / MB:.1f} MB",
                f"{bare / MB:.1f} MB bare import", f"{end['rss'] / bare:.2f}×", "≤ 300 MB"),
               ("validator peak RSS (sampled every 0.25 s)", f"{peak / MB:.1f} MB", "", "", "≤ 300 MB"),
               ("SQLite validator.sqlite + -wal (while running)", f"{(main_db + wal) / MB:.1f} MB",
                f"{main_db / MB:.1f} + {wal / MB:.1f} MB", "", "≤ 50 MB"),
           ])
    print(f"rows: {counts}; round results {results}")
    print("bytes by table, indexes included (after the validator stopped): "
          + ", ".join(f"{t} {b / MB:.1f} MB" for t, b in sorted(pages.items(), key=lambda kv: -kv[1])
                      if b >= 0.05 * MB))
    print(f"{rounds} rounds in {run_s:.0f}s ({run_s / max(1, rounds):.2f}s per round with --seconds_per_round 1); "
          f"devnet init {init_s:.1f}s, {a.real_plots * a.miners} real plots made in {plot_s:.0f}s. Miners are "
          f"simulated (this process, no signature checks; {a.real_plots} real plot(s) of {a.plots} listed each, one "
          f"replayed junk proof per (other plot, j)); the validator is a separate real process.")
    print("trajectory (rounds, seconds, RSS MB, SQLite+WAL MB):")
    for r, t, rss, size in trajectory:
        print(f"  {r:4d} {t:6.0f}s {rss / MB:7.1f} {size / MB:7.1f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--miners", type=int, default=255, help="at most 255: the devnet has 256 uids, one is the validator")
    p.add_argument("--plots", type=int, default=100)
    p.add_argument("--real_plots", type=int, default=1, help="real k=18 plots among each miner's listed plots")
    p.add_argument("--rounds", type=int, default=260)
    p.add_argument("--timeout", type=float, default=1800, help="stop after this many seconds whatever the rounds")
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
