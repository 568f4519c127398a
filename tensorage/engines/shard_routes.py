"""The miner's shard endpoints (docs/design.md#client-data), composed into :class:`MinerEngine`:

* ``PUT /v1/shards/{id}?size=N`` (streamed, validators only, with the gateway's certificate in
  ``X-Tensorage-Certificate``): stored only if exactly N bytes whose Merkle id is ``id`` arrive,
  the certificate is the caller's for this miner and shard, and the caller has room here (plots
  are dropped to make it; 507 otherwise);
* ``POST /v1/certificates``: renewed certificates of shards the caller placed here;
* ``GET /v1/shards/{id}`` and ``DELETE /v1/shards/{id}``: only for the validator that placed it;
* ``POST /v1/shards/{id}/check``: chunks with their Merkle paths, in a reply signed with this
  miner's hotkey (a gateway only ever counts a shard lost on words the miner cannot deny);
* ``GET /v1/shards``: the caller's shard count and bytes, and the room it has left.

Shards count against ``--size_in_gb`` together with the plots. Each gateway may fill at most
``GATEWAY_SHARE_FACTOR`` times its stake share of it, so no validator can evict a miner's plots
at will: a gateway with 1 % of the stake gets 3 % of a miner's share, one with 20 % gets 60 %.
(Its certificates count at most its stake share of the network's credit, engines/scoring.py,
and a miner may hold more of one gateway's data than that gateway's share of the network.)
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Callable, Optional

from aiohttp import web

from ..events import ErrorEvent, EventBus, ShardEvent
from ..net.auth import BODY, CALLER, VALIDATOR, access
from ..net.errors import parse, reject
from ..net.objects import (CERTIFICATE_HEADER, CertificateBatch, CertificatesTaken, ShardCheck, ShardChecked,
                           ShardDeleted, ShardStored, ShardSummary)
from ..net.replies import sign_reply
from ..proofs.certificates import Certificate, CertificateError
from ..proofs.merkle import MAX_SHARD_BYTES
from ..proofs.plots import hotkey_public_key
from ..storage.layout import Layout, device_space, safety_margin
from ..storage.shards import Occupancy, ShardRefused, ShardStore, parse_certificate
from .allocator import Allocator
from .disks import DiskSet

SCRUB_SHARDS = 8
GATEWAY_SHARE_FACTOR = 3.0
CHURN_FACTOR = 2  # with the shards it deleted and this miner still keeps, a gateway holds at most this times its
                  # cap: a removal frees room at once (a store right after a delete needs no wait), yet churning
                  # PUT/DELETE leaves at most one more cap's worth of its bytes on the disk, not without bound


class ShardService:
    def __init__(self, layout: Layout, allocator: Allocator | DiskSet, share_bytes: Callable[[], int], hotkey: str,
                 signer, stake_share: Callable[[str], float], max_shards: int,
                 bus: Optional[EventBus] = None, source: str = "miner",
                 max_fraction: Callable[[], float] = lambda: 1.0,
                 max_expiry: Callable[[], Optional[int]] = lambda: None) -> None:
        self.layout = layout
        self.allocator = allocator
        self.share_bytes = share_bytes
        self.max_fraction = max_fraction
        self.max_expiry = max_expiry  # the latest expiry block a certificate may carry (None: no chain yet)
        self.incoming: dict[str, tuple[int, int]] = {}  # validator -> (shards, bytes) being received now
        self.hotkey = hotkey
        self.key = hotkey_public_key(hotkey)
        self.signer = signer
        self.stake_share = stake_share
        self.max_shards = max_shards
        self.bus = bus or EventBus()
        self.source = source
        self.store = ShardStore(layout)
        self.checks_answered = 0

    # room -----------------------------------------------------------------------------------
    def shard_bytes(self) -> int:
        """Shards counted against the share: held ones and ones arriving (not the ones leaving)."""
        return self.store.used_bytes - self.store.leaving_bytes() + self.store.reserved

    def shard_cap(self) -> int:
        """What client shards may take of the share (``--max_shard_fraction``), left now."""
        return int(self.share_bytes() * self.max_fraction()) - self.shard_bytes()

    def free_bytes(self) -> int:
        """Share left for new shards without dropping plots, and never beyond the device's free space."""
        share = self.share_bytes() - self.allocator.plots_on_disk_bytes() - self.shard_bytes()
        dev = device_space(self.layout.root)
        return max(0, min(share, self.shard_cap(), dev.free - safety_margin(dev.total) - self.store.reserved))

    def gateway_cap(self, validator: str) -> tuple[int, int]:
        """(shards, bytes) one gateway may occupy here, by its stake: its share of the listing's slots and
        of this miner's disk share (so neither a few large nor many tiny shards let it crowd others out)."""
        part = min(1.0, GATEWAY_SHARE_FACTOR * self.stake_share(validator))
        return int(self.max_shards * part), int(self.share_bytes() * part)

    def occupied_by(self, validator: str) -> Occupancy:
        """What ``validator``'s shards take here, the ones arriving right now included (concurrent
        PUTs must not each pass a cap that only one of them fits)."""
        occ = self.store.occupied_by(validator)
        count, held = self.incoming.get(validator, (0, 0))
        return Occupancy(occ.shards + count, occ.bytes + held, occ.all_shards + count, occ.all_bytes + held)

    def room(self, validator: str) -> int:
        """What ``validator`` may still place here: its cap, and the share minus shards (plots give
        way to shards), within the device's free space."""
        share = self.share_bytes() - self.shard_bytes()
        dev = device_space(self.layout.root)
        free_dev = dev.free - safety_margin(dev.total) - self.store.reserved + self.allocator.plots_on_disk_bytes()
        count_cap, byte_cap = self.gateway_cap(validator)
        occ = self.occupied_by(validator)
        fits = occ.shards < count_cap and occ.all_shards < CHURN_FACTOR * count_cap
        own = min(byte_cap - occ.bytes, CHURN_FACTOR * byte_cap - occ.all_bytes) if fits else 0
        return max(0, min(share, free_dev, own, self.shard_cap()))

    def room_for(self, validator: str, size: int) -> int:
        """Make room for ``size`` bytes of ``validator`` (dropping plots if need be) or refuse with 507."""
        count_cap, byte_cap = self.gateway_cap(validator)
        occ = self.occupied_by(validator)
        if occ.bytes + size > byte_cap or occ.shards + 1 > count_cap:
            reject(507, "gateway_cap", f"this miner gives each gateway at most {GATEWAY_SHARE_FACTOR:g}x its stake "
                                       f"share of its disk share and of its listing ({byte_cap} bytes and {count_cap} "
                                       f"shards for you; you hold {occ.bytes} bytes in {occ.shards}): place the "
                                       f"shard on another miner")
        if occ.all_bytes + size > CHURN_FACTOR * byte_cap or occ.all_shards + 1 > CHURN_FACTOR * count_cap:
            reject(507, "gateway_cap", f"your deleted shards are still kept here ({occ.all_bytes - occ.bytes} bytes, "
                                       f"until no listing a validator answered names them), and with them you may "
                                       f"hold at most {CHURN_FACTOR}x your cap: place the shard on another miner or "
                                       f"retry after the next listing")
        if self.shard_cap() < size:
            reject(507, "no_room", f"this miner keeps client shards under {self.max_fraction():g} of its share "
                                   f"(--max_shard_fraction): place the shard on another miner")
        if self.store.certified() >= self.max_shards:
            reject(507, "listing_full", f"this miner lists {self.max_shards} shards, the most one listing may carry: "
                                        f"place the shard on another miner")
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
        app.router.add_post("/v1/shards/{id}/check", self.handle_check)
        app.router.add_get("/v1/shards/legacy/{sha}", self.handle_legacy)
        app.router.add_post("/v1/certificates", self.handle_certificates)

    @staticmethod
    def _refused(exc: ShardRefused) -> None:
        reject(exc.status, exc.code, exc.message)

    @access(VALIDATOR)
    async def handle_summary(self, request: web.Request) -> web.Response:
        validator = request[CALLER].hotkey_ss58
        index = self.store.index(validator)
        count, size = index.stats() if index else (0, 0)
        return web.json_response(ShardSummary(shards=count, bytes=size, free_bytes=self.room(validator)).model_dump())

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
        text = request.headers.get(CERTIFICATE_HEADER)
        if not text:
            reject(400, "bad_certificate", f"send the shard's certificate in {CERTIFICATE_HEADER}: a shard without "
                                           f"one can never be proven")
        try:
            cert = parse_certificate(text, self.key, hotkey_public_key(validator), shard_id, size, self.max_expiry())
        except ShardRefused as exc:
            self._refused(exc)
        index = self.store.index(validator)
        if index is not None and index.has(shard_id) and path.exists():  # sent again: its certificate, checked
            try:
                self.store.set_certificate(validator, cert, self.max_expiry())
            except ShardRefused as exc:
                self._refused(exc)
            return web.json_response(ShardStored(id=shard_id, size=size, free_bytes=self.room(validator)).model_dump())
        if shard_id in self.store.inflight:
            reject(409, "in_flight", "this shard is being stored right now: wait for that upload")
        self.room_for(validator, size)
        self.store.reserved += size
        self.store.inflight.add(shard_id)
        count, held = self.incoming.get(validator, (0, 0))
        self.incoming[validator] = (count + 1, held + size)
        started = time.perf_counter()
        try:
            await self.store.receive(validator, shard_id, size, request.content.iter_any(), cert)
        except ShardRefused as exc:
            self.bus.publish(ShardEvent(action="refused", validator_hotkey=validator, shard=shard_id, bytes=size,
                                        detail=exc.message, source=self.source))
            self._refused(exc)
        finally:
            self.store.reserved -= size
            self.store.inflight.discard(shard_id)
            count, held = self.incoming.pop(validator)
            if count > 1:
                self.incoming[validator] = (count - 1, held - size)
        self.bus.publish(ShardEvent(action="stored", validator_hotkey=validator, shard=shard_id, bytes=size,
                                    detail=f"{(time.perf_counter() - started) * 1000:.0f} ms", source=self.source))
        return web.json_response(ShardStored(id=shard_id, size=size, free_bytes=self.room(validator)).model_dump())

    @access(VALIDATOR)
    async def handle_certificates(self, request: web.Request) -> web.Response:
        validator = request[CALLER].hotkey_ss58
        batch = parse(CertificateBatch, request[BODY])
        gateway = hotkey_public_key(validator)
        certs: list[Certificate] = []
        for i, text in enumerate(batch.certificates):
            try:
                cert = Certificate.from_hex(text)
            except CertificateError as exc:
                reject(400, "bad_certificate", f"certificate {i}: {exc}")
            if cert.gateway != gateway:
                reject(403, "bad_certificate", f"certificate {i} is signed by another gateway than the caller")
            certs.append(cert)
        # signatures off the loop: a batch is up to 2,048 of them (~0.25 ms each)
        forged = await asyncio.to_thread(lambda: next((i for i, c in enumerate(certs) if not c.valid_for(self.key)),
                                                      None))
        if forged is not None:
            reject(403, "bad_certificate", f"certificate {forged} does not verify for this miner: nothing was taken")
        taken, unknown = 0, []
        for cert in certs:
            try:
                taken += self.store.set_certificate(validator, cert, self.max_expiry())
            except ShardRefused as exc:
                if exc.status != 404:
                    reject(exc.status, exc.code, f"certificate of shard {cert.shard_hex[:16]}…: {exc.message}")
                unknown.append(cert.shard_hex)  # not held (any more) for the caller: it should know
        return web.json_response(CertificatesTaken(taken=taken, unknown=unknown).model_dump())

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
        return web.json_response(ShardDeleted(id=shard_id, free_bytes=self.room(validator)).model_dump())

    @access(VALIDATOR)
    async def handle_legacy(self, request: web.Request) -> web.Response:
        """Where a protocol-2 shard of the caller's went: its Merkle id (the gateway downloads it by that
        id, checks both hashes, and certifies it)."""
        found = self.store.migrated(request[CALLER].hotkey_ss58, request.match_info["sha"])
        if found is None:
            reject(404, "unknown_shard", "no protocol-2 shard by that name is held here for you")
        return web.json_response(ShardStored(id=found[0], size=found[1], free_bytes=0).model_dump())

    @access(VALIDATOR)
    async def handle_check(self, request: web.Request) -> web.Response:
        validator, shard_id = request[CALLER].hotkey_ss58, request.match_info["id"]
        req = parse(ShardCheck, request[BODY])
        try:
            self.store.path(shard_id)
        except ShardRefused as exc:
            self._refused(exc)
        found = await self.prove(validator, shard_id, req.chunks, req.leaves)  # None: not held for this validator
        self.checks_answered += 1
        proofs, leaves = found if found is not None else ([], None)
        body = ShardChecked(held=found is not None, chunks=[base64.b64encode(p).decode() if p else "" for p in proofs],
                            leaves=base64.b64encode(leaves).decode() if leaves else "").model_dump_json().encode()
        headers = sign_reply(self.signer, request.path, str(request[CALLER].nonce_ns), body, validator)
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def prove(self, validator: str, shard_id: str, indices: list[int], leaves: bool = False):
        """Read the chunks off the event loop. (Adversaries in the tests override this.)"""
        return await asyncio.to_thread(self.store.prove, validator, shard_id, indices, leaves)

    # jobs ---------------------------------------------------------------------------------------
    async def scrub(self) -> str:
        """Re-hash a sample of shards against their ids: bit rot is dropped here (and reported lost
        at the next window that samples it, or the gateway's re-check) rather than served."""
        bad = await asyncio.to_thread(self.store.scrub, SCRUB_SHARDS)
        for name in bad:
            self.bus.publish(ErrorEvent(message=f"shard {name[:12]} failed its hash check and was removed",
                                        source=self.source))
        return f"{len(bad)} damaged shards removed"

    def snapshot(self) -> dict:
        counts = self.store.counts()
        return {"shards": counts.files, "shard_bytes": counts.bytes, "shard_free_bytes": self.free_bytes(),
                "shards_by_validator": {v: {"shards": c, "bytes": b} for v, (c, b) in counts.validators.items()},
                "shards_certified": counts.certified, "checks_answered": self.checks_answered}

    def close(self) -> None:
        self.store.close()
