"""The gateway's client endpoints (signed; clients are registered hotkeys or on ``--gateway.allow``):

  GET    /v1/gateway            public: this gateway's defaults (how a client finds one)
  POST   /v1/objects            declare an upload (size, k, n, block): quota and room checked first
  PUT    /v1/objects/{id}       the declared object's stripes, streamed
  GET    /v1/objects            the caller's objects
  GET    /v1/objects/{id}       the object: k shards per segment, fastest first, checked and unwrapped
                                (HEAD: its parameters only, nothing fetched)
  DELETE /v1/objects/{id}       remove it (its shards are deleted from miners by the ``gc`` job)

Thin handlers: what to check is here, what to do is in placement, retrieval and the manifest.
A quota counts what the erasure code puts on miners (ciphertext times n/k), and the gateway
bounds the expansion n/k (``--gateway.max_expansion``), so no client can make dozens of miners
give up plots for one small file.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from typing import TYPE_CHECKING, Optional

import aiohttp
from aiohttp import web

from ..events import ObjectEvent
from ..net.auth import ALLOWED_CLIENTS, BODY, CALLER, CLIENT, PUBLIC, access
from ..net.errors import parse, reject
from ..net.objects import (DEFAULT_K, DEFAULT_N, MAX_N, OBJECT_HEADER, GatewayInfo, ObjectDeclare, ObjectDeclared,
                           ObjectDeleted, ObjectEntry, ObjectLayout, ObjectList, ObjectStored, is_object_id)
from ..net.pace import Pace, TooSlow
from ..storage.gateway_db import MIN_SHARD_CHARGE, charged_bytes
from .placement import PlacementFailed, candidates, place_segment
from .spool import ShardFile, Spool, SpoolError, demux_sync, finish_sync

if TYPE_CHECKING:
    from .service import Gateway

DECLARE_TTL_S = 600.0          # a declared object that never starts uploading is dropped after this
MAX_OBJECTS_PER_CLIENT = 10_000  # a listing of them stays a few MB
MAX_STORES = 4                 # uploads at once (each holds up to two segments of spool)
MAX_STORES_PER_CLIENT = 2
MAX_RETRIEVES = 8
BATCH_BYTES = 1 << 20          # upload bytes handed to a worker thread at once
IDLE_S = 60.0                  # a client that sends nothing for this long is cut off


class ObjectRoutes:
    """Mixed into :class:`~tensorage.gateway.service.Gateway`."""

    def add_routes(self: "Gateway", app: web.Application) -> None:
        app[ALLOWED_CLIENTS] = self.cfg.allowed
        app.router.add_get("/v1/gateway", self.handle_info)
        app.router.add_post("/v1/objects", self.handle_declare)
        app.router.add_get("/v1/objects", self.handle_list)
        app.router.add_put("/v1/objects/{id}", self.handle_upload)
        app.router.add_get("/v1/objects/{id}", self.handle_retrieve)
        app.router.add_delete("/v1/objects/{id}", self.handle_delete)

    @access(PUBLIC)
    async def handle_info(self: "Gateway", request: web.Request) -> web.Response:
        return web.json_response(GatewayInfo(hotkey=self.hotkey, k=DEFAULT_K, n=DEFAULT_N, max_n=MAX_N,
                                             miners=len(self.peers.usable(1)),
                                             shard_bytes=self.cfg.shard_bytes).model_dump())

    def _entry(self: "Gateway", obj, health: Optional[int] = None) -> ObjectEntry:
        state = "stored" if obj.state == "damaged" else obj.state  # protocol 2's dead end: never given up now
        return ObjectEntry(id=obj.id, size=obj.size, k=obj.k, n=obj.n, block=obj.block,
                           state=state, created_at=obj.created_at, stored_at=obj.stored_at, meta=obj.meta,
                           segments=obj.segments, healthy=health if health is not None else 0)

    def _own(self: "Gateway", request: web.Request,
             states: tuple[str, ...] = ("declared", "storing", "stored", "damaged")):
        object_id = request.match_info["id"]
        if not is_object_id(object_id):
            reject(400, "bad_object_id", f"{object_id[:80]!r} is not an object id (32 hex characters, as "
                                         f"`tensorage store` printed it)")
        obj = self.db.owned(request[CALLER].hotkey_ss58, object_id)
        if obj is None or obj.state not in states:
            reject(404, "unknown_object", f"no object {object_id} for hotkey {request[CALLER].hotkey_ss58} here: "
                                          f"objects belong to the hotkey that stored them (check --wallet.name and "
                                          f"--wallet.hotkey, and `tensorage ls`)")
        return obj

    @access(CLIENT)
    async def handle_declare(self: "Gateway", request: web.Request) -> web.Response:
        req = parse(ObjectDeclare, request[BODY])
        client = request[CALLER].hotkey_ss58
        if req.n > self.cfg.max_expansion * req.k:
            k_min = math.ceil(req.n / self.cfg.max_expansion)
            reject(400, "too_much_expansion", f"k={req.k}, n={req.n} puts {req.n / req.k:.1f}x the file on miners; this "
                                              f"gateway takes at most {self.cfg.max_expansion:g}x: use --k {k_min} or "
                                              f"more for --n {req.n}")
        layout = req.layout()
        per_segment = layout.stripes_per_segment(self.cfg.shard_bytes)
        shard = min(per_segment, layout.stripes) * req.block
        # the only await comes first: from the quota check to the row there is none, so two declares
        # in flight cannot both pass a check that only one of them fits
        miners = len(await candidates(self, shard, set()))
        if req.n > miners:
            k = max(1, min(req.k, miners - 1))
            hint = f"store with --n {miners} --k {k}, or try later" if miners else "try later"
            reject(503, "not_enough_miners", f"this gateway can place {shard}-byte shards on {miners} miners now and "
                                             f"the object needs {req.n} distinct ones: {hint}")
        if self.db.count_of(client) >= MAX_OBJECTS_PER_CLIENT:
            reject(413, "too_many_objects", f"you have {MAX_OBJECTS_PER_CLIENT} objects here: remove some with "
                                            f"`tensorage rm ID` first")
        used, quota = self.db.used_bytes(client), self.cfg.quota_bytes
        stored = charged_bytes(req.size, req.k, req.n)
        if used + stored > quota:
            reject(413, "quota_exceeded", f"storing {req.size} bytes at k={req.k}, n={req.n} costs {stored} bytes of "
                                          f"quota (its bytes on miners, at least {MIN_SHARD_CHARGE} per shard) and "
                                          f"would bring you to {used + stored} of your {quota}-byte quota on this "
                                          f"validator ({used} used): remove objects with `tensorage rm ID`, or ask "
                                          f"its operator for a larger --gateway.quota_gb")
        object_id = secrets.token_hex(16)
        expires = time.time() + DECLARE_TTL_S
        self.db.declare(id=object_id, client=client, size=req.size, k=req.k, n=req.n, block=req.block,
                        per_segment=per_segment, segments=len(layout.segments(per_segment)), meta=req.meta,
                        expires_at=expires)
        body = ObjectDeclared(id=object_id, body_bytes=layout.body_bytes, stripes=layout.stripes,
                              upload_path=f"/v1/objects/{object_id}?size={layout.body_bytes}", expires_at=expires)
        return web.json_response(body.model_dump(), status=201)

    @access(CLIENT)
    async def handle_list(self: "Gateway", request: web.Request) -> web.Response:
        client = request[CALLER].hotkey_ss58
        objs = self.db.objects_of(client)
        health = self.db.health([o.id for o in objs])
        body = ObjectList(objects=[self._entry(o, health.get(o.id, 0)) for o in objs],
                          used_bytes=self.db.used_bytes(client), quota_bytes=self.cfg.quota_bytes)
        return web.json_response(body.model_dump())

    @access(CLIENT)
    async def handle_delete(self: "Gateway", request: web.Request) -> web.Response:
        obj = self._own(request)
        if obj.id in self.active:
            reject(409, "uploading", f"object {obj.id} is being uploaded right now: interrupt that upload first")
        self.db.doom_object(obj.id, "deleting", "removed by its client")
        self.bus.publish(ObjectEvent(action="deleted", object_id=obj.id, client=obj.client, bytes=obj.size,
                                     source=self.source))
        return web.json_response(ObjectDeleted(id=obj.id).model_dump())

    @access(CLIENT, streamed=True)
    async def handle_upload(self: "Gateway", request: web.Request) -> web.Response:
        client = request[CALLER].hotkey_ss58
        obj = self._own(request)
        if obj.state != "declared":
            reject(409, "not_declared", f"object {obj.id} is {obj.state}, not waiting for an upload: declare a new "
                                        f"object with POST /v1/objects")
        body_bytes = ObjectLayout(obj.size, obj.k, obj.n, obj.block).body_bytes
        if request.query.get("size") != str(body_bytes):
            reject(400, "bad_request", f"sign and PUT {obj.id}?size={body_bytes}: the size in the path must be "
                                       f"the declared body size")
        if request.content_length is not None and request.content_length != body_bytes:
            reject(400, "bad_request", f"Content-Length {request.content_length} is not the declared {body_bytes}")
        if len(self.active) >= MAX_STORES or self._uploads.get(client, 0) >= MAX_STORES_PER_CLIENT:
            reject(429, "busy", "too many uploads at once on this gateway: try again in a moment")
        self.db.set_state(obj.id, "storing", only_from=["declared"])
        self.active.add(obj.id)
        self._uploads[client] = self._uploads.get(client, 0) + 1
        started = time.perf_counter()
        try:
            shards, miners = await self._receive(obj, request.content)
        except PlacementFailed as exc:
            self._fail(obj, str(exc))
            reject(503, "placement_failed", f"{exc}: nothing was kept; try again later or with a smaller --n")
        except TooSlow as exc:
            self._fail(obj, f"upload too slow: {exc}")
            reject(408, "too_slow", f"{exc}; nothing was kept")
        except (asyncio.IncompleteReadError, ConnectionError, aiohttp.ClientPayloadError, ValueError,
                TimeoutError) as exc:
            self._fail(obj, f"upload interrupted: {type(exc).__name__}: {exc}")  # the client went away
            reject(400, "incomplete", f"the upload did not carry exactly its declared {body_bytes} bytes: nothing "
                                      f"was kept; store the file again")
        except (SpoolError, OSError) as exc:
            self._fail(obj, f"gateway disk: {exc}")
            reject(500, "gateway_disk", "the gateway's disk failed while storing: nothing was kept; try another "
                                        "gateway (--gateway.uid)")
        except BaseException as exc:
            self._fail(obj, f"upload interrupted: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.active.discard(obj.id)
            self._uploads[client] -= 1
        await asyncio.to_thread(self.db.commit, obj.id)  # synchronous=FULL: durable before the client hears it
        seconds = time.perf_counter() - started
        self.bus.publish(ObjectEvent(action="stored", object_id=obj.id, client=client, bytes=obj.size,
                                     seconds=seconds, detail=f"{obj.segments} segments on {len(miners)} miners",
                                     source=self.source))
        return web.json_response(ObjectStored(id=obj.id, size=obj.size, segments=obj.segments, shards=shards,
                                              miners=len(miners)).model_dump())

    def _fail(self: "Gateway", obj, reason: str) -> None:
        self.db.doom_object(obj.id, "failed", reason)
        self.bus.publish(ObjectEvent(action="failed", object_id=obj.id, client=obj.client, bytes=obj.size,
                                     detail=reason[:300], source=self.source))

    async def _receive(self: "Gateway", obj, content) -> tuple[int, set[str]]:
        """Stripes in, a segment at a time: wrap and hash each shard into the spool (in a thread),
        then place the segment while the next one arrives."""
        layout = ObjectLayout(obj.size, obj.k, obj.n, obj.block)
        per_batch = max(1, BATCH_BYTES // layout.stripe_wire)
        placing: Optional[asyncio.Task] = None
        pace = Pace(IDLE_S)  # a trickle cannot hold one of the client's upload slots (net/pace.py)
        files: list[ShardFile] = []
        shards, miners = 0, set()
        try:
            for seg, stripes in enumerate(layout.segments(obj.per_segment)):
                writers = self.spool.writers(f"{obj.id}-{seg}", list(range(obj.n)), self.secret)
                files += [s for s, _ in writers]
                try:
                    left = stripes
                    while left:
                        m = min(per_batch, left)
                        data = await pace.read(m * layout.stripe_wire, content.readexactly(m * layout.stripe_wire))
                        pace.got(len(data))
                        await asyncio.to_thread(demux_sync, data, [f for _, f in writers], obj.n, obj.block)
                        left -= m
                    finished = await asyncio.to_thread(finish_sync, writers)
                except BaseException:
                    for _, f in writers:
                        f.close()
                    raise
                if placing is not None:
                    placed = await placing
                    shards += len(placed)
                    miners.update(m for m, _ in placed)
                placing = asyncio.ensure_future(place_segment(self, obj, seg, finished))
            if await content.read(1):
                raise ValueError("more bytes than declared")
            assert placing is not None
            placed = await placing
            shards += len(placed)
            miners.update(m for m, _ in placed)
            placing = None
            return shards, miners
        finally:
            if placing is not None and not placing.done():
                placing.cancel()
                await asyncio.gather(placing, return_exceptions=True)
            Spool.remove(f.path for f in files)

    @staticmethod
    def _segment_span(request: web.Request, obj) -> tuple[int, int]:
        """``?stripes=a-b`` (a ranged read): the segments that hold those stripes; else all of them."""
        text = request.query.get("stripes")
        if text is None:
            return 0, obj.segments - 1
        a, _, b = text.partition("-")
        total = ObjectLayout(obj.size, obj.k, obj.n, obj.block).stripes
        if not (a.isdigit() and b.isdigit()) or not int(a) <= int(b) < total:
            reject(416, "bad_range", f"stripes={text[:40]!r}: this object has stripes 0..{total - 1}; ask for "
                                     f"stripes=FIRST-LAST")
        return int(a) // obj.per_segment, int(b) // obj.per_segment

    @access(CLIENT)
    async def handle_retrieve(self: "Gateway", request: web.Request) -> web.StreamResponse:
        from .retrieval import stream

        obj = self._own(request, ("stored", "damaged"))
        if request.method == "HEAD":  # the object's parameters only: no shard fetched, nothing counted as served
            entry = self._entry(obj, self.db.health([obj.id]).get(obj.id, 0))
            return web.Response(headers={OBJECT_HEADER: entry.model_dump_json(),
                                         "Content-Type": "application/octet-stream"})
        if self._retrieves >= MAX_RETRIEVES:
            reject(429, "busy", "too many retrievals at once on this gateway: try again in a moment")
        first, last = self._segment_span(request, obj)
        self._retrieves += 1
        try:
            return await stream(self, request, obj, self._entry(obj, self.db.health([obj.id]).get(obj.id, 0)),
                                first, last)
        finally:
            self._retrieves -= 1
