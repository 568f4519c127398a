"""Where a segment's shards go: n distinct miners picked at random among the well-scored ones with
room, no operator (coldkey) or address (IP) holding two shards of a segment while another choice
exists, each shard signed for (a certificate) and written to the manifest before it is sent.

Random, not top-n: placing every segment on the same best-scored miners would make one outage,
one operator or one network take many objects at once (Storj spreads pieces the same way).
"""

from __future__ import annotations

import asyncio
import random
import statistics
from typing import TYPE_CHECKING, Iterable, Optional

from ..chain.port import Neuron
from .certificates import certificate
from .peers import PlacementError
from .spool import ShardFile

if TYPE_CHECKING:
    from .service import Gateway

WELL_SCORED = 0.25  # a miner scoring at least this share of the median score is well scored


class PlacementFailed(Exception):
    """A segment could not be placed on n distinct miners."""


def host_of(n: Neuron) -> str:
    return n.endpoint[0] if n.endpoint else ""


def ranked(candidates: list[Neuron], scores: dict[str, float]) -> list[Neuron]:
    """Well-scored miners first, then unscored ones (newcomers), then poorly scored ones; each
    group in random order."""
    positive = [s for n in candidates if (s := scores.get(n.hotkey, 0.0)) > 0]
    floor = WELL_SCORED * statistics.median(positive) if positive else 0.0
    groups: list[list[Neuron]] = [[], [], []]
    for n in candidates:
        score = scores.get(n.hotkey, 0.0)
        groups[0 if score > 0 and score >= floor else 1 if score <= 0 else 2].append(n)
    for group in groups:
        random.shuffle(group)
    return groups[0] + groups[1] + groups[2]


def spread(order: list[Neuron], count: int, taken: Iterable[Neuron] = ()) -> list[Neuron]:
    """Up to ``count`` miners from ``order`` (kept in order otherwise), never a second one of an
    operator (coldkey) or an address already used while a miner of another exists."""
    coldkeys = {n.coldkey for n in taken}
    hosts = {host_of(n) for n in taken}
    chosen: list[Neuron] = []
    left = list(order)
    while left and len(chosen) < count:
        pick = next((n for n in left if n.coldkey not in coldkeys and host_of(n) not in hosts), None) or \
            next((n for n in left if n.coldkey not in coldkeys or host_of(n) not in hosts), None) or left[0]
        left.remove(pick)
        chosen.append(pick)
        coldkeys.add(pick.coldkey)
        hosts.add(host_of(pick))
    return chosen


async def candidates(gw: "Gateway", size: int, exclude: set[str], holders: Iterable[Neuron] = (),
                     last: set[str] = frozenset()) -> list[Neuron]:
    """Miners for shards of ``size`` bytes, in the order to try them: spread, random, well-scored
    first; ``last`` (miners whose shard of this segment was lost) only after every other one."""
    stale = [n for n in gw.peers.stale_room(size) if n.hotkey not in exclude]
    if stale:  # room frees up when objects are removed: ask before counting a miner out
        await asyncio.gather(*(gw.peers.refresh_room(n) for n in stale))
    usable = gw.peers.usable(size, exclude)
    order = ranked([n for n in usable if n.hotkey not in last], gw.rank()) + \
        ranked([n for n in usable if n.hotkey in last], gw.rank())
    return spread(order, len(order), holders)


async def place_segment(gw: "Gateway", obj, seg: int, shards: list[ShardFile], exclude: frozenset = frozenset(),
                        state: str = "placed", last: frozenset = frozenset(),
                        holders: Iterable[Neuron] = ()) -> list[tuple[str, int]]:
    """Each shard on its own miner (the next candidate on failure); the row is written before the
    PUT so a shard that may have landed is never forgotten. Returns (miner, shard row) in the order
    of ``shards``; rows are left in ``state``."""
    size = max(s.size for s in shards)
    order = await candidates(gw, size, set(exclude), holders, set(last))
    if len(order) < len(shards):
        raise PlacementFailed(f"segment {seg} needs {len(shards)} miners with room and {len(order)} are "
                              f"available")
    spare = order[len(shards):]
    used: set[str] = set(exclude)
    created: list[int] = []

    async def place(shard: ShardFile, miner: Optional[Neuron]) -> tuple[str, int]:
        while True:
            assert miner is not None
            used.add(miner.hotkey)
            cert = await asyncio.to_thread(certificate, gw, miner.hotkey, shard.hash, shard.size)
            row = gw.db.add_shard(object_id=obj.id, segment=seg, idx=shard.idx, hash=shard.hash, wrap=shard.wrap,
                                  miner=miner.hotkey, size=shard.size, cert_expiry=cert.expiry)
            created.append(row)
            try:
                await gw.peers.put(miner, shard.hash, shard.path, shard.size, cert)
            except PlacementError as exc:
                gw.bus.log(f"placing shard {shard.idx} of {obj.id[:12]} segment {seg}: {exc}",
                           severity="warning", source=gw.source)
                if exc.landed:
                    gw.db.update_shard(row, state="doomed", reason=str(exc)[:300])
                else:
                    gw.db.forget_shard(row)
                miner = next((m for m in spare if m.hotkey not in used), None)
                if miner is None:
                    raise PlacementFailed(f"no miner left to take shard {shard.idx} of segment {seg} "
                                          f"(last: {exc})") from None
                continue
            gw.db.update_shard(row, state=state)
            return miner.hotkey, row

    results = await asyncio.gather(*(place(s, m) for s, m in zip(shards, order)), return_exceptions=True)
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        for row in created:  # what did land goes to the GC with the rest of the attempt
            shard_row = gw.db.shard(row)
            if shard_row is not None and shard_row.state in ("placing", "placed"):
                gw.db.update_shard(row, state="doomed")
        raise failure
    return list(results)  # type: ignore[arg-type]
