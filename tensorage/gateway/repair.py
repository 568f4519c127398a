"""The gateway's upkeep: re-check suspect shards, repair segments, collect garbage. Nothing here
destroys data on anything but verifiable evidence, and nothing is doomed before its replacement
is placed.

* **re-check**: a suspect shard (a window or a download found a chunk wrong or missing) is asked
  for that chunk and a few random ones. Only a reply the miner signed counts: right makes it
  healthy again; wrong or "not held" is one failure; ``LOST_AFTER`` in a row make it lost. No
  answer, an unsigned one, or a refusal about the request itself (version, clock, rate, our own
  outage) changes nothing.
* **repair**: a segment is rebuilt from any k shards that come back intact (healthy first, then
  suspect and lost ones: their bytes may still be there) and the missing ones placed on miners
  that hold nothing of it, when an index has no live shard (lost, or its miner left the subnet),
  when its miner has been silent in windows for ``replace_after_s``, or at once for every index
  not known good when only k+1 good shards are left. The shards replaced stay sources until the
  replacement is placed; then they are doomed.
* **gc**: declarations never uploaded expire; interrupted stores, removed objects and replaced
  shards are deleted from their miners; the manifest forgets them once the miners confirm.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from ..client.erasure import StripeDecoder, StripeEncoder
from ..events import ShardRepaired
from ..proofs.merkle import leaf_count
from ..net.client import PeerError
from ..storage.gateway_db import LIVE_SHARDS
from .peers import FetchError
from .spool import Spool, finish_sync, rebuild_sync

if TYPE_CHECKING:
    from .service import Gateway

MAX_DELETE_ATTEMPTS = 20
REPAIR_BATCH_BYTES = 1 << 20
LOST_AFTER = 3          # signed failures in a row before a suspect shard is lost
CHECK_CHUNKS = 4        # random chunks a re-check asks besides the one found bad


class PlacementUnavailable(Exception):
    """Not enough miners outside a segment's holders to place its repaired shards."""


async def recheck(gw: "Gateway") -> str:
    now = time.time()
    due = [r for r in gw.db.suspects() if r.checked_at is None or now - r.checked_at >= gw.recheck_s]

    async def one(row) -> str:
        miner = gw.peers.neuron(row.miner)
        if miner is None:
            return "inconclusive"  # left the subnet: repair moves it
        n = leaf_count(row.size)
        bad = {row.bad_chunk} if row.bad_chunk is not None and row.bad_chunk < n else set()
        indices = sorted(bad | set(random.sample(range(n), min(n, CHECK_CHUNKS))))
        verdict = await gw.peers.check(miner, row.hash, row.size, indices)
        if verdict.outcome == "right":
            gw.db.checked(row.id, True)
        elif verdict.outcome == "wrong":
            if verdict.chunk is not None:
                gw.db.update_shard(row.id, bad_chunk=verdict.chunk)
            if gw.db.checked(row.id, False, f"re-check: {verdict.detail}") >= LOST_AFTER:
                gw.lose(row, f"{LOST_AFTER} signed re-checks in a row failed ({verdict.detail})")
        return verdict.outcome

    outcomes = await asyncio.gather(*(one(r) for r in due))
    return f"{outcomes.count('right')} healthy again, {outcomes.count('wrong')} failed, " \
           f"{outcomes.count('inconclusive')} without an answer"


def lose_departed(gw: "Gateway") -> int:
    """Shards on miners that left the subnet (the chain says so) are lost."""
    mg = gw.peers.metagraph()
    present = {n.hotkey for n in mg.neurons} if mg is not None else set()
    if not present:  # no metagraph (our chain is down): judge nothing
        return 0
    gone = 0
    for miner in gw.db.miners_with_live_shards():
        if miner not in present:
            for row in gw.db.lose_miner(miner, "its miner left the subnet"):
                gone += 1
                gw.lost(row, "its miner left the subnet")
    return gone


async def migrate_legacy(gw: "Gateway") -> int:
    """Protocol-2 shards (named by sha256, no certificate): their miners moved them under their Merkle
    id at start; each is downloaded once by that id, checked against both names, and certified. One
    that does not come back right is suspect (re-checked like any other): never lost on this alone."""
    moved = 0
    for old in gw.db.legacy():
        miner = gw.peers.neuron(old["miner"])
        if miner is None:
            continue  # the miner left: the shard goes with it once the objects' other shards are migrated
        try:
            found = await gw.peers.legacy(miner, old["hash"])
        except PeerError:
            continue  # not upgraded yet, or down: next run
        if old["state"] == "doomed":
            if found is None or await gw.peers.delete(miner, found[0]) == "ok":
                gw.db.drop_legacy(old)
            continue
        if found is None or found[1] != old["size"]:
            row = gw.db.adopt_legacy({**old, "state": "suspect"}, old["hash"])
            gw.db.update_shard(row, reason="protocol 2 shard the miner does not hold under a Merkle id")
            continue
        path = gw.spool.path(f"migrate-{old['id']}")
        try:
            await gw.peers.fetch(miner, found[0], old["size"], path, unwrap=None)  # checks the Merkle id
            same = await asyncio.to_thread(_sha256_of, path) == old["hash"]  # and the old name
        except FetchError:
            continue
        finally:
            path.unlink(missing_ok=True)
        gw.db.adopt_legacy(old if same else {**old, "state": "suspect"}, found[0])
        moved += same
    return moved


def _sha256_of(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


async def repair(gw: "Gateway") -> str:
    migrated = await migrate_legacy(gw)
    gone = lose_departed(gw)
    checked = await recheck(gw)
    repaired = failed = 0
    for object_id, seg in gw.db.live_segments():
        obj = gw.db.get(object_id)
        if obj is None or obj.id in gw.active:
            continue
        try:
            repaired += await repair_segment(gw, obj, seg)
        except Exception as exc:  # one segment's trouble never stops the others
            failed += 1
            gw.bus.log(f"repair of {obj.id[:12]} segment {seg} failed: {exc}", severity="warning", source=gw.source)
    return (f"{repaired} shards repaired, {failed} segments failed, {gone} lost with their miners; re-checks: {checked}"
            + (f"; {migrated} protocol-2 shards migrated" if migrated else ""))


def gone(gw: "Gateway", miner: str) -> bool:
    """A miner whose shards count as unavailable for repair: silent in windows for
    ``replace_after_s``, or its last downloads all failed. Its shards are not given up: they stay
    sources until their replacements are placed."""
    return gw.peers.silent_for(miner) >= gw.replace_after_s or gw.peers.unserving(miner)


def to_replace(gw: "Gateway", obj, rows: list) -> tuple[list[int], list]:
    """(erasure indices to place anew, rows they replace) for one segment."""
    good: dict[int, object] = {}
    live: dict[int, list] = {}
    for r in rows:
        if r.state in LIVE_SHARDS:
            live.setdefault(r.idx, []).append(r)
            if r.state == "healthy" and gw.peers.neuron(r.miner) is not None and not gone(gw, r.miner):
                good[r.idx] = r
    urgent = len(good) <= obj.k + 1
    missing, replaced = [], []
    for idx in range(obj.n):
        if idx in good:
            continue
        holders = live.get(idx, [])
        if holders and not urgent and all(h.state != "healthy" or not gone(gw, h.miner) for h in holders):
            continue  # suspect (being re-checked): wait
        missing.append(idx)
        replaced += [r for r in rows if r.idx == idx and r.state not in ("doomed",)]
    return missing, replaced


async def repair_segment(gw: "Gateway", obj, seg: int) -> int:
    from .placement import place_segment
    from .retrieval import SegmentUnavailable, fetch_segment

    rows = gw.db.segment_shards(obj.id, seg)
    missing, replaced = to_replace(gw, obj, rows)
    if not missing:
        return 0
    keep = [r for r in rows if r.state in LIVE_SHARDS and r not in replaced]
    holders = frozenset(r.miner for r in keep)
    lost_on = frozenset(r.miner for r in replaced) - holders
    holder_neurons = [n for h in holders if (n := gw.peers.neuron(h)) is not None]
    started = time.perf_counter()
    try:
        got = await fetch_segment(gw, obj, seg)
    except SegmentUnavailable:
        return 0  # fewer than k came back now: nothing is given up, the next run tries again
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
        placed = await place_segment(gw, obj, seg, shards, exclude=holders, state="placed", last=lost_on,
                                     holders=holder_neurons)
    finally:
        for _, f in writers:
            f.close()
        Spool.remove([s.path for s, _ in writers] + list(got.paths))
    gw.db.replace([r.id for r in replaced], [row for _, row in placed])
    gw.bus.publish(ShardRepaired(object_id=obj.id, segment=seg, indices=missing, miners=[m for m, _ in placed],
                                 seconds=time.perf_counter() - started, source=gw.source))
    return len(missing)


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
