"""The validator's client gateway (docs/design.md#client-data): clients store, list, retrieve and
delete their encrypted, erasure-coded objects; the gateway wraps every shard with a keystream only it knows,
places the n shards of each segment on n distinct miners, keeps the manifest and one-use audits
in SQLite, audits, repairs and collects garbage.

Endpoints (signed; clients are registered hotkeys or on ``--gateway.allow``):
  GET    /v1/gateway            public: this gateway's defaults (how a client finds one)
  POST   /v1/objects            declare an upload (size, k, n, block): quota and room checked first
  PUT    /v1/objects/{id}       the declared object's stripes, streamed
  GET    /v1/objects            the caller's objects
  GET    /v1/objects/{id}       the object: k shards per segment, fastest first, checked and unwrapped
  DELETE /v1/objects/{id}       remove it (its shards are deleted from miners by the ``gc`` job)

Proof rounds spend the audits (``ValidatorEngine.proof_round``): per miner, next to its window
challenge and under the same deadline, ``audit_miner(neuron, cfg.audits_per_round, deadline, window)``;
a verdict other than ``pass`` fails the miner's window (``fail``: the window proves nothing), and
``audited_bytes_by_miner()`` (healthy shards whose latest audit passed) is added to what the
window proved, weighted (``scoring.CLIENT_WEIGHT``). The validator then adds ``refill``, ``repair``
and ``gc`` with ``add_jobs(jobs, round_s)``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import aiohttp
from aiohttp import web

from ..chain.port import Metagraph, Neuron
from ..config import Settings
from ..events import AuditResult, EventBus, ObjectEvent, ShardLost
from ..net.auth import ALLOWED_CLIENTS, BODY, CALLER, CLIENT, PUBLIC, access
from ..net.client import PeerError, SignedClient
from ..net.errors import parse, reject
from ..net.objects import (DEFAULT_K, DEFAULT_N, FRAME_END, MAX_N, OBJECT_HEADER, AuditAnswer, AuditItem,
                           AuditRequest, AuditResponse, GatewayInfo,
                           ObjectDeclare, ObjectDeclared, ObjectDeleted, ObjectEntry, ObjectLayout, ObjectList,
                           ObjectStored, error_frame, is_object_id, segment_frame)
from ..scheduler import Jobs
from ..storage.audits import make_audits
from ..storage.gateway_db import AuditTask, GatewayStore
from ..storage.layout import Layout
from ..storage.wrap import SECRET_FILE, keystream, load_or_create_secret
from .gateway_peers import FetchError, PlacementError, ShardPeers
from .gateway_spool import ShardFile, Spool, SpoolError, demux_sync, finish_sync, interleave_sync

DECLARE_TTL_S = 600.0          # a declared object that never starts uploading is dropped after this
MAX_OBJECTS_PER_CLIENT = 10_000  # a listing of them stays a few MB
MAX_STORES = 4                 # uploads at once (each holds up to two segments of spool)
MAX_STORES_PER_CLIENT = 2
MAX_RETRIEVES = 8
BATCH_BYTES = 1 << 20          # upload bytes handed to a worker thread at once
EXTRA_FETCHES = 1              # retrieval starts k + this many shard downloads, keeps the fastest k
IDLE_S = 60.0                  # a client that sends or reads nothing for this long is cut off
MIN_UPKEEP_S = 10.0            # repair and gc run at most this often by default (devnet windows are 3 s)


class PlacementFailed(Exception):
    """A segment could not be placed on n distinct miners."""


class SegmentUnavailable(Exception):
    """Fewer than k shards of a segment could be fetched and checked."""


@dataclass
class FetchedSegment:
    indices: list[int]
    paths: list
    stripes: int


@dataclass
class AuditVerdict:
    """One miner's answers to a batch of audits, as a proof round would record them."""

    miner: str
    uid: int
    asked: int
    passed: int = 0
    failed: int = 0
    missed: int = 0
    lost: list[int] = field(default_factory=list)  # shard rows marked lost
    result: str = "pass"  # pass | fail | timeout | unreachable
    latency_ms: float = 0.0
    detail: str = ""
    passed_bytes: int = 0  # shard bytes whose audit passed in this batch


def check_audit(task: AuditTask, digest_hex: Optional[str]) -> bool:
    """Does a miner's answer match the precomputed digest? (Constant time.)"""
    if not digest_hex:
        return False
    try:
        answer = bytes.fromhex(digest_hex)
    except ValueError:
        return False
    return secrets.compare_digest(answer, task.expected)


def audit_request(tasks: list[AuditTask]) -> AuditRequest:
    """What to send to ``POST /v1/audits`` for these tasks (expected digests never leave)."""
    return AuditRequest(items=[AuditItem(shard=t.shard, offset=t.offset, length=t.length, nonce=t.nonce.hex())
                               for t in tasks])


class Gateway:
    def __init__(self, settings: Settings, layout: Layout, hotkey: str, client: SignedClient,
                 metagraph: Callable[[], Optional[Metagraph]], rank: Callable[[], dict[str, float]] = dict,
                 bus: Optional[EventBus] = None, source: str = "validator") -> None:
        self.settings = settings
        self.cfg = settings.gateway
        self.profile = settings.profile
        self.hotkey = hotkey
        self.bus = bus or EventBus()
        self.source = source
        layout.ensure()
        self.db = GatewayStore(layout.index / "gateway.sqlite")
        self.secret = load_or_create_secret(layout.index / SECRET_FILE)
        self.spool = Spool(layout.spool)
        self.peers = ShardPeers(client, metagraph, rank, hotkey)
        self.active: set[str] = set()  # objects being uploaded by this process
        self._uploads: dict[str, int] = {}  # client -> uploads in flight
        self._retrieves = 0
        for obj in self.db.objects_in("storing"):
            self.db.doom_object(obj.id, "failed", "interrupted by a validator restart")
        self.db.doom_unfinished_repairs()

    # -- composition ------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app[ALLOWED_CLIENTS] = self.cfg.allowed
        app.router.add_get("/v1/gateway", self.handle_info)
        app.router.add_post("/v1/objects", self.handle_declare)
        app.router.add_get("/v1/objects", self.handle_list)
        app.router.add_put("/v1/objects/{id}", self.handle_upload)
        app.router.add_get("/v1/objects/{id}", self.handle_retrieve)
        app.router.add_delete("/v1/objects/{id}", self.handle_delete)

    def add_jobs(self, jobs: Jobs, round_s: float) -> None:
        """``refill`` (proof windows spend the audits), ``repair`` and ``gc``."""
        jobs.add("refill", self.run_refill, self.cfg.audit_s or round_s, first_in=None)
        upkeep = self.cfg.repair_s or max(round_s, MIN_UPKEEP_S)
        jobs.add("repair", self.run_repair, upkeep, first_in=None)
        jobs.add("gc", self.run_gc, upkeep, first_in=None)

    def close(self) -> None:
        self.db.close()

    # -- the seam for proof rounds and scores ------------------------------------------------
    def due_audits(self, miner_hotkey: str, limit: int) -> list[AuditTask]:
        """Spend one audit on each of up to ``limit`` of the miner's healthy shards (least recently
        audited first). Send them with :func:`audit_request`, then :meth:`record_audits`."""
        return self.db.take_audits(miner_hotkey, limit)

    def record_audits(self, miner: Neuron, tasks: list[AuditTask], answers: Optional[list],
                      failure: str = "", latency_ms: float = 0.0, window: int = -1) -> AuditVerdict:
        """Judge a miner's answers (``AuditAnswer`` list, in the order asked) or its failure to answer
        (``answers=None``, ``failure`` = timeout | unreachable | a reason). A wrong answer loses the
        shard at once; ``--gateway.miss_limit`` unanswered audits in a row lose it too. Only this
        miner's shards are touched."""
        v = AuditVerdict(miner=miner.hotkey, uid=miner.uid, asked=len(tasks), latency_ms=latency_ms)
        for i, task in enumerate(tasks):
            answer = answers[i] if answers is not None and i < len(answers) else None
            if answers is None or answer is None:
                v.missed += 1
                if self.db.audit_missed(task.shard_row) >= self.cfg.miss_limit:
                    self._lose(task.shard_row, f"{self.cfg.miss_limit} audits in a row unanswered ({failure})")
                    v.lost.append(task.shard_row)
                continue
            if answer.shard == task.shard and check_audit(task, answer.digest):
                self.db.audit_passed(task.shard_row)
                v.passed += 1
                v.passed_bytes += task.size
                continue
            v.failed += 1
            why = answer.error or "wrong digest"
            self._lose(task.shard_row, f"failed an audit: {why}")
            v.lost.append(task.shard_row)
        if answers is None:
            self.peers.failed(miner.hotkey)
        if v.failed:
            v.result = "fail"
        elif answers is None and failure in ("timeout", "unreachable"):
            v.result = failure
        elif answers is None:
            v.result = "fail"
        v.detail = failure if answers is None else ""
        self.bus.publish(AuditResult(miner_uid=v.uid, miner_hotkey=v.miner, asked=v.asked, passed=v.passed,
                                     failed=v.failed, missed=v.missed, result=v.result, latency_ms=v.latency_ms,
                                     detail=v.detail, window=window, source=self.source))
        return v

    async def audit_miner(self, miner: Neuron, limit: int, deadline: float,
                          window: int = -1) -> Optional[AuditVerdict]:
        """Take, send and judge up to ``limit`` audits of one miner by ``deadline`` (unix time);
        None when it holds nothing to audit. Safe to run next to a proof round's challenge."""
        tasks = self.due_audits(miner.hotkey, limit)
        if not tasks:
            return None
        started = time.perf_counter()
        try:
            reply = await self.peers.audit(miner, audit_request(tasks), deadline)
        except PeerError as exc:
            return self.record_audits(miner, tasks, None, exc.kind, (time.perf_counter() - started) * 1000,
                                      window)
        latency = reply.latency_ms
        if reply.status >= 500:
            return self.record_audits(miner, tasks, None, f"HTTP {reply.status}", latency, window)
        if reply.status != 200:  # refused every audit: each one fails
            return self.record_audits(miner, tasks, [_refusal(t, reply.status) for t in tasks], "", latency, window)
        try:
            answers = AuditResponse.model_validate_json(reply.body).answers
        except ValueError:
            return self.record_audits(miner, tasks, [_refusal(t, 0) for t in tasks], "", latency, window)
        return self.record_audits(miner, tasks, answers, "", latency, window)

    def audited_bytes_by_miner(self) -> dict[str, int]:
        return self.db.audited_bytes_by_miner()

    def audited_bytes(self, miner_hotkey: str) -> int:
        """Bytes of the miner's healthy shards whose latest audit passed (a lost shard stops
        counting at once)."""
        return self.db.audited_bytes(miner_hotkey)

    # -- jobs ---------------------------------------------------------------------------------
    async def run_refill(self) -> str:
        return f"{await self.refill_audits(len(self.db.miners_with_live_shards()))} shards given new audits"

    async def refill_audits(self, miners: int) -> int:
        """New audits for shards that spent theirs (one checked download each), twice as fast as
        proof windows spend them."""
        from .gateway_upkeep import refill

        per_run = max(16, 2 * miners * self.cfg.audits_per_round // self.cfg.audits_per_shard)
        return await refill(self, per_run)

    async def run_repair(self) -> str:
        from .gateway_upkeep import repair

        return await repair(self)

    async def run_gc(self) -> str:
        from .gateway_upkeep import collect_garbage

        return await collect_garbage(self)

    def _lose(self, row_id: int, reason: str) -> None:
        if self.db.mark_lost(row_id, reason):
            row = self.db.shard(row_id)
            if row is not None:
                self.bus.publish(ShardLost(object_id=row.object_id, segment=row.segment, index=row.idx,
                                           miner_hotkey=row.miner, reason=reason, source=self.source))

    # -- handlers -------------------------------------------------------------------------------
    @access(PUBLIC)
    async def handle_info(self, request: web.Request) -> web.Response:
        return web.json_response(GatewayInfo(hotkey=self.hotkey, k=DEFAULT_K, n=DEFAULT_N, max_n=MAX_N,
                                             miners=len(self.peers.candidates(1)),
                                             shard_bytes=self.cfg.shard_bytes).model_dump())

    def _entry(self, obj, health: Optional[int] = None) -> ObjectEntry:
        return ObjectEntry(id=obj.id, size=obj.size, k=obj.k, n=obj.n, block=obj.block,
                           state=obj.state, created_at=obj.created_at, stored_at=obj.stored_at, meta=obj.meta,
                           segments=obj.segments, healthy=health if health is not None else 0)

    def _own(self, request: web.Request, states: tuple[str, ...] = ("declared", "storing", "stored", "damaged")):
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
    async def handle_declare(self, request: web.Request) -> web.Response:
        req = parse(ObjectDeclare, request[BODY])
        client = request[CALLER].hotkey_ss58
        if self.db.count_of(client) >= MAX_OBJECTS_PER_CLIENT:
            reject(413, "too_many_objects", f"you have {MAX_OBJECTS_PER_CLIENT} objects here: remove some with "
                                            f"`tensorage rm ID` first")
        used, quota = self.db.used_bytes(client), self.cfg.quota_bytes
        if used + req.size > quota:
            reject(413, "quota_exceeded", f"storing {req.size} bytes would bring you to {used + req.size} of your "
                                          f"{quota}-byte quota on this validator ({used} used): remove objects with "
                                          f"`tensorage rm ID`, or ask its operator for a larger --gateway.quota_gb")
        miners = len(self.peers.candidates(1))
        if req.n > miners:
            reject(503, "not_enough_miners", f"this gateway can place shards on {miners} miners now and the object "
                                             f"needs {req.n} distinct ones: store with --n {miners} (or fewer) and "
                                             f"--k below it, or try later")
        layout = req.layout()
        per_segment = layout.stripes_per_segment(self.cfg.shard_bytes)
        object_id = secrets.token_hex(16)
        expires = time.time() + DECLARE_TTL_S
        self.db.declare(id=object_id, client=client, size=req.size, k=req.k, n=req.n, block=req.block,
                        per_segment=per_segment, segments=len(layout.segments(per_segment)), meta=req.meta,
                        expires_at=expires)
        body = ObjectDeclared(id=object_id, body_bytes=layout.body_bytes, stripes=layout.stripes,
                              upload_path=f"/v1/objects/{object_id}?size={layout.body_bytes}", expires_at=expires)
        return web.json_response(body.model_dump(), status=201)

    @access(CLIENT)
    async def handle_list(self, request: web.Request) -> web.Response:
        client = request[CALLER].hotkey_ss58
        objs = self.db.objects_of(client)
        health = self.db.health([o.id for o in objs])
        body = ObjectList(objects=[self._entry(o, health.get(o.id, 0)) for o in objs],
                          used_bytes=self.db.used_bytes(client), quota_bytes=self.cfg.quota_bytes)
        return web.json_response(body.model_dump())

    @access(CLIENT)
    async def handle_delete(self, request: web.Request) -> web.Response:
        obj = self._own(request)
        if obj.id in self.active:
            reject(409, "uploading", f"object {obj.id} is being uploaded right now: interrupt that upload first")
        self.db.doom_object(obj.id, "deleting", "removed by its client")
        self.bus.publish(ObjectEvent(action="deleted", object_id=obj.id, client=obj.client, bytes=obj.size,
                                     source=self.source))
        return web.json_response(ObjectDeleted(id=obj.id).model_dump())

    @access(CLIENT, streamed=True)
    async def handle_upload(self, request: web.Request) -> web.Response:
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
        self.db.commit(obj.id)
        seconds = time.perf_counter() - started
        self.bus.publish(ObjectEvent(action="stored", object_id=obj.id, client=client, bytes=obj.size,
                                     seconds=seconds, detail=f"{obj.segments} segments on {len(miners)} miners",
                                     source=self.source))
        return web.json_response(ObjectStored(id=obj.id, size=obj.size, segments=obj.segments, shards=shards,
                                              miners=len(miners)).model_dump())

    def _fail(self, obj, reason: str) -> None:
        self.db.doom_object(obj.id, "failed", reason)
        self.bus.publish(ObjectEvent(action="failed", object_id=obj.id, client=obj.client, bytes=obj.size,
                                     detail=reason[:300], source=self.source))

    # -- storing ----------------------------------------------------------------------------------
    async def _receive(self, obj, content) -> tuple[int, set[str]]:
        """Stripes in, a segment at a time: wrap and hash each shard into the spool (in a thread),
        then place the segment while the next one arrives."""
        layout = ObjectLayout(obj.size, obj.k, obj.n, obj.block)
        per_batch = max(1, BATCH_BYTES // layout.stripe_wire)
        placing: Optional[asyncio.Task] = None
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
                        async with asyncio.timeout(IDLE_S):
                            data = await content.readexactly(m * layout.stripe_wire)
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
                placing = asyncio.ensure_future(self._place_segment(obj, seg, finished))
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

    async def _place_segment(self, obj, seg: int, shards: list[ShardFile], exclude: frozenset = frozenset(),
                             state: str = "placed", last: frozenset = frozenset()) -> list[tuple[str, int]]:
        """Each shard on its own miner (best ranked first, the next candidate on failure); the row is
        written before the PUT so a shard that may have landed is never forgotten. Returns (miner,
        shard row) in the order of ``shards``; rows are left in ``state``."""
        size = max(s.size for s in shards)
        candidates = self.peers.candidates(size, exclude=set(exclude), last=set(last))
        if len(candidates) < len(shards):
            raise PlacementFailed(f"segment {seg} needs {len(shards)} miners with room and {len(candidates)} are "
                                  f"available")
        spare = candidates[len(shards):]
        used: set[str] = set(exclude)
        created: list[int] = []

        async def place(shard: ShardFile, miner: Neuron) -> tuple[str, int]:
            audits = asyncio.ensure_future(asyncio.to_thread(make_audits, shard.path, shard.size,
                                                             self.cfg.audits_per_shard))
            try:
                while True:
                    used.add(miner.hotkey)
                    row = self.db.add_shard(object_id=obj.id, segment=seg, idx=shard.idx, hash=shard.hash,
                                            wrap=shard.wrap, miner=miner.hotkey, size=shard.size)
                    created.append(row)
                    try:
                        await self.peers.put(miner, shard.hash, shard.path, shard.size)
                    except PlacementError as exc:
                        self.bus.log(f"placing shard {shard.idx} of {obj.id[:12]} segment {seg}: {exc}",
                                     severity="warning", source=self.source)
                        if exc.landed:
                            self.db.update_shard(row, state="doomed", reason=str(exc)[:300])
                        else:
                            self.db.forget_shard(row)
                        nxt = next((m for m in spare if m.hotkey not in used), None)
                        if nxt is None:
                            raise PlacementFailed(f"no miner left to take shard {shard.idx} of segment {seg} "
                                                  f"(last: {exc})") from None
                        miner = nxt
                        continue
                    self.db.add_audits(row, await audits)
                    self.db.update_shard(row, state=state)
                    return miner.hotkey, row
            finally:
                if not audits.done():
                    audits.cancel()

        results = await asyncio.gather(*(place(s, m) for s, m in zip(shards, candidates)), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            for row in created:  # what did land goes to the GC with the rest of the attempt
                shard_row = self.db.shard(row)
                if shard_row is not None and shard_row.state in ("placing", "placed"):
                    self.db.update_shard(row, state="doomed")
            raise failure
        return list(results)  # type: ignore[arg-type]

    # -- retrieving ---------------------------------------------------------------------------------
    async def fetch_segment(self, obj, seg: int, unwrap: bool = True) -> FetchedSegment:
        """The fastest k healthy shards of a segment, downloaded, hash-checked and unwrapped into the
        spool. A shard that comes back wrong is marked lost; another one is fetched instead."""
        rows = {r.idx: r for r in self.db.segment_shards(obj.id, seg, "healthy")}
        if len(rows) < obj.k:
            raise SegmentUnavailable(f"segment {seg} has {len(rows)} healthy shards and needs {obj.k}")
        order = [r for h in self.peers.by_speed(list({r.miner for r in rows.values()}))
                 for r in rows.values() if r.miner == h]
        pending = list(order)
        running: dict[asyncio.Task, tuple] = {}
        got: dict[int, object] = {}
        problems: list[str] = []

        def launch() -> None:
            row = pending.pop(0)
            miner = self.peers.neuron(row.miner)
            path = self.spool.path(f"get-{obj.id}-{seg}-{row.idx}")
            if miner is None:
                problems.append(f"shard {row.idx}: miner {row.miner[:8]} left the subnet")
                running[asyncio.ensure_future(_fail_now())] = (row, path)
                return
            ks = keystream(self.secret, row.wrap) if unwrap else None
            running[asyncio.ensure_future(self.peers.fetch(miner, row.hash, row.size, path, ks))] = (row, path)

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
                        continue
                    if isinstance(exc, SpoolError):
                        raise exc
                    problems.append(f"shard {row.idx}: {exc}")
                    if isinstance(exc, FetchError) and exc.kind in ("corrupt", "missing"):
                        self._lose(row.id, f"{exc.kind} on download: {exc}")
                    if pending and len(got) + len(running) < obj.k + EXTRA_FETCHES:
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

    @access(CLIENT)
    async def handle_retrieve(self, request: web.Request) -> web.StreamResponse:
        obj = self._own(request, ("stored", "damaged"))
        if self._retrieves >= MAX_RETRIEVES:
            reject(429, "busy", "too many retrievals at once on this gateway: try again in a moment")
        self._retrieves += 1
        try:
            return await self._stream(request, obj)
        finally:
            self._retrieves -= 1

    async def _stream(self, request: web.Request, obj) -> web.StreamResponse:
        health = self.db.health([obj.id]).get(obj.id, 0)
        entry = self._entry(obj, health)
        segments = ObjectLayout(obj.size, obj.k, obj.n, obj.block).segments(obj.per_segment)
        started = time.perf_counter()
        prefetch: Optional[asyncio.Task] = asyncio.ensure_future(self.fetch_segment(obj, 0))
        response = web.StreamResponse(headers={OBJECT_HEADER: entry.model_dump_json(),
                                               "Content-Type": "application/octet-stream"})
        try:
            await response.prepare(request)
            per_batch = max(1, BATCH_BYTES // (obj.k * obj.block))
            for seg in range(len(segments)):
                assert prefetch is not None
                try:
                    got = await prefetch
                except SegmentUnavailable as exc:
                    prefetch = None
                    self.bus.publish(ObjectEvent(action="damaged", object_id=obj.id, client=obj.client,
                                                 detail=str(exc)[:300], source=self.source))
                    await response.write(error_frame(f"the gateway cannot rebuild {exc}: the object is damaged"))
                    return response
                prefetch = asyncio.ensure_future(self.fetch_segment(obj, seg + 1)) if seg + 1 < len(segments) else None
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
        self.bus.publish(ObjectEvent(action="retrieved", object_id=obj.id, client=obj.client, bytes=obj.size,
                                     seconds=time.perf_counter() - started, source=self.source))
        return response

    def snapshot(self) -> dict:
        return {"gateway": {**self.db.stats(), "uploading": len(self.active), "retrieving": self._retrieves}}


async def _fail_now() -> None:
    raise FetchError("unreachable", "the miner left the subnet")


def _refusal(task: AuditTask, status: int) -> AuditAnswer:
    return AuditAnswer(shard=task.shard, error=f"audit refused (HTTP {status})" if status else "malformed answer")
