"""The miner: serves its plot list and proofs over signed HTTP, keeps its disk allocated.

Proof lookups run in a process pool (chiapos holds the GIL). Reallocation and a
scrub of the plots are scheduled jobs. Proof windows are answered once per (window,
listing) by :class:`WindowAnswerer`. Adversarial miners in the tests subclass this and
override :meth:`listed_plots`, :meth:`current_listing`, :meth:`prove_sample` or
:meth:`window_answer`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import bittensor as bt
from aiohttp import web

from .. import PROTOCOL_VERSION
from ..chain.port import ChainPort
from ..config import Settings
from ..errors import PlotError, TensorageError
from ..events import (ChallengeServed, DiskLost, DiskReturned, ErrorEvent, EventBus, PlotDone, PlotRemoved,
                      PlotVerified, ShardEvent)
from ..net.auth import BODY, CALLER, OPERATOR, VALIDATOR, access
from ..net.errors import parse, reject
from ..net import operator as op
from ..net.messages import PlotsResponse, WindowChallenge
from ..proofs.certificates import Certificate
from ..proofs.listing import Listing
from ..proofs.plots import plot_filename, plot_id
from ..proofs.prover_pool import PlotTask, ProverPool
from ..proofs.windows import MAX_PROOFS_PER_CHALLENGE, SampledChunk
from ..storage import share as stored_share
from .window_answers import ASKED_BY, WindowAnswerer
from ..storage.models import PlotState
from ..storage.partition import PartitionPlan
from .disks import DiskSet
from .node import Node
from .shard_routes import ShardService

SCRUB_SAMPLE = 8
# How often the disks job probes every disk: a lost disk's plots leave the listing within this and
# a sync period (a failing lookup or scrub probes its disk at once).
DISK_CHECK_MAX_S = 30
MAX_DEADLINE_AHEAD_S = 300.0


@dataclass(frozen=True)
class HeldPlot:
    seed: str
    k: int
    path: Path
    plot_id: bytes
    disk: str = ""  # the --db_root_path directory it is on
    queue: str = ""  # its disk's lookup queue (directories of one device share one)


class MinerEngine(Node):
    role = "miner"

    def __init__(self, settings: Settings, wallet: bt.Wallet, chain: ChainPort, bus: Optional[EventBus] = None,
                 source: Optional[str] = None, proof_workers: Optional[int] = None,
                 pool: Optional[ProverPool] = None) -> None:
        super().__init__(settings, wallet, chain, bus, source)
        # The share stored with the node wins over an unchanged flag (storage.share has the rule).
        self.share_flags = stored_share.flags_of(settings)
        self.settings, self.share, self._share_is_new = stored_share.resolve(settings, self.layout)
        self.allocator = DiskSet(self.settings, self.hotkey, self.bus, self.source)  # one Allocator per disk
        self.shards = ShardService(self.layout, self.allocator, self.allocator.home_share_bytes, self.hotkey,
                                   bt.resolve_signer(wallet, role="hotkey"), self.stake_share,
                                   self.profile.max_listed_shards, self.bus, self.source,
                                   lambda: self.settings.max_shard_fraction, self.max_certificate_expiry)
        # ``pool``: a ProverPool shared by several miners in one process (benchmarks); its owner closes it.
        self._owns_pool = pool is None
        self.pool = pool if pool is not None else ProverPool(proof_workers or self.settings.proof_processes)
        self.plots: dict[str, HeldPlot] = {}
        self.windows_answered: Counter[str] = Counter()  # looked_up | shared -> challenges answered
        self._listing: Optional[Listing] = None
        self._listed_state: tuple = ({}, -1)  # (plots, shard generation) the listing was last built from
        self._listed_at = 0.0
        # looked up per call, so a subclass's prove_sample / prove_chunks is the one used
        self.answerer = WindowAnswerer(self.profile, self.chain, self.hotkey,
                                       lambda entries, c, j: self.prove_sample(entries, c, j),
                                       lambda chunks: self.prove_chunks(chunks))
        self._alloc_task: Optional[asyncio.Task] = None
        self.bus.subscribe(self._on_plot_event)

    # plots ----------------------------------------------------------------------------------
    def refresh_plots(self) -> None:
        """The plots we stand behind: verified ones (or made ones with --disable_verify)."""
        states = [PlotState.VERIFIED] + ([PlotState.DONE] if self.settings.disable_verify else [])
        held = {}
        for disk, row in self.allocator.held_rows(*states):  # a lost disk's plots are not held
            seed = bytes.fromhex(row.seed)
            held[row.seed] = HeldPlot(seed=row.seed, k=row.k, path=disk.layout.plots / plot_filename(row.k, seed),
                                      plot_id=plot_id(self.hotkey, seed), disk=str(disk.root),
                                      queue=disk.queue or str(disk.root))
        self.plots = held

    def _on_plot_event(self, event) -> None:
        # a plot is held once verified (or once made, with --disable_verify), and no longer once removed
        made = PlotDone if self.settings.disable_verify else PlotVerified
        if isinstance(event, (made, PlotRemoved)) and event.source == self.source:
            self.refresh_plots()
        elif isinstance(event, (DiskLost, DiskReturned)) and event.source == self.source:
            self.refresh_plots()  # whoever noticed (the disks job, a lookup, a reallocation): out or back now
        elif isinstance(event, ShardEvent) and event.source == self.source and event.action != "refused":
            self.write_state()  # the shard counts in node.json follow the shard store (off the loop, coalesced)

    def plot_count(self) -> int:
        return len(self.plots)

    @property
    def challenges_served(self) -> int:
        """Window challenges answered, looked up or shared."""
        return sum(self.windows_answered.values())

    def listed_plots(self) -> list[tuple[bytes, int]]:
        """(seed, k) of every plot this miner stands behind."""
        return [(bytes.fromhex(p.seed), p.k) for p in self.plots.values()]

    def listed_certificates(self) -> list[Certificate]:
        """The certificates of the client shards this miner holds that still count."""
        mg = self.metagraph
        return self.shards.store.certificates(mg.block if mg is not None else 0)

    def max_certificate_expiry(self) -> Optional[int]:
        """The latest expiry block this miner takes in a certificate: two certificate lives from the
        chain's head (slack for renewals and a lagging node); None before the first sync."""
        mg = self.metagraph
        return mg.block + 2 * self.profile.cert_lifetime_blocks if mg is not None else None

    def stake_share(self, hotkey: str) -> float:
        """A validator's share of the stake of every validator with a permit (the metagraph's)."""
        mg = self.metagraph
        if mg is None:
            return 0.0
        total = sum(n.total_stake for n in mg.validators)
        n = mg.by_hotkey(hotkey)
        return n.total_stake / total if n is not None and n.validator_permit and total > 0 else 0.0

    def current_listing(self) -> Listing:
        """The canonical listing of what this miner holds (plots and shard certificates), changed
        at most once per sync period (engines/window_answers.py says which of the listings before it
        are still answered, and for how long). The bytes of shards that left it are removed once no
        listing it answers for names them."""
        state = (self.plots, self.shards.store.generation)
        now = time.monotonic()
        changed = self._listing is None or self._listed_state[0] is not self.plots or \
            self._listed_state[1] != state[1]
        if changed and (self._listing is None or now - self._listed_at >= self.profile.sync_s):
            self._listed_state = state
            listing = Listing.from_plots(self.listed_plots(), self.listed_certificates())
            if self._listing is None or listing.digest != self._listing.digest:  # the same plots re-read: no change
                self._listing, self._listed_at = listing, now
                self.answerer.remember(listing)
                self.shards.store.purge(self.answerer.shards_answered())
        elif self.answerer.expire():
            # a listing no validator can still hold as its snapshot stopped being answered: the
            # bytes of shards only it named can go
            self.shards.store.purge(self.answerer.shards_answered())
        return self._listing  # type: ignore[return-value]

    async def prove_sample(self, entries: list[tuple[bytes, int]], challenge: bytes,
                           per_plot: int) -> list[list[list[bytes]]]:
        """Proofs for each sampled (seed, k) and j < per_plot; none for a plot not held (or held
        with another k): the validator then sees fewer proofs than expected, nothing else."""
        held = {}
        for seed, k in entries:
            plot = self.plots.get(seed.hex())
            if plot is not None and plot.k == k:
                held[plot.seed] = plot
        tasks = [PlotTask(seed=p.seed, path=str(p.path), plot_id=p.plot_id, k=p.k, disk=p.queue or p.disk)
                 for p in held.values()]
        found: dict[tuple[str, int], list[bytes]] = {}
        for seed, j, payload in await self.pool.prove(tasks, challenge, per_plot):
            if j is None:  # the plot could not be read: say so (the scrub will deal with it), and check its disk
                if self.removed_on_purpose(held[seed]):
                    continue  # removed during the lookup (client shards took its room): no proof, no error
                self.bus.publish(ErrorEvent(message=f"plot {seed[:8]} unreadable during a challenge: {payload}",
                                            source=self.source))
                await self.disk_trouble(held[seed].disk, payload)
                continue
            found[(seed, j)] = list(dict.fromkeys(payload))[:MAX_PROOFS_PER_CHALLENGE]
        return [[found.get((seed.hex(), j), []) for j in range(per_plot)] for seed, _ in entries]

    def removed_on_purpose(self, plot: HeldPlot) -> bool:
        """A plot this miner removed itself (a reallocation, client shards, a smaller share) since the
        lookup began: its file is gone on purpose, so a failed read of it is no fault of the disk."""
        if self.plots.get(plot.seed) is plot:
            return False
        self.refresh_plots()  # the event that removed it may not have reached us yet
        return plot.seed not in self.plots

    async def prove_chunks(self, chunks: list[SampledChunk]) -> list[Optional[bytes]]:
        """Each sampled shard chunk with its Merkle path, read off the event loop; None for one this
        miner cannot produce (the validator then fails the window, as it should)."""
        if not chunks:
            return []
        return await asyncio.to_thread(self.shards.store.read_proofs, chunks)

    async def window_answer(self, req: WindowChallenge) -> tuple[bytes, bool]:
        """The answer bytes for a window, and whether this request looked them up (adversaries in
        the tests override this)."""
        self.answerer.remember(self.current_listing())
        return await self.answerer.answer(req)

    # http ------------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/plots", self.handle_plots)
        app.router.add_post("/v1/challenge", self.handle_challenge)
        app.router.add_post(op.SHARE_PATH, self.handle_share)
        self.shards.add_routes(app)

    @access(OPERATOR)
    async def handle_share(self, request: web.Request) -> web.Response:
        """An attached console's allocation wizard: take a new share now. Checked before anything
        changes; a share that removes plots needs ``remove_plots`` (a person said yes to it)."""
        req = parse(op.ShareRequest, request[BODY])
        try:
            settings, plan = await asyncio.to_thread(self.check_share, req.size_in_gb, req.workers)
        except TensorageError as exc:
            reject(400, "does_not_fit", str(exc))
        if plan.remove and not req.remove_plots:
            reject(409, "would_remove_plots", f"a {req.size_in_gb:g} GB share removes {len(plan.remove)} plot(s) "
                                              f"({plan.remove_reason}): ask the operator, then send remove_plots")
        task = asyncio.ensure_future(self.set_share(req.size_in_gb, req.workers))
        task.add_done_callback(self._share_done)
        reply = op.ShareReply(size_in_gb=settings.size_in_gb, workers=req.workers, plots_to_make=len(plan.add),
                              plots_to_remove=len(plan.remove))
        return web.Response(body=reply.model_dump_json(), status=202, content_type="application/json")

    def _share_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.bus.publish(ErrorEvent(message=f"allocation failed: {task.exception()}", source=self.source))

    @access(VALIDATOR)
    async def handle_plots(self, request: web.Request) -> web.Response:
        """The current listing; ``If-None-Match`` with its digest answers 304 (nothing to resend)."""
        listing = self.current_listing()
        self.answerer.remember(listing)
        self.answerer.fetched(request[CALLER].hotkey_ss58, listing.digest_hex)  # a 304 keeps it as well
        etag = f'"{listing.digest_hex}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        body = PlotsResponse(hotkey=self.hotkey, digest=listing.digest_hex, plots=listing.to_b64(),
                             shards=listing.certs_b64())
        return web.Response(body=body.model_dump_json().encode(), content_type="application/json",
                            headers={"ETag": etag})

    @access(VALIDATOR)
    async def handle_challenge(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        req = parse(WindowChallenge, request[BODY])
        if req.protocol != PROTOCOL_VERSION:
            reject(426, "protocol", f"validator speaks protocol {req.protocol}, this miner {PROTOCOL_VERSION}: "
                                    f"upgrade the older side")
        now = time.time()
        if req.deadline < now:
            reject(408, "deadline_passed", f"the deadline passed {now - req.deadline:.2f}s before the challenge "
                                           f"arrived: check the validator's clock (NTP)")
        if req.deadline > now + MAX_DEADLINE_AHEAD_S:
            reject(400, "bad_request", f"deadline more than {MAX_DEADLINE_AHEAD_S:.0f}s ahead: check the clock")
        ASKED_BY.set(request[CALLER].hotkey_ss58)  # this request's task only
        answer, fresh = await self.window_answer(req)
        self.windows_answered["looked_up" if fresh else "shared"] += 1
        plots, proofs = self.answerer.sizes.get((req.window, req.listing), (0, 0))
        self.bus.publish(ChallengeServed(validator_hotkey=request[CALLER].hotkey_ss58, plots=plots, proofs=proofs,
                                         latency_ms=(time.perf_counter() - started) * 1000, window=req.window,
                                         cached=not fresh, source=self.source))
        return web.Response(body=answer, content_type="application/json")

    # jobs -------------------------------------------------------------------------------------
    async def reallocate(self) -> str:
        if self._alloc_task is not None and not self._alloc_task.done():
            return "allocation still running"
        self._alloc_task = asyncio.ensure_future(self.allocator.reallocate())
        plan = await self._alloc_task
        self.refresh_plots()
        return f"{len(plan.keep) + len(plan.add)} plots planned ({len(plan.add)} made, {len(plan.remove)} removed)"

    def check_share(self, size_in_gb: float, workers: Optional[int] = None) -> tuple[Settings, PartitionPlan]:
        """Blocking, read-only: the settings and plan a new share would run with. Raises
        (ConfigError, NotEnoughSpace, DiskError) before anything changes."""
        update: dict[str, Any] = {"size_in_gb": size_in_gb}
        if workers is not None:
            update["workers"] = workers
        settings = self.settings.model_copy(update=update).validate_ranges()
        return settings, self.allocator.plan(settings.size_bytes)

    async def set_share(self, size_in_gb: float, workers: Optional[int] = None) -> str:
        """Take a new share (and plotting workers), store it with the node so a restart keeps it,
        and allocate it now: what the console's allocation wizard confirms. Waits for an allocation
        already running, then reallocates."""
        settings, _ = await asyncio.to_thread(self.check_share, size_in_gb, workers)
        self.settings = self.allocator.settings = settings
        stored = await asyncio.to_thread(stored_share.store, self.layout, settings.size_in_gb, settings.workers,
                                         "console", self.share_flags)
        self.share = stored_share.ShareState(size_in_gb=settings.size_in_gb, workers=settings.workers,
                                             source="stored", detail=stored_share.describe(stored))
        self.bus.log(f"share {settings.size_in_gb:g} GB with {settings.workers} worker(s) stored with the node: "
                     f"restarts keep it", source=self.source)
        if self._alloc_task is not None and not self._alloc_task.done():
            await asyncio.gather(self._alloc_task, return_exceptions=True)
        return await self.reallocate()

    async def scrub(self) -> str:
        """Re-verify a sample of plots with sample challenges; drop the ones that fail."""
        sample = random.sample(list(self.plots.values()), min(SCRUB_SAMPLE, len(self.plots)))
        bad = 0
        for p in sample:
            if p.disk and not self._disk_ok(p.disk):
                continue  # its disk was lost during this scrub: its plots wait for it, untouched
            try:
                await self.pool.check(p.path, p.plot_id, p.k, p.queue or p.disk)
            except (PlotError, OSError) as exc:
                if self.removed_on_purpose(p):
                    continue  # removed during the scrub (client shards took its room): not a failed plot
                if isinstance(exc, OSError) and await self.disk_trouble(p.disk, str(exc)):
                    continue  # the disk is lost, not the plot
                bad += 1
                self.allocator.forget_plot(p.seed, p.k, p.disk or None)
                self.bus.publish(PlotRemoved(seed=p.seed, k=p.k, reason=f"failed scrub: {exc}", source=self.source))
        self.refresh_plots()
        return f"{len(sample)} plots checked, {bad} removed"

    def _disk_ok(self, root: str) -> bool:
        disk = self.allocator.disk_at(root)
        return disk is None or disk.ok

    async def disk_trouble(self, root: str, reason: str) -> bool:
        """A lookup or scrub on ``root`` failed: probe the disk (off the loop); True when that lost it
        (its plots leave the listing, the node goes on with the others)."""
        if not root:
            return False
        lost = await asyncio.to_thread(self.allocator.trouble, root, reason)
        if lost is not None:
            self.refresh_plots()
            self.write_state()
        return lost is not None

    async def check_disks(self) -> str:
        """The disks job: lose the disks that went away, bring back the ones that read again."""
        changes = await asyncio.to_thread(self.allocator.check_disks)
        if changes:
            self.refresh_plots()
            self.write_state()
        lost = sum(not d.ok for d in self.allocator.disks)
        return "; ".join(changes) or f"{len(self.allocator.disks) - lost} disk(s) ok, {lost} lost"

    async def shard_upkeep(self) -> str:
        """Re-hash a sample of shards; shards whose certificate expired more than the grace period
        ago leave the listing (their gateway stopped renewing them)."""
        scrubbed = await self.shards.scrub()
        mg = self.metagraph
        expired = self.shards.store.expire(mg.block, self.profile.cert_grace_blocks) if mg is not None else 0
        return f"{scrubbed}; {expired} shards past their certificate's grace period dropped"

    async def sync(self) -> str:
        mg = await self.sync_metagraph()
        return f"block {mg.block}, {len(mg.validators)} validators"

    async def start(self) -> None:
        await self.require_registered()
        await asyncio.to_thread(self.allocator.plan)  # refuses an impossible share before anything is written
        self.allocator.ensure()
        await asyncio.to_thread(self.allocator.lock, self.role)  # the other disks are this node's too
        if self._share_is_new:  # a changed flag is the operator's latest decision: keep it
            await asyncio.to_thread(stored_share.store, self.layout, self.settings.size_in_gb,
                                    self.share_flags[1], "flag", self.share_flags)
            self._share_is_new = False
        self.bus.log(f"share {self.share.size_in_gb:g} GB ({self.share.source}: {self.share.detail})",
                     source=self.source)
        self.refresh_plots()
        await self.pool.warm()
        await self.start_server()
        self.jobs.add("sync", self.sync, self.profile.sync_s, first_in=None)
        self.jobs.add("reallocate", self.reallocate, self.settings.reallocate_interval, first_in=0)
        self.jobs.add("scrub", self.scrub, self.profile.scrub_s, first_in=None)
        self.jobs.add("shard_scrub", self.shard_upkeep, self.profile.scrub_s, first_in=None)
        self.jobs.add("disks", self.check_disks, min(DISK_CHECK_MAX_S, self.profile.sync_s), first_in=None)
        self.jobs.start()
        self.write_state()

    async def stop(self) -> None:
        if self._alloc_task is not None and not self._alloc_task.done():
            self._alloc_task.cancel()
            await asyncio.gather(self._alloc_task, return_exceptions=True)
        self.answerer.close()
        await super().stop()
        if self._owns_pool:
            self.pool.close()
        self.allocator.unlock()
        self.allocator.close()
        self.shards.close()

    def snapshot(self) -> dict[str, Any]:
        st = self.allocator.status
        return {**super().snapshot(), "plots_held": len(self.plots), "challenges_served": self.challenges_served,
                "allocating": st.busy, "eta_s": st.eta_s, "allocator": st.as_dict(),
                "share": self.share.model_dump(), "disks": self.allocator.disk_states(self.plots_per_disk()),
                **self.shards.snapshot()}

    def plots_per_disk(self) -> dict[str, int]:
        held: dict[str, int] = {}
        for p in self.plots.values():
            held[p.disk] = held.get(p.disk, 0) + 1
        return held
