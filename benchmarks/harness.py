"""What the network benchmarks share: k=18 plots bound to a miner's hotkey, a real MinerEngine
started in this process with its periodic jobs paused, the echo baseline server, a simulated
protocol-2 miner (:class:`SimMiner`) and a wait for the next proof window.

Plots are made with the same child process the allocator uses (``proofs.plotter.run_plot``)
and written into the miner's own index as verified rows, so ``MinerEngine.refresh_plots``
serves them exactly as it serves allocated plots.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional

import bittensor as bt
from aiohttp import web

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.port import ChainPort
from tensorage.config import GB, PROFILES, NetworkProfile, Settings, settings_from_namespace
from tensorage.engines.miner import MinerEngine
from tensorage.net.messages import PlotsResponse
from tensorage.net.server import Served, serve
from tensorage.proofs.answers import encode_answer
from tensorage.proofs.listing import Listing
from tensorage.proofs.plots import estimated_plot_bytes, new_seed, plot_filename, plot_id
from tensorage.proofs.plotter import PlotJob, run_plot
from tensorage.proofs.prover_pool import PlotTask, ProverPool
from tensorage.proofs.windows import MAX_PROOFS_PER_CHALLENGE, draw_sample, window_challenge, window_of, window_start
from tensorage.storage.layout import Layout
from tensorage.storage.models import MinerIndex

K = 18
WINDOW_LAG_S = 0.05  # start a window's work this long after its first block (the validator's ROUND_LAG_S)


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


def real_plots(db_root: Path, hotkey: str) -> dict[bytes, PlotTask]:
    """The plots ``make_plots`` made under ``db_root`` for ``hotkey``, as prover tasks by seed."""
    layout = Layout(db_root)
    index = MinerIndex(layout.miner_db)
    try:
        out = {}
        for row in index.plots():
            seed = bytes.fromhex(row.seed)
            out[seed] = PlotTask(seed=row.seed, path=str(layout.plots / plot_filename(row.k, seed)),
                                 plot_id=plot_id(hotkey, seed), k=row.k)
        return out
    finally:
        index.close()


class SharedListing:
    """A simulated miner's canonical listing at the limits, cheap to hold by the hundred: one
    sorted table of invented seeds shared by every simulated miner, with each miner's own real
    seeds spliced in where they sort. It reads like a Listing (len, digest, entry, entries_at)
    and makes its base64 only when asked (a validator fetches it once, then gets 304s)."""

    def __init__(self, junk: bytes, real: list[tuple[bytes, int]]) -> None:
        from tensorage.proofs.listing import ENTRY_BYTES, LISTING_DOMAIN

        self.junk, self.step = junk, ENTRY_BYTES
        self.n_junk = len(junk) // ENTRY_BYTES
        spliced = []  # (junk index it goes before, entry bytes)
        for seed, k in sorted(real):
            lo, hi = 0, self.n_junk
            while lo < hi:
                mid = (lo + hi) // 2
                if junk[mid * ENTRY_BYTES + 1:(mid + 1) * ENTRY_BYTES] < seed:
                    lo = mid + 1
                else:
                    hi = mid
            spliced.append((lo, bytes([k]) + seed))
        self.spliced = spliced
        h = hashlib.sha256(LISTING_DOMAIN + len(self).to_bytes(4, "big"))
        for part in self.parts():
            h.update(part)
        self.digest = h.digest()

    def parts(self):
        view, at = memoryview(self.junk), 0
        for before, entry in self.spliced:
            yield view[at * self.step:before * self.step]
            yield entry
            at = before
        yield view[at * self.step:]

    def __len__(self) -> int:
        return self.n_junk + len(self.spliced)

    @property
    def digest_hex(self) -> str:
        return self.digest.hex()

    def entry(self, i: int) -> tuple[bytes, int]:
        shift = 0
        for before, entry in self.spliced:
            if i == before + shift:
                return entry[1:], entry[0]
            if i > before + shift:
                shift += 1
        j = (i - shift) * self.step
        return self.junk[j + 1:j + self.step], self.junk[j]

    def entries_at(self, indices) -> list[tuple[bytes, int]]:
        return [self.entry(i) for i in indices]

    def to_b64(self) -> str:
        import base64

        return base64.b64encode(b"".join(self.parts())).decode()


def shared_junk(n: int, k: int = K) -> bytes:
    """``n`` invented plot entries at k, sorted: the table every SharedListing shares."""
    return b"".join(bytes([k]) + seed for seed in sorted(os.urandom(32) for _ in range(n)))


class SimMiner:
    """A simulated miner speaking protocol 2, cheap enough to run hundreds in one process: a plain
    aiohttp app (no signature checks) with a canonical listing (``GET /v1/plots``, 304 on its
    digest) and a well-formed answer to every window (``POST /v1/challenge``).

    It lists its ``real`` plots plus invented seeds up to ``plots`` entries (4 invented ones when
    it holds none), all at k=``k``. For each sampled plot and j it answers the real proofs of a
    real plot (looked up in the shared ``pool``) and one right-length junk proof of an invented
    one, so a validator parses and verifies about as many proofs as an honest miner sends.
    ``hostile = True`` makes it answer 8 MiB of ``{}`` instead.
    """

    hostile = False

    def __init__(self, hotkey: str, real: dict[bytes, PlotTask], pool: ProverPool, plots: Optional[int] = None,
                 k: int = K, profile: NetworkProfile = PROFILES["devnet"], junk: Optional[bytes] = None) -> None:
        """``junk``: list the real plots spliced into this shared table of invented entries
        (:class:`SharedListing`, for hundreds of miners at the listing limit) instead of ``plots``."""
        self.hotkey, self.real, self.pool, self.profile = hotkey, real, pool, profile
        if junk is not None:
            self.listing = SharedListing(junk, [(seed, k) for seed in real])
        else:
            n = plots if plots is not None else (len(real) or 4)
            entries = [(seed, k) for seed in real] + [(os.urandom(32), k) for _ in range(max(0, n - len(real)))]
            self.listing = Listing.from_plots(entries)
        self.etag = f'"{self.listing.digest_hex}"'
        self._body: Optional[bytes] = None if junk is not None else self.make_body()

    def make_body(self) -> bytes:
        return PlotsResponse(hotkey=self.hotkey, digest=self.listing.digest_hex,
                             plots=self.listing.to_b64()).model_dump_json().encode()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/v1/plots", self.plots)
        app.router.add_post("/v1/challenge", self.challenge)
        return app

    async def plots(self, request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers={"ETag": self.etag})
        body = self._body if self._body is not None else await asyncio.to_thread(self.make_body)
        return web.Response(body=body, content_type="application/json", headers={"ETag": self.etag})

    async def challenge(self, request: web.Request) -> web.Response:
        if self.hostile:
            return web.Response(body=b"[" + b"{}," * ((8 << 20) // 3) + b"{}]", content_type="application/json")
        req = json.loads(await request.read())
        c = window_challenge(bytes.fromhex(req["beacon"]), req["window"])
        sample = draw_sample(self.profile, c, self.hotkey, self.listing)
        per_plot = self.profile.challenges_per_plot
        tasks = [self.real[p.seed] for p in sample if p.seed in self.real]
        found = {}
        if tasks:
            found = {(seed, j): list(dict.fromkeys(proofs))[:MAX_PROOFS_PER_CHALLENGE]  # as MinerEngine does
                     for seed, j, proofs in await self.pool.prove(tasks, c, per_plot) if j is not None}
        proofs = [[found.get((p.seed.hex(), j), []) if p.seed in self.real else [os.urandom(8 * p.k)]
                   for j in range(per_plot)] for p in sample]
        return web.Response(body=encode_answer(req["window"], self.listing.digest_hex, proofs),
                            content_type="application/json")


async def next_window(chain: ChainPort, profile: NetworkProfile, lag_s: float = WINDOW_LAG_S) -> int:
    """Sleep until a window begins (plus ``lag_s``, so its first block is readable); returns it."""
    while True:
        head = chain.block()
        w = window_of(head, profile) + 1
        begins = chain.block_timestamp(head) + (window_start(w, profile) - head) * chain.block_time()
        await asyncio.sleep(max(0.0, begins - time.time() + lag_s))
        if window_of(chain.block(), profile) == w:
            return w
