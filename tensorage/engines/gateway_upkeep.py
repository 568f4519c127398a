"""The gateway's scheduled upkeep: repair lost shards, refill spent audits, collect garbage.

* **repair**: shards on miners that left the subnet are lost; every segment with fewer than n
  healthy shards is rebuilt from k of them (fetched, checked, unwrapped, zfec-decoded), its
  missing shards re-encoded, wrapped under new keys and placed on miners that hold no live shard
  of that segment (one whose shard here was lost only when no other miner can take it). A segment
  with fewer than k healthy shards marks its object damaged.
* **refill** (on its own schedule, as proof windows spend audits): a healthy shard whose audits are
  spent is downloaded once, its hash checked, and given a new set (docs/design.md#client-data); a
  shard that comes back wrong is lost, and repaired.
* **gc**: declarations never uploaded expire; interrupted stores and removed objects have their
  shards deleted from miners; the manifest forgets them once the miners confirm.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..client.erasure import StripeDecoder, StripeEncoder
from ..events import ObjectEvent, ShardRepaired
from ..storage.audits import make_audits
from ..storage.gateway_db import LIVE_SHARDS
from .gateway_peers import FetchError
from .gateway_spool import Spool, finish_sync, rebuild_sync

if TYPE_CHECKING:
    from .gateway import Gateway

REFILLS_PER_RUN = 16
MAX_DELETE_ATTEMPTS = 20
REPAIR_BATCH_BYTES = 1 << 20


class PlacementUnavailable(Exception):
    """Not enough miners outside a segment's holders to place its repaired shards."""


async def repair(gw: "Gateway") -> str:
    present = {n.hotkey for n in (gw.peers.metagraph().neurons if gw.peers.metagraph() else [])}
    gone = 0
    if present:
        for miner in gw.db.miners_with_live_shards():
            if miner not in present:
                for row in gw.db.lose_miner(miner, "its miner left the subnet"):
                    gone += 1
                    gw.bus.log(f"shard {row.idx} of {row.object_id[:12]} lost: miner {miner[:8]} deregistered",
                               severity="warning", source=gw.source)
    repaired = failed = 0
    for object_id, seg in gw.db.segments_below(lambda o: o.n):
        obj = gw.db.get(object_id)
        if obj is None or obj.id in gw.active:
            continue
        try:
            repaired += await repair_segment(gw, obj, seg)
        except Exception as exc:  # one segment's trouble never stops the others
            failed += 1
            gw.bus.log(f"repair of {obj.id[:12]} segment {seg} failed: {exc}", severity="warning", source=gw.source)
    return f"{repaired} shards repaired, {failed} segments failed, {gone} lost with their miners"


async def repair_segment(gw: "Gateway", obj, seg: int) -> int:
    from .gateway import SegmentUnavailable

    rows = gw.db.segment_shards(obj.id, seg)
    healthy = [r for r in rows if r.state == "healthy"]
    if len(healthy) < obj.k:
        if obj.state != "damaged":
            gw.db.set_state(obj.id, "damaged", f"segment {seg} has {len(healthy)} healthy shards, needs {obj.k}")
            gw.bus.publish(ObjectEvent(action="damaged", object_id=obj.id, client=obj.client,
                                       detail=f"segment {seg}: {len(healthy)} of {obj.k} shards", source=gw.source))
        return 0
    have = {r.idx for r in healthy}
    missing = [i for i in range(obj.n) if i not in have]
    stale = [r.id for r in rows if r.state != "healthy" and r.state != "doomed"]
    # Never two live shards of a segment on one miner. A miner whose shard here was lost (it was
    # down, or failed an audit) may take a new one, but only when no other miner can: with exactly
    # n miners it is the only way back to n healthy shards.
    holders = frozenset(r.miner for r in rows if r.state in LIVE_SHARDS)
    lost_on = frozenset(r.miner for r in rows if r.state not in LIVE_SHARDS) - holders
    room = gw.peers.candidates(max(r.size for r in rows), exclude=set(holders), last=set(lost_on))
    if len(room) < len(missing):
        raise PlacementUnavailable(f"{len(missing)} shards to place and {len(room)} miners without a live shard of "
                                   f"this segment can take them")
    started = time.perf_counter()
    try:
        got = await gw.fetch_segment(obj, seg)
    except SegmentUnavailable:
        return 0  # the next run sees what was lost meanwhile
    writers = gw.spool.writers(f"fix-{obj.id}-{seg}", missing, gw.secret)
    try:
        decoder, encoder = StripeDecoder(obj.k, obj.n), StripeEncoder(obj.k, obj.n, obj.block)
        per_batch = max(1, REPAIR_BATCH_BYTES // (obj.k * obj.block))
        done = 0
        while done < got.stripes:
            m = min(per_batch, got.stripes - done)
            await asyncio.to_thread(rebuild_sync, got.paths, got.indices, done, m, obj.block, decoder, encoder,
                                    writers)
            done += m
        shards = await asyncio.to_thread(finish_sync, writers)
        placed = await gw._place_segment(obj, seg, shards, exclude=holders, state="placed", last=lost_on)
    finally:
        for _, f in writers:
            f.close()
        Spool.remove([s.path for s, _ in writers] + list(got.paths))
    gw.db.replace(stale, [row for _, row in placed])
    if obj.state == "damaged" and gw.db.health([obj.id]).get(obj.id, 0) >= obj.k:
        gw.db.set_state(obj.id, "stored", only_from=["damaged"])
    gw.bus.publish(ShardRepaired(object_id=obj.id, segment=seg, indices=missing, miners=[m for m, _ in placed],
                                 seconds=time.perf_counter() - started, source=gw.source))
    return len(missing)


async def refill(gw: "Gateway", limit: int = REFILLS_PER_RUN) -> int:
    """New audits for shards that spent theirs, from one checked download each."""
    done = 0
    for row in gw.db.needing_audits(limit):
        miner = gw.peers.neuron(row.miner)
        if miner is None:
            continue
        path = gw.spool.path(f"refill-{row.id}")
        try:
            await gw.peers.fetch(miner, row.hash, row.size, path, unwrap=None)
            audits = await asyncio.to_thread(make_audits, path, row.size, gw.cfg.audits_per_shard)
        except FetchError as exc:
            if exc.kind in ("corrupt", "missing"):
                gw._lose(row.id, f"{exc.kind} when downloaded for new audits: {exc}")
            continue
        finally:
            path.unlink(missing_ok=True)
        gw.db.add_audits(row.id, audits)
        done += 1
    return done


async def collect_garbage(gw: "Gateway") -> str:
    now = time.time()
    expired = 0
    for obj in gw.db.objects_in("declared"):
        if obj.expires_at is not None and obj.expires_at < now and obj.id not in gw.active:
            gw.db.drop_object_if_empty(obj.id)
            expired += 1
    for obj in gw.db.objects_in("storing"):
        if obj.id not in gw.active:
            gw.db.doom_object(obj.id, "failed", obj.reason or "the upload stopped")
    for obj in gw.db.objects_in("failed", "deleting"):
        gw.db.doom_object(obj.id, obj.state, obj.reason)  # shards placed since (a repair in flight) go too
    deleted = kept = 0
    rows = gw.db.doomed()
    results = await asyncio.gather(*(_delete(gw, row) for row in rows))
    for row, outcome in zip(rows, results):
        if outcome in ("ok", "refused") or row.attempts + 1 >= MAX_DELETE_ATTEMPTS:
            gw.db.forget_shard(row.id)
            deleted += 1
        else:
            gw.db.update_shard(row.id, attempts=row.attempts + 1)
            kept += 1
    dropped = sum(gw.db.drop_object_if_empty(o.id) for o in gw.db.objects_in("failed", "deleting"))
    return f"{deleted} shards deleted, {kept} to retry, {dropped} objects forgotten, {expired} declarations expired"


async def _delete(gw: "Gateway", row) -> str:
    miner = gw.peers.neuron(row.miner)
    if miner is None:
        return "refused"  # the miner left: nobody to ask, nothing it holds counts
    return await gw.peers.delete(miner, row.hash)
