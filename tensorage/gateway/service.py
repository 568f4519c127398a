"""The validator's client gateway (docs/design.md#client-data): clients store, list, retrieve and
delete their encrypted, erasure-coded objects; the gateway wraps every shard with a keystream only
it knows, certifies each shard to the miner that holds it (protocol 3: every validator then checks
it in the proof windows), places the n shards of a segment on n miners picked at random among the
well-scored ones, keeps the manifest in SQLite, re-checks, repairs, renews and collects garbage.

The package: ``http`` (client endpoints), ``placement``, ``retrieval``, ``repair``,
``certificates``, ``peers`` (the miners' shard endpoints), ``spool`` (working files), ``backup``.
The validator hands each window's verdicts to :meth:`Gateway.window_verdicts` (a chunk of one of
this gateway's shards came back wrong or missing: that shard becomes suspect; a miner that did
not answer is silent) and adds the jobs with :meth:`Gateway.add_jobs`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Iterable, Optional

import bittensor as bt

from ..chain.port import Metagraph
from ..config import Settings
from ..errors import ConfigError
from ..events import EventBus, ShardLost
from ..net.client import SignedClient
from ..scheduler import Jobs
from ..storage.gateway_db import GatewayStore
from ..storage.layout import Layout
from ..storage.wrap import SECRET_FILE, load_or_create_secret
from .http import ObjectRoutes
from .peers import ShardPeers
from .repair import LOST_AFTER
from .spool import Spool

MIN_UPKEEP_S = 10.0  # repair, certify and gc run at most this often by default (devnet windows are 3 s)


class Gateway(ObjectRoutes):
    def __init__(self, settings: Settings, layout: Layout, hotkey: str, client: SignedClient,
                 metagraph: Callable[[], Optional[Metagraph]], rank: Callable[[], dict[str, float]] = dict,
                 head_block: Callable[[], int] = lambda: 0, bus: Optional[EventBus] = None,
                 source: str = "validator") -> None:
        self.settings = settings
        self.cfg = settings.gateway
        self.profile = settings.profile
        self.hotkey = hotkey
        self.bus = bus or EventBus()
        self.source = source
        self.rank = rank
        self.head_block = head_block
        self.replace_after_s = self.cfg.replace_after_s or max(120.0, 12 * self.profile.window_s)
        self.recheck_s = self.profile.window_s  # a suspect shard is re-checked at most once a window
        # a miner changes its listing at most once per sync period, and a validator reads it once per
        # sync period: a shard placed longer ago than this is in the listing of an honest miner
        self.listing_grace_s = 2 * self.profile.sync_s + 2 * self.profile.window_s
        self.signer = client.signer
        if self.signer.crypto_type != bt.sp_core.CRYPTO_SR25519:
            raise ConfigError(f"hotkey {hotkey} is not sr25519: a gateway signs shard certificates that every "
                              f"validator checks as sr25519 (make the hotkey with btcli's defaults), or run with "
                              f"--gateway.disable")
        layout.ensure()
        self.db = GatewayStore(layout.index / "gateway.sqlite")
        self.secret = load_or_create_secret(layout.index / SECRET_FILE)
        self.spool = Spool(layout.spool)
        self.peers = ShardPeers(client, metagraph, hotkey)
        self.active: set[str] = set()  # objects being uploaded by this process
        self._tasks: set[asyncio.Task] = set()
        self._uploads: dict[str, int] = {}  # client -> uploads in flight
        self._retrieves = 0
        if self.db.upgraded_from is not None:
            self.bus.log("gateway manifest from protocol 2 kept aside (shards_v2): its shards are not certified and "
                         "cannot be proven in windows until placed again", severity="warning", source=source)
        for obj in self.db.objects_in("storing"):
            self.db.doom_object(obj.id, "failed", "interrupted by a validator restart")
        self.db.doom_unfinished_repairs()

    # -- composition ------------------------------------------------------------------------
    def add_jobs(self, jobs: Jobs, round_s: float) -> None:
        """``repair`` (re-checks included), ``certify`` and ``gc``."""
        upkeep = self.cfg.repair_s or max(round_s, MIN_UPKEEP_S)
        jobs.add("repair", self.run_repair, upkeep, first_in=None)
        jobs.add("certify", self.run_certify, upkeep, first_in=None)
        jobs.add("gc", self.run_gc, upkeep, first_in=None)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.db.close()

    async def run_repair(self) -> str:
        from .repair import repair

        return await repair(self)

    async def run_certify(self) -> str:
        from .certificates import renew

        return await renew(self)

    async def run_gc(self) -> str:
        from .repair import collect_garbage

        return await collect_garbage(self)

    # -- what windows tell the gateway --------------------------------------------------------
    def window_verdicts(self, outcomes: Iterable) -> int:
        """Each miner's window outcome (``window_checks.RoundOutcome``): a chunk of this gateway's
        shard that came back wrong or missing makes that shard suspect (re-checked by the repair
        job); whether the miner answered at all is its standing. Returns shards made suspect."""
        made = 0
        for out in outcomes:
            self.peers.note_window(out.hotkey, out.result not in ("timeout", "unreachable"))
            mine = {shard: (chunk, why) for gateway, shard, chunk, why in out.bad_chunks if gateway == self.hotkey}
            for row in self.db.shards_by_id(out.hotkey, list(mine)):
                chunk, why = mine[row.hash]
                made += self.suspect(row, f"window: {why}", chunk)
        return made

    def listing_seen(self, hotkey: str, listing) -> int:
        """A miner's new listing: this gateway's healthy shards on it that it should list by now (placed
        more than two sync periods and two windows ago, certificate live) and does not are suspect. A
        miner that quietly drops a shard from its listing stops being checked on it in windows; the
        gateway would otherwise only learn of it from a download. Returns shards made suspect."""
        mine = {c.shard_hex for c in listing.iter_certificates() if c.gateway_hotkey == self.hotkey}
        due = self.db.listed_due(hotkey, time.time() - self.listing_grace_s, self.head_block())
        return sum(self.suspect(r, "its miner's listing no longer carries it") for r in due if r.hash not in mine)

    def suspect(self, row, reason: str, chunk: Optional[int] = None) -> bool:
        if self.db.suspect(row.id, reason, chunk):
            self.bus.log(f"shard {row.idx} of {row.object_id[:12]} segment {row.segment} on {row.miner[:8]} is "
                         f"suspect: {reason}", severity="warning", source=self.source)
            return True
        return False

    def locate_later(self, row, received: list[bytes]) -> None:
        """A download came back wrong: find which chunk differs (the miner's signed leaf hashes against
        those of what arrived), so the re-checks ask for that very chunk."""
        task = asyncio.ensure_future(self._locate(row, received))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _locate(self, row, received: list[bytes]) -> None:
        miner = self.peers.neuron(row.miner)
        if miner is None:
            return
        verdict = await self.peers.check(miner, row.hash, row.size, [], leaves=True)
        if verdict.outcome == "wrong":
            if self.db.checked(row.id, False, f"re-check: {verdict.detail}") >= LOST_AFTER:
                self.lose(row, f"{LOST_AFTER} signed re-checks in a row failed ({verdict.detail})")
        elif verdict.outcome == "right" and verdict.leaves is not None:
            differ = next((i for i, leaf in enumerate(verdict.leaves) if i >= len(received) or received[i] != leaf),
                          None)
            if differ is not None:
                self.db.update_shard(row.id, bad_chunk=differ)

    def lose(self, row, reason: str) -> None:
        if self.db.mark_lost(row.id, reason):
            self.lost(row, reason)

    def lost(self, row, reason: str) -> None:
        self.bus.publish(ShardLost(object_id=row.object_id, segment=row.segment, index=row.idx,
                                   miner_hotkey=row.miner, reason=reason, source=self.source))

    def snapshot(self) -> dict:
        return {"gateway": {**self.db.stats(), "uploading": len(self.active), "retrieving": self._retrieves}}

