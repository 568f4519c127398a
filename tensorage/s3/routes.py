"""S3's REST API over aiohttp, path-style (``/bucket/key``): thin handlers that check the signature,
parse the request, and answer S3's headers and XML. Every failure is an :class:`S3Error` rendered
as S3's XML error body."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
import time
from contextlib import aclosing
from email.utils import formatdate
from pathlib import Path
from typing import Optional
from urllib.parse import unquote

from aiohttp import web

from ..client.errors import ClientError, GatewayError
from . import xml
from .auth import Incoming, Verifier
from .bodies import Growing, Spooled, concatenate, parse_range, spool
from .errors import (BadDigest, ContentSHA256Mismatch, EntityTooLarge, EntityTooSmall, InternalError,
                     InvalidArgument, InvalidBucketName, InvalidPart, InvalidPartOrder, KeyTooLong, MalformedXML,
                     NotImplementedOp, S3Error, ServiceUnavailable)
from .mapping import Mapping, decode_token
from .remote import Remote

log = logging.getLogger(__name__)

OWNER = "tensorage"
MAX_PUT = 5 << 30          # S3's single-PUT limit
MAX_PART = 5 << 30
MAX_OBJECT = 5 << 40       # S3's largest object (a multipart upload)
MIN_PART = 5 << 20         # every part but the last, as S3
MAX_PARTS = 10000
MAX_KEY_BYTES = 1024
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
META_PREFIX = "x-amz-meta-"
STREAM_FROM = 1 << 20      # bodies from this size are stored while they arrive
STREAMING_PUTS = 4         # at once (each holds a worker thread waiting for bytes); more are spooled first


def _http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


class S3Server:
    def __init__(self, mapping: Mapping, remote: Remote, verifier: Verifier, spool_dir: Path,
                 max_object: int = MAX_PUT) -> None:
        self.mapping, self.remote, self.verifier = mapping, remote, verifier
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.max_object = max_object
        self._streaming = asyncio.Semaphore(STREAMING_PUTS)
        self.stats = {"requests": 0, "errors": 0}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=xml.MAX_XML_BODY)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    # dispatch ---------------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        rid = secrets.token_hex(8).upper()
        self.stats["requests"] += 1
        try:
            verified = self.verifier.verify(Incoming(request.method, request.raw_path, request.headers))
            bucket, key = self._names(request.raw_path)
            request["signed_sha256"] = verified.payload_sha256
            resp = await self._route(request, bucket, key)
        except S3Error as exc:
            return self._error(request, exc, rid)
        except GatewayError as exc:
            log.warning("gateway: %s", exc)
            return self._error(request, self._from_gateway(exc), rid)
        except ClientError as exc:
            log.warning("client: %s", exc)
            return self._error(request, InternalError(str(exc)), rid)
        resp.headers["x-amz-request-id"] = rid
        return resp

    def _error(self, request: web.Request, exc: S3Error, rid: str) -> web.Response:
        self.stats["errors"] += 1
        body = b"" if request.method == "HEAD" else xml.error(exc, rid)
        return web.Response(status=exc.status, body=body, content_type="application/xml",
                            headers={"x-amz-request-id": rid})

    @staticmethod
    def _from_gateway(exc: GatewayError) -> S3Error:
        if exc.code == "quota_exceeded":
            return EntityTooLarge(f"the subnet gateway refused: {exc}")
        return ServiceUnavailable(str(exc))

    @staticmethod
    def _names(raw_path: str) -> tuple[str, str]:
        path = raw_path.partition("?")[0]
        bucket, _, key = path.lstrip("/").partition("/")
        return unquote(bucket), unquote(key)

    async def _route(self, request: web.Request, bucket: str, key: str) -> web.StreamResponse:
        m, q = request.method, request.query
        if not bucket:
            if m == "GET":
                return self._xml(xml.list_buckets(self.mapping.buckets(), OWNER))
            raise NotImplementedOp()
        if not key:
            if m == "PUT":
                return await self.create_bucket(bucket)
            if m == "HEAD":
                self.mapping.bucket(bucket)
                return web.Response(headers={"x-amz-bucket-region": "us-east-1"})
            if m == "DELETE":
                self.mapping.delete_bucket(bucket)
                return web.Response(status=204)
            if m == "GET" and "location" in q:
                self.mapping.bucket(bucket)
                return self._xml(xml.location())
            if m == "GET" and "uploads" in q:
                raise NotImplementedOp("ListMultipartUploads is not implemented")
            if m == "GET" and not any(k in q for k in ("versioning", "acl", "policy", "tagging", "lifecycle", "cors")):
                return self.list_objects(request, bucket)
            if m == "POST" and "delete" in q:
                return await self.delete_objects(request, bucket)
            raise NotImplementedOp()
        if len(key.encode()) > MAX_KEY_BYTES:
            raise KeyTooLong()
        if "uploadId" in q:
            upload_id = q["uploadId"]
            if m == "PUT":
                return await self.upload_part(request, bucket, key, upload_id)
            if m == "POST":
                return await self.complete_multipart(request, bucket, key, upload_id)
            if m == "DELETE":
                return self.abort_multipart(bucket, key, upload_id)
            if m == "GET":
                return self.list_parts(request, bucket, key, upload_id)
        if m == "POST" and "uploads" in q:
            return self.create_multipart(request, bucket, key)
        if m == "PUT" and "x-amz-copy-source" in request.headers:
            return await self.copy_object(request, bucket, key)
        if any(k in q for k in ("acl", "tagging", "retention", "legal-hold", "torrent")):
            raise NotImplementedOp()
        if m == "PUT":
            return await self.put_object(request, bucket, key)
        if m in ("GET", "HEAD"):
            return await self.get_object(request, bucket, key)
        if m == "DELETE":
            await self._forget(bucket, key)
            return web.Response(status=204)
        raise NotImplementedOp()

    @staticmethod
    def _xml(body: bytes, status: int = 200) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/xml")

    # buckets ----------------------------------------------------------------------------------
    async def create_bucket(self, bucket: str) -> web.Response:
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise InvalidBucketName(resource=f"/{bucket}")
        self.mapping.create_bucket(bucket)
        return web.Response(headers={"Location": f"/{bucket}"})

    def list_objects(self, request: web.Request, bucket: str) -> web.Response:
        q = request.query
        v2 = q.get("list-type") == "2"
        try:
            max_keys = max(0, min(1000, int(q.get("max-keys", "1000"))))
        except ValueError:
            raise InvalidArgument("max-keys must be a number") from None
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        url = q.get("encoding-type") == "url"
        if v2:
            token, start_after = q.get("continuation-token", ""), q.get("start-after", "")
            after = decode_token(token) if token else start_after
            page = self.mapping.list(bucket, prefix, delimiter, after, max_keys)
            return self._xml(xml.list_objects(bucket, page, v2=True, prefix=prefix, delimiter=delimiter,
                                              max_keys=max_keys, url=url, continuation=token,
                                              start_after=start_after,
                                              owner=OWNER if q.get("fetch-owner") == "true" else ""))
        marker = q.get("marker", "")
        page = self.mapping.list(bucket, prefix, delimiter, marker, max_keys)
        return self._xml(xml.list_objects(bucket, page, v2=False, prefix=prefix, delimiter=delimiter,
                                          max_keys=max_keys, url=url, marker=marker, owner=OWNER))

    # objects ----------------------------------------------------------------------------------
    @staticmethod
    def _user_meta(request: web.Request) -> dict[str, str]:
        return {k.lower()[len(META_PREFIX):]: v for k, v in request.headers.items() if k.lower().startswith(META_PREFIX)}

    async def put_object(self, request: web.Request, bucket: str, key: str) -> web.Response:
        self.mapping.bucket(bucket)
        content_type = request.headers.get("Content-Type", "binary/octet-stream")
        declared = request.content_length
        if declared and STREAM_FROM <= declared <= self.max_object and not self._streaming.locked():
            async with self._streaming:
                return await self._put_streaming(request, bucket, key, declared, content_type)
        body = await spool(request, self.spool_dir, self.max_object, request.get("signed_sha256"))
        try:
            etag = body.md5
            await self._store(bucket, key, body, etag, content_type, self._user_meta(request))
        finally:
            body.path.unlink(missing_ok=True)
        return web.Response(headers={"ETag": f'"{etag}"'})

    async def _put_streaming(self, request: web.Request, bucket: str, key: str, size: int,
                             content_type: str) -> web.Response:
        """Store while the body arrives (the spool and the store overlap). The ETag travels sealed with
        the object, so it is only known at the end: the object carries the other names, and if a
        check fails after the gateway kept it, it is removed again: nothing is kept under the key."""
        path = self.spool_dir / f"body-{secrets.token_hex(8)}"
        growing = Growing(path)
        meta = self._user_meta(request)
        names = {"s3": {"b": bucket, "k": key, "t": content_type, "m": meta}}
        store = asyncio.ensure_future(self.remote.call(lambda c: c.store(
            path, name=key.rpartition("/")[2] or "object", meta=names, reader=growing, size=size)))
        try:
            body = await spool(request, self.spool_dir, self.max_object, request.get("signed_sha256"), path=path,
                               growing=growing)
        except BaseException:
            stored = await asyncio.gather(store, return_exceptions=True)
            growing.close()
            if not isinstance(stored[0], BaseException):
                await self._remove_remote(stored[0].id)
            raise
        try:
            stored = await store
        finally:
            growing.close()
            body.path.unlink(missing_ok=True)
        lay = stored.layout
        layout = json.dumps({"h": stored.header.hex(), "s": lay.size, "k": lay.k, "n": lay.n, "b": lay.block})
        orphan = self.mapping.put(bucket, key, stored.id, body.size, body.md5, content_type, meta, sealed=layout)
        await self._remove_remote(orphan)
        return web.Response(headers={"ETag": f'"{body.md5}"'})

    async def _store(self, bucket: str, key: str, body: Spooled, etag: str, content_type: str,
                     meta: dict[str, str]) -> None:
        """Store the spooled bytes on the subnet and name them; the object a key named before is
        removed once no key names it."""
        object_id, layout = None, ""
        if body.size:  # a 0-byte object is metadata only
            names = {"s3": {"b": bucket, "k": key, "e": etag, "t": content_type, "m": meta}}
            stored = await self.remote.call(lambda c: c.store(body.path, name=key.rpartition("/")[2] or "object",
                                                              meta=names))
            object_id = stored.id
            if stored.layout is not None:
                lay = stored.layout
                layout = json.dumps({"h": stored.header.hex(), "s": lay.size, "k": lay.k, "n": lay.n, "b": lay.block})
        orphan = self.mapping.put(bucket, key, object_id, body.size, etag, content_type, meta, sealed=layout)
        await self._remove_remote(orphan)

    async def _remove_remote(self, object_id: Optional[str]) -> None:
        if object_id is None:
            return
        try:
            await self.remote.call(lambda c: c.remove(object_id))
        except (GatewayError, ClientError) as exc:  # the key is gone either way; the gateway's GC is not ours
            log.warning("could not remove replaced object %s: %s", object_id, exc)

    async def _forget(self, bucket: str, key: str) -> None:
        await self._remove_remote(self.mapping.delete(bucket, key))

    def _object_headers(self, entry) -> dict[str, str]:
        headers = {"ETag": f'"{entry.etag}"', "Last-Modified": _http_date(entry.modified_at),
                   "Content-Type": entry.content_type, "Accept-Ranges": "bytes"}
        for k, v in json.loads(entry.meta).items():
            headers[META_PREFIX + k] = v
        return headers

    async def get_object(self, request: web.Request, bucket: str, key: str) -> web.StreamResponse:
        entry = self.mapping.get(bucket, key)
        span = parse_range(request.headers.get("Range"), entry.size)
        headers = self._object_headers(entry)
        first, last = span if span is not None else (0, entry.size - 1)
        length = last - first + 1
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{entry.size}"
        if request.method == "HEAD" or length <= 0:
            headers["Content-Length"] = str(max(0, length))
            return web.Response(status=status, headers=headers)
        client = await self.remote.client()
        if span is not None:
            sealed = entry.sealed or await self._read_layout(client, bucket, key, entry)
            return await self._ranged(request, client, entry, sealed, status, headers, first, last)
        async with client.open_object(entry.object_id) as stream:
            if stream.meta.get("size") != entry.size:
                raise InternalError(f"object {entry.object_id} holds {stream.meta.get('size')} bytes where the "
                                    f"mapping says {entry.size}: rebuild the mapping")
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = length
            await resp.prepare(request)
            pos = 0
            async with aclosing(stream.chunks(first=first, last=last)) as chunks:
                async for chunk in chunks:
                    lo, hi = max(first - pos, 0), min(last + 1 - pos, len(chunk))
                    if hi > lo:
                        await resp.write(chunk[lo:hi] if (lo, hi) != (0, len(chunk)) else chunk)
                    pos += len(chunk)
                    if pos > last:
                        break
            await resp.write_eof()
            return resp

    async def _read_layout(self, client, bucket: str, key: str, entry) -> str:
        """The sealed header and layout of an entry that has none kept (rebuilt from the gateway's
        listing, or stored with ``tensorage store``), read from the object's first stripe and kept."""
        from ..client.sealing import SegmentOpener

        header, lay = await client.read_header(entry.object_id)
        if SegmentOpener(client.key, header, lay.size).plain_size != entry.size:
            raise InternalError(f"object {entry.object_id} does not hold the {entry.size} bytes the mapping says: "
                                f"rebuild the mapping")
        sealed = json.dumps({"h": header.hex(), "s": lay.size, "k": lay.k, "n": lay.n, "b": lay.block})
        self.mapping.keep_layout(bucket, key, entry.object_id, sealed)
        return sealed

    async def _ranged(self, request: web.Request, client, entry, sealed_json: str, status: int, headers: dict,
                      first: int, last: int) -> web.StreamResponse:
        """Only the segments that cover the range are fetched and decrypted (``read_range``)."""
        from ..net.objects import ObjectLayout

        sealed = json.loads(sealed_json)
        layout = ObjectLayout(sealed["s"], sealed["k"], sealed["n"], sealed["b"])
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = last - first + 1
        chunks = client.read_range(entry.object_id, bytes.fromhex(sealed["h"]), layout, first, last)
        async with aclosing(chunks):
            async for chunk in chunks:
                if not resp.prepared:
                    await resp.prepare(request)
                await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def copy_object(self, request: web.Request, bucket: str, key: str) -> web.Response:
        source = unquote(request.headers["x-amz-copy-source"]).partition("?")[0].lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        entry = self.mapping.get(src_bucket, src_key)
        self.mapping.bucket(bucket)
        if request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE":
            content_type = request.headers.get("Content-Type", "binary/octet-stream")
            meta = self._user_meta(request)
        else:
            content_type, meta = entry.content_type, json.loads(entry.meta)
        now = time.time()
        orphan = self.mapping.put(bucket, key, entry.object_id, entry.size, entry.etag, content_type, meta, now,
                                  sealed=entry.sealed)
        await self._remove_remote(orphan)
        return self._xml(xml.copy_result(entry.etag, now))

    async def delete_objects(self, request: web.Request, bucket: str) -> web.Response:
        self.mapping.bucket(bucket)
        body = await request.read()
        want = request.headers.get("Content-MD5")
        if want is not None and base64.b64encode(hashlib.md5(body).digest()).decode() != want:
            raise BadDigest()
        signed = request.get("signed_sha256")
        if signed is not None and hashlib.sha256(body).hexdigest() != signed:
            raise ContentSHA256Mismatch()
        keys, quiet = xml.parse_delete(body)
        deleted, errors = [], []
        for key in keys:
            try:
                await self._forget(bucket, key)
                deleted.append(key)
            except S3Error as exc:
                errors.append((key, exc))
        return self._xml(xml.delete_result(deleted, errors, quiet))

    # multipart ------------------------------------------------------------------------------------
    def _upload_dir(self, upload_id: str) -> Path:
        return self.spool_dir / f"upload-{upload_id}"

    def create_multipart(self, request: web.Request, bucket: str, key: str) -> web.Response:
        upload_id = secrets.token_hex(16)
        self.mapping.create_upload(upload_id, bucket, key, request.headers.get("Content-Type", "binary/octet-stream"),
                                   self._user_meta(request))
        self._upload_dir(upload_id).mkdir(parents=True, exist_ok=True)
        return self._xml(xml.initiate_multipart(bucket, key, upload_id))

    async def upload_part(self, request: web.Request, bucket: str, key: str, upload_id: str) -> web.Response:
        self.mapping.upload(bucket, key, upload_id)
        try:
            number = int(request.query.get("partNumber", ""))
        except ValueError:
            raise InvalidArgument("partNumber must be a number from 1 to 10000") from None
        if not 1 <= number <= MAX_PARTS:
            raise InvalidArgument("partNumber must be a number from 1 to 10000")
        body = await spool(request, self._upload_dir(upload_id), MAX_PART, request.get("signed_sha256"))
        old = self.mapping.put_part(upload_id, number, body.md5, body.md5, body.size, str(body.path))
        if old:
            Path(old).unlink(missing_ok=True)
        return web.Response(headers={"ETag": f'"{body.md5}"'})

    def list_parts(self, request: web.Request, bucket: str, key: str, upload_id: str) -> web.Response:
        self.mapping.upload(bucket, key, upload_id)
        try:
            max_parts = max(1, min(1000, int(request.query.get("max-parts", "1000"))))
            marker = int(request.query.get("part-number-marker", "0"))
        except ValueError:
            raise InvalidArgument("max-parts and part-number-marker are numbers") from None
        parts = self.mapping.parts(upload_id, marker, max_parts + 1)
        return self._xml(xml.list_parts(bucket, key, upload_id, parts[:max_parts], max_parts, marker,
                                        len(parts) > max_parts, OWNER))

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> web.Response:
        self.mapping.upload(bucket, key, upload_id)
        self._drop_upload(upload_id)
        return web.Response(status=204)

    def _drop_upload(self, upload_id: str) -> None:
        for p in self.mapping.drop_upload(upload_id):
            Path(p).unlink(missing_ok=True)
        try:
            self._upload_dir(upload_id).rmdir()
        except OSError:
            pass

    async def complete_multipart(self, request: web.Request, bucket: str, key: str, upload_id: str) -> web.Response:
        upload = self.mapping.upload(bucket, key, upload_id)
        if request.content_length is not None and request.content_length > xml.MAX_XML_BODY:
            raise MalformedXML("the part list is too large")
        wanted = xml.parse_complete(await request.read())
        numbers = [n for n, _ in wanted]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise InvalidPartOrder()
        have = {p.number: p for p in self.mapping.parts(upload_id)}
        parts = []
        for i, (number, etag) in enumerate(wanted):
            part = have.get(number)
            if part is None or part.etag != etag:
                raise InvalidPart(f"part {number} was not uploaded, or its ETag differs")
            if part.size < MIN_PART and i < len(wanted) - 1:
                raise EntityTooSmall(f"part {number} is {part.size} bytes; every part but the last needs "
                                     f"{MIN_PART}")
            parts.append(part)
        size = sum(p.size for p in parts)
        if size > MAX_OBJECT:
            raise EntityTooLarge()
        joined = self.spool_dir / f"joined-{upload_id}"
        await asyncio.to_thread(concatenate, [Path(p.path) for p in parts], joined)
        etag = hashlib.md5(b"".join(bytes.fromhex(p.md5) for p in parts)).hexdigest() + f"-{len(parts)}"
        try:
            await self._store(bucket, key, Spooled(joined, size, "", ""), etag, upload.content_type,
                              json.loads(upload.meta))
        finally:
            joined.unlink(missing_ok=True)
        self._drop_upload(upload_id)
        return self._xml(xml.complete_multipart(f"/{bucket}/{key}", bucket, key, etag))
