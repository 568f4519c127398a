"""The miner's shard endpoints (docs/design.md#client-data), composed into :class:`MinerEngine`:

* ``PUT /v1/shards/{id}?size=N`` (streamed, validators only): stored only if exactly N bytes
  hashing to ``id`` arrive and the share has room (plots are dropped to make it; 507 otherwise);
* ``GET /v1/shards/{id}`` and ``DELETE /v1/shards/{id}``: only for the validator that placed it;
* ``POST /v1/audits``: keyed blake2b over ranges of the caller's shards, read from disk;
* ``GET /v1/shards``: the caller's shard count and bytes, and the room left for new shards.

Shards count against ``--size_in_gb`` together with the plots.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional

from aiohttp import web

from ..events import ErrorEvent, EventBus, ShardEvent
from ..net.auth import BODY, CALLER, VALIDATOR, access
from ..net.errors import parse, reject
from ..net.objects import MAX_SHARD_BYTES, AuditRequest, AuditResponse, ShardStored
from ..storage.layout import Layout, device_space, safety_margin
from ..storage.shards import ShardRefused, ShardStore
from .allocator import Allocator

SCRUB_SHARDS = 8


class ShardService:
    def __init__(self, layout: Layout, allocator: Allocator, share_bytes: Callable[[], int],
                 bus: Optional[EventBus] = None, source: str = "miner") -> None:
        self.layout = layout
        self.allocator = allocator
        self.share_bytes = share_bytes
        self.bus = bus or EventBus()
        self.source = source
        self.store = ShardStore(layout)
        self.audits_answered = 0

    # room -----------------------------------------------------------------------------------
    def free_bytes(self) -> int:
        """Share left for new shards without dropping plots, and never beyond the device's free space."""
        share = self.share_bytes() - self.allocator.plots_on_disk_bytes() - self.store.used_bytes - self.store.reserved
        dev = device_space(self.layout.root)
        return max(0, min(share, dev.free - safety_margin(dev.total) - self.store.reserved))

    def room(self) -> int:
        """What a validator may still place here: the share minus shards (plots give way to shards)."""
        share = self.share_bytes() - self.store.used_bytes - self.store.reserved
        dev = device_space(self.layout.root)
        free_dev = dev.free - safety_margin(dev.total) - self.store.reserved + self.allocator.plots_on_disk_bytes()
        return max(0, min(share, free_dev))

    def room_for(self, size: int) -> int:
        """Make room for ``size`` bytes (dropping plots if need be) or refuse with 507."""
        free = self.free_bytes()
        if free < size:
            self.allocator.free_for_shards(size - free)
            free = self.free_bytes()
        if free < size:
            reject(507, "no_room", f"this miner has {free} bytes free for shards and the shard is {size}: place it "
                                   f"on another miner")
        return free

    # http -------------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/shards", self.handle_summary)
        app.router.add_put("/v1/shards/{id}", self.handle_put)
        app.router.add_get("/v1/shards/{id}", self.handle_get)
        app.router.add_delete("/v1/shards/{id}", self.handle_delete)
        app.router.add_post("/v1/audits", self.handle_audits)

    @staticmethod
    def _refused(exc: ShardRefused) -> None:
        reject(exc.status, exc.code, exc.message)

    @access(VALIDATOR)
    async def handle_summary(self, request: web.Request) -> web.Response:
        index = self.store.index(request[CALLER].hotkey_ss58)
        count, size = index.stats() if index else (0, 0)
        return web.json_response({"shards": count, "bytes": size, "free_bytes": self.room()})

    @access(VALIDATOR, streamed=True)
    async def handle_put(self, request: web.Request) -> web.Response:
        validator = request[CALLER].hotkey_ss58
        shard_id = request.match_info["id"]
        try:
            path = self.store.path(shard_id)
        except ShardRefused as exc:
            self._refused(exc)
        try:
            size = int(request.query.get("size", ""))
        except ValueError:
            reject(400, "bad_request", "PUT /v1/shards/{id} needs ?size=<bytes> in the signed path")
        if not 0 < size <= MAX_SHARD_BYTES:
            reject(400, "bad_request", f"a shard is 1..{MAX_SHARD_BYTES} bytes, not {size}")
        if request.content_length is not None and request.content_length != size:
            reject(400, "bad_request", f"Content-Length {request.content_length} differs from the signed size {size}")
        index = self.store.index(validator)
        if index is not None and index.has(shard_id) and path.exists():
            return web.json_response(ShardStored(id=shard_id, size=size, free_bytes=self.room()).model_dump())
        if shard_id in self.store.inflight:
            reject(409, "in_flight", "this shard is being stored right now: wait for that upload")
        self.room_for(size)
        self.store.reserved += size
        self.store.inflight.add(shard_id)
        started = time.perf_counter()
        try:
            await self.store.receive(validator, shard_id, size, request.content.iter_any())
        except ShardRefused as exc:
            self.bus.publish(ShardEvent(action="refused", validator_hotkey=validator, shard=shard_id, bytes=size,
                                        detail=exc.message, source=self.source))
            self._refused(exc)
        finally:
            self.store.reserved -= size
            self.store.inflight.discard(shard_id)
        self.bus.publish(ShardEvent(action="stored", validator_hotkey=validator, shard=shard_id, bytes=size,
                                    detail=f"{(time.perf_counter() - started) * 1000:.0f} ms", source=self.source))
        return web.json_response(ShardStored(id=shard_id, size=size, free_bytes=self.room()).model_dump())

    @access(VALIDATOR)
    async def handle_get(self, request: web.Request) -> web.StreamResponse:
        try:
            path = self.store.held_by(request[CALLER].hotkey_ss58, request.match_info["id"])
        except ShardRefused as exc:
            self._refused(exc)
        if not path.exists():
            reject(404, "unknown_shard", "the shard's file is gone from this miner")
        return web.FileResponse(path, chunk_size=1 << 18, headers={"Content-Type": "application/octet-stream"})

    @access(VALIDATOR)
    async def handle_delete(self, request: web.Request) -> web.Response:
        validator, shard_id = request[CALLER].hotkey_ss58, request.match_info["id"]
        try:
            self.store.delete(validator, shard_id)
        except ShardRefused as exc:
            self._refused(exc)
        self.bus.publish(ShardEvent(action="deleted", validator_hotkey=validator, shard=shard_id, source=self.source))
        return web.json_response({"id": shard_id, "deleted": True})

    @access(VALIDATOR)
    async def handle_audits(self, request: web.Request) -> web.Response:
        req = parse(AuditRequest, request[BODY])
        answers = await self.answer_audits(request[CALLER].hotkey_ss58, req)
        self.audits_answered += len(answers)
        return web.json_response(AuditResponse(answers=answers).model_dump())

    async def answer_audits(self, validator: str, req: AuditRequest) -> list:
        """Read and digest off the event loop. (Adversaries in the tests override this.)"""
        return await asyncio.to_thread(self.store.audit, validator, req.items)

    # jobs ---------------------------------------------------------------------------------------
    async def scrub(self) -> str:
        """Re-hash a sample of shards: bit rot is dropped here (and reported lost at the next audit)
        rather than served."""
        bad = await asyncio.to_thread(self.store.scrub, SCRUB_SHARDS)
        for name in bad:
            self.bus.publish(ErrorEvent(message=f"shard {name[:12]} failed its hash check and was removed",
                                        source=self.source))
        return f"{len(bad)} damaged shards removed"

    def snapshot(self) -> dict:
        counts = self.store.counts()
        return {"shards": counts.files, "shard_bytes": counts.bytes, "shard_free_bytes": self.free_bytes(),
                "shards_by_validator": {v: {"shards": c, "bytes": b} for v, (c, b) in counts.validators.items()},
                "audits_answered": self.audits_answered}

    def close(self) -> None:
        self.store.close()
