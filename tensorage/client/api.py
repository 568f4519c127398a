"""Store, retrieve, list and remove objects through a validator gateway.

Only ciphertext leaves this process: files are sealed (``sealing``) and coded (``erasure``) in a
worker thread a batch at a time while the previous batch is on the wire, so memory stays
bounded whatever the file size. Retrieval checks every tag and the content hash before the
output appears under its name (``pipeline.Restorer``).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from contextlib import aclosing, asynccontextmanager
from typing import Any, AsyncIterator, Callable, Optional

import bittensor as bt

from ..chain.port import Neuron
from ..net.client import PeerError, Reply, SignedClient
from ..net.objects import (DEFAULT_K, DEFAULT_N, FIRST_STRIPE_HEADER, FRAME_END, FRAME_ERROR, FRAME_SEGMENT, MAX_META_CHARS, OBJECT_HEADER,
                           SEGMENT_HEADER_BYTES, ObjectDeclare, ObjectDeclared, ObjectEntry, ObjectLayout, ObjectList,
                           ObjectStored, is_object_id, parse_length, parse_segment_header)
from .errors import ClientError, GatewayError, IntegrityError, from_reply
from .pipeline import Decrypter, Restorer, StoreSource
from .erasure import StripeDecoder
from .sealing import HEADER, SegmentOpener, open_meta, seal_meta

Progress = Callable[[int], None]
READ_BATCH = 1 << 20
MAX_NAME = 255


@dataclass(frozen=True)
class Stored:
    id: str
    path: Path
    plain_size: int
    sha256: str
    size: int       # ciphertext bytes on the gateway
    segments: int
    shards: int
    seconds: float
    header: bytes = b""  # the sealed object's clear header (ranged reads need it)
    layout: Optional[ObjectLayout] = None


@dataclass(frozen=True)
class Retrieved:
    id: str
    path: Path
    plain_size: int
    sha256: str
    seconds: float


@dataclass(frozen=True)
class Listed:
    id: str
    name: Optional[str]        # None: sealed under another key file
    plain_size: Optional[int]
    size: int
    k: int
    n: int
    state: str
    healthy: int
    segments: int
    created_at: float
    meta: Optional[dict] = None  # everything sealed with it (None: sealed under another key file)


def _noop(_: int) -> None:
    pass


class ObjectClient:
    def __init__(self, wallet: bt.Wallet, key: bytes, gateway: Neuron, client: Optional[SignedClient] = None,
                 own_client: Optional[bool] = None) -> None:
        self.key = key
        self.gateway = gateway
        self.client = client or SignedClient(wallet, connections=16)
        self._owns_client = client is None if own_client is None else own_client
        host, port = gateway.endpoint  # type: ignore[misc]
        self.host, self.port = host, port

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()

    async def __aenter__(self) -> "ObjectClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _request(self, what: str, method: str, path: str, body: bytes = b"", timeout: float = 30.0) -> Reply:
        try:
            return await self.client.request(method, self.host, self.port, path, self.gateway.hotkey, body=body,
                                             timeout=timeout)
        except PeerError as exc:
            raise GatewayError(f"{what}: the gateway (uid {self.gateway.uid}) did not answer: {exc}",
                               code=exc.kind) from None

    @staticmethod
    def _error(what: str, reply: Reply) -> GatewayError:
        try:
            data = reply.json()
            return from_reply(what, reply.status, data.get("error"), data.get("message", ""))
        except (ValueError, AttributeError):
            return from_reply(what, reply.status, None, reply.body[:200].decode(errors="replace"))

    # store ------------------------------------------------------------------------------------
    async def store(self, path: Path, k: int = DEFAULT_K, n: int = DEFAULT_N, progress: Progress = _noop,
                    salt: Optional[bytes] = None, name: Optional[str] = None, meta: Optional[dict] = None,
                    reader=None, size: Optional[int] = None) -> Stored:
        """Seal, code and upload one file; returns its object id. ``name`` (default: the file's) and
        ``meta`` travel sealed with the object. ``salt`` is for tests only."""
        path = Path(path)
        if not 1 <= k <= n:
            raise ClientError(f"need 1 <= k <= n (got k={k}, n={n}): any k of the n shards rebuild the file")
        started = time.perf_counter()
        source = await asyncio.to_thread(StoreSource, path, self.key, k, n, salt=salt, reader=reader, size=size)
        try:
            layout = source.layout
            sealed = seal_meta(self.key, {**(meta or {}), "name": (name or path.name)[:MAX_NAME],
                                          "size": source.plain_size})
            if len(sealed) > MAX_META_CHARS:  # what does not fit is dropped, never the name and size
                sealed = seal_meta(self.key, {"name": (name or path.name)[:MAX_NAME], "size": source.plain_size})
            declare = ObjectDeclare(size=layout.size, k=k, n=n, block=layout.block, meta=sealed)
            reply = await self._request(f"store {path}", "POST", "/v1/objects", declare.model_dump_json().encode())
            if reply.status != 201:
                raise self._error(f"store {path}", reply)
            declared = ObjectDeclared.model_validate_json(reply.body)
            if declared.body_bytes != layout.body_bytes:
                raise GatewayError(f"store {path}: the gateway expects {declared.body_bytes} bytes where the client "
                                   f"codes {layout.body_bytes}: client and gateway disagree; upgrade the older one")
            failure: list[BaseException] = []
            body = self._body(source, progress, failure)
            try:
                reply = await self.client.put_stream(self.host, self.port, declared.upload_path, self.gateway.hotkey,
                                                     body, declared.body_bytes)
            except PeerError as exc:
                if failure:
                    raise failure[0] from None
                raise GatewayError(f"store {path}: the upload to the gateway failed: {exc}; nothing was kept, store "
                                   f"it again", code=exc.kind) from None
            if failure:
                raise failure[0]
            if reply.status != 200:
                raise self._error(f"store {path}", reply)
            stored = ObjectStored.model_validate_json(reply.body)
        finally:
            source.close()
        progress(source.plain_size)
        return Stored(id=stored.id, path=path, plain_size=source.plain_size, sha256=source.sha256, size=layout.size,
                      segments=stored.segments, shards=stored.shards, seconds=time.perf_counter() - started,
                      header=source.header, layout=layout)

    @staticmethod
    async def _body(source: StoreSource, progress: Progress, failure: list) -> AsyncIterator[bytes]:
        """Batches made in a worker thread, the next one while this one is sent. Only the source's own
        failures are recorded: a cancellation means the gateway answered first, and its answer is the
        error to report."""
        batches = source.batches()

        def produce() -> Optional[bytes]:
            return next(batches, None)

        pending = asyncio.ensure_future(asyncio.to_thread(produce))
        try:
            while True:
                try:
                    chunk = await pending
                except asyncio.CancelledError:
                    raise  # aiohttp stopped sending (the gateway answered early): its answer says why
                except Exception as exc:
                    failure.append(exc)
                    raise
                if chunk is None:
                    return
                pending = asyncio.ensure_future(asyncio.to_thread(produce))
                yield chunk
                progress(source.sent)
        finally:
            if not pending.done():
                pending.cancel()

    # retrieve ----------------------------------------------------------------------------------
    async def retrieve(self, object_id: str, out: Optional[Path] = None, force: bool = False,
                       progress: Progress = _noop, on_start: Callable[[ObjectEntry, Path], None] = lambda e, p: None
                       ) -> Retrieved:
        """Fetch, decode and check an object into ``out`` (default: its stored name, here)."""
        if not is_object_id(object_id):
            raise ClientError(f"{object_id!r} is not an object id (32 hex characters, as `tensorage store` and "
                              f"`tensorage ls` print them)")
        started = time.perf_counter()
        what = f"retrieve {object_id}"
        try:
            async with self._object_response(f"/v1/objects/{object_id}", what) as (resp, entry):
                layout = ObjectLayout(entry.size, entry.k, entry.n, entry.block)
                target = Path(out) if out is not None else self._default_name(entry)
                restorer = await asyncio.to_thread(Restorer, self.key, layout, target, force)
                try:
                    on_start(entry, target)
                    await self._read_frames(resp.content, restorer, layout, progress)
                    opened = await asyncio.to_thread(restorer.commit)
                except BaseException:
                    restorer.abort()
                    raise
        except PeerError as exc:
            raise GatewayError(f"{what}: the connection to the gateway failed: {exc}; nothing was written",
                               code=exc.kind) from None
        return Retrieved(id=object_id, path=target, plain_size=opened.size, sha256=opened.sha256,
                         seconds=time.perf_counter() - started)

    @asynccontextmanager
    async def _object_response(self, path: str, what: str) -> AsyncIterator[tuple[Any, ObjectEntry]]:
        """A gateway GET of an object (whole or ranged): a refusal raised with the gateway's own
        message, and the object description every answer must carry."""
        async with self.client.get_stream(self.host, self.port, path, self.gateway.hotkey) as resp:
            if resp.status != 200:
                raise self._error(what, Reply(resp.status, await resp.content.read(1 << 16), 0.0))
            try:
                entry = ObjectEntry.model_validate_json(resp.headers.get(OBJECT_HEADER, ""))
            except ValueError:
                raise GatewayError(f"{what}: the gateway sent no object description: is it a tensorage "
                                   f"gateway of this protocol version?") from None
            yield resp, entry

    def _default_name(self, entry: ObjectEntry) -> Path:
        meta = open_meta(self.key, entry.meta) or {}
        name = os.path.basename(str(meta.get("name") or ""))
        if not name or name in (".", ".."):
            name = entry.id
        return Path(name)

    async def _read_frames(self, content, restorer: Restorer, layout: ObjectLayout, progress: Progress) -> None:
        async for data, indices, block in self._batches(content, layout):
            await asyncio.to_thread(restorer.consume, data, indices, block)
            progress(restorer.written)

    async def _batches(self, content, layout: ObjectLayout) -> AsyncIterator[tuple[bytes, list[int], int]]:
        """The gateway's frames as batches of whole stripes (about READ_BATCH bytes each), checked for
        order and count; a stream cut short is a GatewayError."""
        try:
            async for batch in self._frames(content, layout):
                yield batch
        except asyncio.IncompleteReadError:
            raise GatewayError("the gateway stopped in the middle of the object: nothing was written; try "
                               "again") from None

    async def _frames(self, content, layout: ObjectLayout) -> AsyncIterator[tuple[bytes, list[int], int]]:
        expected_segment = 0
        stripes_seen = 0
        while True:
            magic = await content.readexactly(4)
            if magic == FRAME_END:
                if stripes_seen != layout.stripes:
                    raise IntegrityError(f"the gateway sent {stripes_seen} of {layout.stripes} stripes")
                return
            if magic == FRAME_ERROR:
                length = parse_length(await content.readexactly(4))
                message = (await content.readexactly(min(length, 4096))).decode(errors="replace")
                raise GatewayError(f"the gateway could not finish the object: {message}; nothing was written",
                                   code="damaged")
            if magic != FRAME_SEGMENT:
                raise IntegrityError("the gateway sent a malformed stream: nothing was written")
            segment, stripes, block, k = parse_segment_header(await content.readexactly(SEGMENT_HEADER_BYTES))
            indices = list(await content.readexactly(k))
            if segment != expected_segment or k != layout.k or stripes < 1 or stripes_seen + stripes > layout.stripes:
                raise IntegrityError(f"the gateway sent segment {segment} ({stripes} stripes, k={k}) out of order: "
                                     f"nothing was written")
            stripe_bytes = k * block
            per_batch = max(1, READ_BATCH // stripe_bytes)
            left = stripes
            while left:
                m = min(per_batch, left)
                yield await content.readexactly(m * stripe_bytes), indices, block
                left -= m
            stripes_seen += stripes
            expected_segment += 1

    async def read_range(self, object_id: str, header: bytes, layout: ObjectLayout, first: int,
                         last: int) -> AsyncIterator[bytes]:
        """Plaintext bytes ``first..last`` of an object whose sealed header and layout the caller kept
        (:class:`Stored`, or :meth:`read_header`): only the gateway segments holding the AEAD segments
        that cover the range are fetched (``?stripes=a-b``) and only those AEAD segments are
        decrypted. Memory: one batch of stripes and one AEAD segment."""
        opener = SegmentOpener(self.key, header, layout.size)
        i0, i1 = opener.span(first, last)
        c0, c1 = opener.offset(i0), opener.offset(i1) + opener.length(i1)
        sd = layout.stripe_data
        what = f"read {object_id} bytes {first}-{last}"
        buf = bytearray()
        index, checked = i0, False
        async with aclosing(self._ciphertext(object_id, c0 // sd, (c1 - 1) // sd, what)) as batches:
            async for entry, pos, ciphertext in batches:
                if not checked:  # the first batch must start at or before the range
                    if (entry.size, entry.k, entry.block) != (layout.size, layout.k, layout.block) or pos > c0:
                        raise IntegrityError(f"{what}: the gateway describes another object than was stored")
                    checked = True
                lo, hi = max(c0 - pos, 0), min(c1 - pos, len(ciphertext))
                if hi > lo:
                    buf += ciphertext[lo:hi]
                while index <= i1 and len(buf) >= opener.length(index):
                    n = opener.length(index)
                    plain = await asyncio.to_thread(opener.open, index, bytes(buf[:n]))
                    del buf[:n]
                    start = index * opener.segment
                    yield plain[max(first - start, 0):min(last + 1 - start, len(plain))]
                    index += 1
                if index > i1:
                    return
        raise GatewayError(f"{what}: the gateway ended before the range")

    async def read_header(self, object_id: str) -> tuple[bytes, ObjectLayout]:
        """An object's sealed header and layout, from its first gateway stripe alone: what a ranged
        read needs when the caller did not keep them (an object stored by ``tensorage store``, or a
        mapping rebuilt from the gateway's listing). The header must open under this client's key."""
        what = f"read {object_id}'s header"
        buf = bytearray()
        entry = None
        async with aclosing(self._ciphertext(object_id, 0, 0, what)) as batches:
            async for entry, pos, ciphertext in batches:
                if pos != len(buf):
                    raise IntegrityError(f"{what}: the gateway sent the object from byte {pos}, not its start")
                buf += ciphertext
                if len(buf) >= HEADER.size:
                    break
        if entry is None or len(buf) < HEADER.size:
            raise GatewayError(f"{what}: the gateway ended before the header")
        header, layout = bytes(buf[:HEADER.size]), ObjectLayout(entry.size, entry.k, entry.n, entry.block)
        SegmentOpener(self.key, header, layout.size)  # a header sealed under another key is refused here
        return header, layout

    async def _ciphertext(self, object_id: str, s0: int, s1: int,
                          what: str) -> AsyncIterator[tuple[ObjectEntry, int, bytes]]:
        """Gateway stripes ``s0..s1`` decoded to ciphertext, a batch at a time, each with the object's
        entry and where the batch starts in the ciphertext."""
        try:
            async with self._object_response(f"/v1/objects/{object_id}?stripes={s0}-{s1}", what) as (resp, entry):
                try:  # an older gateway answers from stripe 0
                    first_stripe = int(resp.headers.get(FIRST_STRIPE_HEADER, "0"))
                except ValueError:
                    raise GatewayError(f"{what}: the gateway sent a malformed {FIRST_STRIPE_HEADER}") from None
                pos = first_stripe * ObjectLayout(entry.size, entry.k, entry.n, entry.block).stripe_data
                decoder = StripeDecoder(entry.k, entry.n)
                async for _, data, indices, block in _ranged_frames(resp.content):
                    if block != entry.block or len(indices) != entry.k:
                        raise IntegrityError(f"{what}: the gateway sent stripes of another shape")
                    try:
                        ciphertext = await asyncio.to_thread(decoder.decode, data, indices, block)
                    except ValueError as exc:
                        raise IntegrityError(f"{what}: the gateway sent malformed stripes ({exc})") from None
                    yield entry, pos, ciphertext
                    pos += len(ciphertext)
        except asyncio.IncompleteReadError:
            raise GatewayError(f"{what}: the gateway stopped in the middle of the range") from None
        except PeerError as exc:
            raise GatewayError(f"{what}: the connection to the gateway failed: {exc}", code=exc.kind) from None

    @asynccontextmanager
    async def open_object(self, object_id: str) -> AsyncIterator["PlainStream"]:
        """An object's plaintext as a stream, for a server that passes it on (``tensorage s3``):
        every chunk yielded passed its tag; the content hash is checked after the last one, and a
        failure there raises (the caller's own client sees a cut transfer, as it must)."""
        if not is_object_id(object_id):
            raise ClientError(f"{object_id!r} is not an object id")
        what = f"retrieve {object_id}"
        try:
            async with self._object_response(f"/v1/objects/{object_id}", what) as (resp, entry):
                yield PlainStream(self, entry, resp.content)
        except PeerError as exc:
            raise GatewayError(f"{what}: the connection to the gateway failed: {exc}", code=exc.kind) from None

    # list / remove --------------------------------------------------------------------------------
    async def list(self) -> tuple[list[Listed], int, int]:
        """(objects, bytes used, quota) of this client on this gateway."""
        reply = await self._request("list", "GET", "/v1/objects")
        if reply.status != 200:
            raise self._error("list", reply)
        listing = ObjectList.model_validate_json(reply.body)
        out = []
        for e in listing.objects:
            meta = open_meta(self.key, e.meta) if self.key else None
            out.append(Listed(id=e.id, name=meta.get("name") if meta else None,
                              plain_size=meta.get("size") if meta else None, size=e.size, k=e.k, n=e.n,
                              state=e.state, healthy=e.healthy, segments=e.segments, created_at=e.created_at,
                              meta=meta))
        return out, listing.used_bytes, listing.quota_bytes

    async def remove(self, object_id: str) -> None:
        if not is_object_id(object_id):
            raise ClientError(f"{object_id!r} is not an object id (32 hex characters)")
        reply = await self._request(f"rm {object_id}", "DELETE", f"/v1/objects/{object_id}")
        if reply.status != 200:
            raise self._error(f"rm {object_id}", reply)


async def _ranged_frames(content) -> AsyncIterator[tuple[int, bytes, list[int], int]]:
    """A ranged answer's frames: (segment, stripes' bytes, indices, block), a batch at a time."""
    while True:
        magic = await content.readexactly(4)
        if magic == FRAME_END:
            return
        if magic == FRAME_ERROR:
            length = parse_length(await content.readexactly(4))
            message = (await content.readexactly(min(length, 4096))).decode(errors="replace")
            raise GatewayError(f"the gateway could not finish the object: {message}", code="damaged")
        if magic != FRAME_SEGMENT:
            raise IntegrityError("the gateway sent a malformed stream")
        segment, stripes, block, k = parse_segment_header(await content.readexactly(SEGMENT_HEADER_BYTES))
        indices = list(await content.readexactly(k))
        per_batch = max(1, READ_BATCH // (k * block))
        left = stripes
        while left:
            m = min(per_batch, left)
            yield segment, await content.readexactly(m * k * block), indices, block
            left -= m


class PlainStream:
    """One object being read (:meth:`ObjectClient.open_object`): its entry, sealed metadata, and
    its plaintext in chunks of about a megabyte."""

    def __init__(self, client: ObjectClient, entry: ObjectEntry, content) -> None:
        self.client, self.entry, self._content = client, entry, content
        self.layout = ObjectLayout(entry.size, entry.k, entry.n, entry.block)
        self.meta = open_meta(client.key, entry.meta) or {}

    async def chunks(self, first: int = 0, last: Optional[int] = None) -> AsyncIterator[bytes]:
        """Plaintext in order from the object's start; a reader that needs only bytes ``first..last``
        may stop early (the gateway stops when the connection closes)."""
        decrypter = Decrypter(self.client.key, self.layout)
        async for data, indices, block in self.client._batches(self._content, self.layout):
            plain = await asyncio.to_thread(decrypter.consume, data, indices, block)
            if plain:
                yield plain
        decrypter.finish()
