"""What the network benchmarks share: k=18 plots bound to a miner's hotkey, a real MinerEngine
started in this process with its periodic jobs paused, and the echo baseline server.

Plots are made with the same child process the allocator uses (``proofs.plotter.run_plot``)
and written into the miner's own index as verified rows, so ``MinerEngine.refresh_plots``
serves them exactly as it serves allocated plots.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Optional

import bittensor as bt
from aiohttp import web

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.config import GB, Settings, settings_from_namespace
from tensorage.engines.miner import MinerEngine
from tensorage.net.server import Served, serve
from tensorage.proofs.plots import estimated_plot_bytes, new_seed, plot_filename, plot_id
from tensorage.proofs.plotter import PlotJob, run_plot
from tensorage.proofs.prover_pool import ProverPool
from tensorage.storage.layout import Layout
from tensorage.storage.models import MinerIndex

K = 18


def wallet_of(root: Path, name: str) -> bt.Wallet:
    spec = SubnetSpec.load(root)
    return spec.wallet(root, next(n for n in spec.nodes if n.name == name))


async def make_plots(jobs: list[tuple[Path, str, int]], k: int = K, parallel: Optional[int] = None) -> float:
    """Make ``n`` verified k-plots for each (db_root, hotkey, n); returns wall seconds."""
    sem = asyncio.Semaphore(parallel or os.cpu_count() or 1)
    started = time.monotonic()

    async def one(db_root: Path, hotkey: str, index: MinerIndex) -> None:
        layout = Layout(db_root)
        seed = new_seed()
        job = PlotJob(tmp_root=layout.plots_tmp, final_dir=layout.plots, filename=plot_filename(k, seed), k=k,
                      plot_id=plot_id(hotkey, seed), threads=1, verify=True)
        async with sem:
            result = await run_plot(job)
        index.add_planned([(seed.hex(), k, estimated_plot_bytes(k))])
        index.mark_done(seed.hex(), result.bytes, result.seconds)
        index.mark_verified(seed.hex(), result.proofs_checked)

    indexes = []
    tasks = []
    for db_root, hotkey, n in jobs:
        layout = Layout(db_root).ensure()
        index = MinerIndex(layout.miner_db)
        indexes.append(index)
        tasks += [one(db_root, hotkey, index) for _ in range(n)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for index in indexes:
            index.close()
    return time.monotonic() - started


def miner_settings(root: Path, name: str, db_root: Path) -> Settings:
    """A share that holds exactly the plots already in the index: the reallocation the miner
    runs at start keeps them all and plans nothing new."""
    index = MinerIndex(Layout(db_root).miner_db)
    try:
        held = sum(p.bytes for p in index.plots())
    finally:
        index.close()
    return settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root), "wallet.name": name,
                                    "db_root_path": str(db_root), "size_in_gb": held * 1.01 / 0.9 / GB,
                                    "disable_prompt": True})


async def start_miner(root: Path, name: str, db_root: Path, pool: Optional[ProverPool] = None,
                      proof_workers: Optional[int] = None) -> MinerEngine:
    """A real MinerEngine (``start()``: registration check, plan, server, chain.serve, jobs). Once
    its first reallocation has run, its periodic jobs are paused so none runs during a measurement."""
    engine = MinerEngine(miner_settings(root, name, db_root), wallet_of(root, name), Devnet.open(root),
                         source=name, proof_workers=proof_workers, pool=pool)
    await engine.start()
    held_before = len(engine.plots)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = {j.id: j for j in engine.jobs.state()}
        if st["reallocate"].runs >= 1 and not st["reallocate"].running:
            break
        await asyncio.sleep(0.05)
    for job in ("sync", "reallocate", "scrub"):
        engine.jobs.pause(job)
    if len(engine.plots) != held_before:
        raise RuntimeError(f"{name}: reallocation changed the plots ({held_before} -> {len(engine.plots)})")
    return engine


async def stop_miner(engine: MinerEngine) -> None:
    chain = engine.chain
    await engine.stop()
    chain.close()


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type="application/json")


async def start_echo() -> Served:
    """The baseline server: plain aiohttp, same AppRunner settings as a node, no middleware,
    a handler that returns the request body."""
    app = web.Application()
    app.router.add_post("/echo", _echo)
    return await serve(app, "127.0.0.1", 0)
