"""Getting a segment back: the fastest k shards, downloaded, checked against their Merkle ids and
unwrapped into the spool; and streaming an object to its client a segment at a time.

Healthy shards are tried first (fastest first), then suspect ones, then lost ones: a shard whose
miner failed a check may still have its bytes, and the Merkle id makes any byte that comes back
safe to use. A download that comes back wrong makes its shard suspect (re-checked, never lost on
one download). Bytes a miner delivered to a client's retrieval are counted for its certificate
(``served``): serving pays.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from aiohttp import web

from ..events import ObjectEvent
from ..net.objects import FIRST_STRIPE_HEADER, FRAME_END, OBJECT_HEADER, ObjectLayout, error_frame, segment_frame
from ..storage.gateway_db import SOURCES
from ..storage.wrap import keystream
from .peers import FetchError
from .spool import Spool, SpoolError, interleave_sync

if TYPE_CHECKING:
    from .service import Gateway

EXTRA_FETCHES = 1              # retrieval starts k + this many shard downloads, keeps the fastest k
IDLE_S = 60.0                  # a client that reads nothing for this long is cut off
BATCH_BYTES = 1 << 20          # bytes handed to a worker thread at once
_PREFERENCE = {state: i for i, state in enumerate(SOURCES)}


class SegmentUnavailable(Exception):
    """Fewer than k shards of a segment could be fetched and checked."""


@dataclass
class FetchedSegment:
    indices: list[int]
    paths: list
    stripes: int


async def fetch_segment(gw: "Gateway", obj, seg: int, unwrap: bool = True, serving: bool = False) -> FetchedSegment:
    """The fastest k shards of a segment that come back intact, in the spool (unwrapped if
    ``unwrap``); ``serving``: for a client, so each shard delivered counts as served."""
    best: dict[int, object] = {}
    for r in gw.db.segment_shards(obj.id, seg, *SOURCES):
        if r.idx not in best or _PREFERENCE[r.state] < _PREFERENCE[best[r.idx].state]:  # type: ignore[attr-defined]
            best[r.idx] = r
    rows = list(best.values())
    if len(rows) < obj.k:
        raise SegmentUnavailable(f"segment {seg} has {len(rows)} shards left and needs {obj.k}")
    speed = {h: i for i, h in enumerate(gw.peers.by_speed(list({r.miner for r in rows})))}
    pending = sorted(rows, key=lambda r: (_PREFERENCE[r.state], bool(gw.peers.silent_for(r.miner)), speed[r.miner]))
    running: dict[asyncio.Task, tuple] = {}
    got: dict[int, object] = {}
    problems: list[str] = []

    def launch() -> None:
        row = pending.pop(0)
        miner = gw.peers.neuron(row.miner)
        path = gw.spool.path(f"get-{obj.id}-{seg}-{row.idx}")
        if miner is None:
            problems.append(f"shard {row.idx}: miner {row.miner[:8]} left the subnet")
            running[asyncio.ensure_future(_fail_now())] = (row, path)
            return
        ks = keystream(gw.secret, row.wrap) if unwrap else None
        running[asyncio.ensure_future(gw.peers.fetch(miner, row.hash, row.size, path, ks))] = (row, path)

    try:
        for _ in range(min(len(pending), obj.k + EXTRA_FETCHES)):
            launch()
        while len(got) < obj.k:
            if not running:
                raise SegmentUnavailable(f"only {len(got)} of the {obj.k} shards needed for segment {seg} came "
                                         f"back intact ({'; '.join(problems)[:600]})")
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                row, path = running.pop(task)
                exc = task.exception()
                if exc is None:
                    got[row.idx] = path
                    if serving:
                        gw.db.add_served(row.id, row.size)
                    continue
                if isinstance(exc, SpoolError):
                    raise exc
                problems.append(f"shard {row.idx}: {exc}")
                if isinstance(exc, FetchError) and exc.kind in ("corrupt", "missing"):
                    gw.suspect(row, f"{exc.kind} on download: {exc}")
                    if exc.leaves is not None:
                        gw.locate_later(row, exc.leaves)
                if pending and len(got) + len(running) < obj.k + EXTRA_FETCHES:
                    launch()
            while pending and not running and len(got) < obj.k:
                launch()
    except BaseException:
        Spool.remove(got.values())
        raise
    finally:
        for task, (_, path) in running.items():
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
            Spool.remove(p for _, p in running.values())
    indices = sorted(got)[:obj.k]
    Spool.remove(got[i] for i in sorted(got)[obj.k:])
    return FetchedSegment(indices=indices, paths=[got[i] for i in indices],
                          stripes=ObjectLayout(obj.size, obj.k, obj.n, obj.block).segments(obj.per_segment)[seg])


async def stream(gw: "Gateway", request: web.Request, obj, entry, first: int = 0,
                 last: Optional[int] = None) -> web.StreamResponse:
    """The object's segments ``first..last`` (default: all) as segment frames, the next segment
    fetched while this one is sent. A ranged read names its first stripe in a header."""
    segments = ObjectLayout(obj.size, obj.k, obj.n, obj.block).segments(obj.per_segment)
    last = len(segments) - 1 if last is None else last
    started = time.perf_counter()
    prefetch: Optional[asyncio.Task] = asyncio.ensure_future(fetch_segment(gw, obj, first, serving=True))
    response = web.StreamResponse(headers={OBJECT_HEADER: entry.model_dump_json(),
                                           FIRST_STRIPE_HEADER: str(first * obj.per_segment),
                                           "Content-Type": "application/octet-stream"})
    try:
        await response.prepare(request)
        per_batch = max(1, BATCH_BYTES // (obj.k * obj.block))
        for seg in range(first, last + 1):
            assert prefetch is not None
            try:
                got = await prefetch
            except SegmentUnavailable as exc:
                prefetch = None
                gw.bus.publish(ObjectEvent(action="damaged", object_id=obj.id, client=obj.client,
                                           detail=str(exc)[:300], source=gw.source))
                await response.write(error_frame(f"the gateway cannot rebuild {exc}: try again later (shards on "
                                                 f"miners that are down come back with them)"))
                return response
            prefetch = (asyncio.ensure_future(fetch_segment(gw, obj, seg + 1, serving=True))
                        if seg + 1 <= last else None)
            try:
                async with asyncio.timeout(IDLE_S):
                    await response.write(segment_frame(seg, got.stripes, obj.block, got.indices))
                done = 0
                while done < got.stripes:
                    m = min(per_batch, got.stripes - done)
                    data = await asyncio.to_thread(interleave_sync, got.paths, done, m, obj.block)
                    async with asyncio.timeout(IDLE_S):  # a reader that stops reading frees its slot
                        await response.write(data)
                    done += m
            finally:
                Spool.remove(got.paths)
        await response.write(FRAME_END)
        await response.write_eof()
    except (ConnectionError, TimeoutError):  # the client went away, stalled, or refused the object
        return response
    finally:
        if prefetch is not None:
            prefetch.cancel()
            res = await asyncio.gather(prefetch, return_exceptions=True)
            if isinstance(res[0], FetchedSegment):
                Spool.remove(res[0].paths)
    whole = (first, last) == (0, len(segments) - 1)
    sent = obj.size if whole else sum(segments[first:last + 1]) * obj.k * obj.block
    gw.bus.publish(ObjectEvent(action="retrieved", object_id=obj.id, client=obj.client, bytes=sent,
                               seconds=time.perf_counter() - started, source=gw.source))
    return response


async def _fail_now() -> None:
    raise FetchError("unreachable", "the miner left the subnet")
