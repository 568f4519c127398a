"""Request bodies to disk and byte ranges: large objects pass through bounded memory.

A body is spooled to a file (a megabyte at a time, written and hashed in a thread) before it is
stored, because S3 promises that a PUT whose Content-MD5 or signed sha256 does not match keeps
nothing, and the subnet's store cannot be taken back once the gateway says "stored".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import (BadDigest, ContentSHA256Mismatch, EntityTooLarge, IncompleteBody, InvalidDigest, InvalidRange,
                     NotImplementedOp)

CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Spooled:
    path: Path
    size: int
    md5: str      # hex
    sha256: str   # hex


class _Hasher:
    """MD5 (the ETag) and sha256 (the signed payload) of what is written. The two digests run in two
    threads (hashlib releases the GIL on large buffers): on 2 cores that halves the spool's CPU time."""

    def __init__(self, f) -> None:
        self.f, self.md5, self.sha = f, hashlib.md5(), hashlib.sha256()

    growing: Optional[Growing] = None

    def write(self, data: bytes) -> None:
        import threading

        t = threading.Thread(target=self.sha.update, args=(data,))
        t.start()
        self.md5.update(data)
        self.f.write(data)
        if self.growing is not None:
            self.f.flush()
            self.growing.wrote(len(data))
        t.join()


class Growing:
    """A file being spooled, read while it is written (blocking: the store's producer thread reads it):
    a read waits for the writer, and fails when the spool failed, so a store never sees a byte that
    was not received."""

    def __init__(self, path: Path) -> None:
        import threading

        self.path = path
        self._cond = threading.Condition()
        self._written = 0
        self._done = False
        self._failed = False
        self._f = None
        self._pos = 0

    def wrote(self, n: int) -> None:
        with self._cond:
            self._written += n
            self._cond.notify_all()

    def finish(self, failed: bool = False) -> None:
        with self._cond:
            self._done, self._failed = True, failed
            self._cond.notify_all()

    def read(self, n: int) -> bytes:
        with self._cond:
            while self._written - self._pos < n and not self._done:
                self._cond.wait(5.0)
            if self._failed:
                raise OSError("the S3 request's body did not arrive whole")
        if self._f is None:
            self._f = open(self.path, "rb")
        data = self._f.read(min(n, self._written - self._pos))
        self._pos += len(data)
        return data

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def _content_md5(header: Optional[str]) -> Optional[str]:
    if header is None:
        return None
    try:
        raw = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise InvalidDigest()
    return raw.hex()


async def spool(request, directory: Path, limit: int, signed_sha256: Optional[str],
                path: Optional[Path] = None, growing: Optional[Growing] = None) -> Spooled:
    """The body into a new file under ``directory`` (or ``path``), checked against Content-Length,
    Content-MD5 and the signed sha256; the file is removed when any check fails. ``growing`` is told
    of every byte written, and of the end (failed or not)."""
    if request.headers.get("Content-Encoding", "").startswith("aws-chunked") or \
            request.headers.get("X-Amz-Content-SHA256", "").startswith("STREAMING-"):
        raise NotImplementedOp("aws-chunked bodies are not accepted: send plain bodies (the default over http)")
    declared = request.content_length
    if declared is not None and declared > limit:
        raise EntityTooLarge(f"this server stores objects of up to {limit} bytes in one request; use a "
                             f"multipart upload")
    want_md5 = _content_md5(request.headers.get("Content-MD5"))
    path = path or directory / f"body-{secrets.token_hex(8)}"
    f = open(path, "wb")
    hasher = _Hasher(f)
    hasher.growing = growing
    size = 0
    writing: Optional[asyncio.Future] = None  # the previous megabyte is hashed and written while this one arrives
    try:
        pending = bytearray()
        async for data in request.content.iter_chunked(CHUNK):
            size += len(data)
            if size > limit:
                raise EntityTooLarge(f"the body is larger than {limit} bytes")
            pending += data
            if len(pending) >= CHUNK:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(hasher.write, bytes(pending)))
                pending.clear()
        if writing is not None:
            await writing
            writing = None
        if pending:
            await asyncio.to_thread(hasher.write, bytes(pending))
        await asyncio.to_thread(f.close)
        if declared is not None and size != declared:
            raise IncompleteBody()
        if want_md5 is not None and want_md5 != hasher.md5.hexdigest():
            raise BadDigest()
        if signed_sha256 is not None and signed_sha256 != hasher.sha.hexdigest():
            raise ContentSHA256Mismatch()
    except BaseException:
        if writing is not None:
            await asyncio.gather(writing, return_exceptions=True)
        if growing is not None:
            growing.finish(failed=True)
        f.close()
        path.unlink(missing_ok=True)
        raise
    if growing is not None:
        growing.finish()
    return Spooled(path=path, size=size, md5=hasher.md5.hexdigest(), sha256=hasher.sha.hexdigest())


def concatenate(parts: list[Path], out: Path) -> None:
    """Multipart parts into one file (blocking: run in a thread), with the kernel's copy."""
    with open(out, "wb") as dst:
        for p in parts:
            with open(p, "rb") as src:
                left = os.fstat(src.fileno()).st_size
                while left:
                    n = os.copy_file_range(src.fileno(), dst.fileno(), min(left, 1 << 30))
                    if n == 0:
                        break
                    left -= n


def parse_range(header: Optional[str], size: int) -> Optional[tuple[int, int]]:
    """``Range: bytes=a-b`` -> (first, last) inclusive, or None for the whole object. A range S3 would
    ignore (several ranges, other units) is ignored; one it cannot satisfy raises InvalidRange."""
    if not header:
        return None
    found = _RANGE.match(header.strip())
    if not found or found.groups() == ("", ""):
        return None
    a, b = found.groups()
    if a == "":
        n = int(b)
        if n == 0 or size == 0:
            raise InvalidRange()
        return max(0, size - n), size - 1
    first = int(a)
    last = size - 1 if b == "" else min(int(b), size - 1)
    if b != "" and int(b) < first:
        return None
    if first >= size:
        raise InvalidRange()
    return first, last
