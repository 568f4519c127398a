"""The client's byte pipelines, synchronous and bounded (callers run them in a thread):

* :class:`StoreSource`: file -> sealed segments -> coded stripes, a batch at a time;
* :class:`Restorer`: coded stripes -> ciphertext -> authenticated plaintext -> a temp file
  beside the output, renamed onto it only after the last tag and the content hash check out.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from ..net.objects import DEFAULT_BLOCK, ObjectLayout, choose_block
from ..storage.files import fsync_dir
from .erasure import StripeDecoder, StripeEncoder
from .errors import ClientError, IntegrityError, OutputError
from .sealing import SEGMENT, Opened, Opener, Sealer, sealed_size

BATCH_BYTES = 1 << 20  # ciphertext per batch of stripes (a batch is ~n/k of this on the wire)


def _open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading. O_NONBLOCK, because opening a FIFO blocks until a writer
    comes (`tensorage store fifo` hung); the type is checked on the open descriptor, not the name."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except IsADirectoryError:
        fd = -1
    except OSError as exc:
        raise ClientError(f"cannot read {path} ({exc.strerror or exc})") from None
    if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
        if fd >= 0:
            os.close(fd)
        raise ClientError(f"{path} is not a regular file: store files, not directories, pipes or devices")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class StoreSource:
    """Seal and code one file. ``batches()`` yields the upload body in whole stripes."""

    def __init__(self, path: Path, master: bytes, k: int, n: int, max_block: int = DEFAULT_BLOCK,
                 salt: Optional[bytes] = None, reader: Optional[BinaryIO] = None, size: Optional[int] = None) -> None:
        """``reader`` and ``size``: bytes that are still arriving (the S3 server stores a body while it is
        received), read through ``reader``, exactly ``size`` of them."""
        self.path = Path(path)
        if reader is not None and size is not None:
            self._file, self.plain_size = reader, size
        else:
            self._file = _open_regular(self.path)
            self.plain_size = os.fstat(self._file.fileno()).st_size
        self._sealer = Sealer(master, salt=salt)
        size = sealed_size(self.plain_size)
        self.layout = ObjectLayout(size=size, k=k, n=n, block=choose_block(size, k, max_block))
        self._encoder = StripeEncoder(k, n, self.layout.block)
        self.sent = 0  # plaintext bytes read so far

    def batches(self) -> Iterator[bytes]:
        stripe = self.layout.stripe_data
        per_batch = max(stripe, (BATCH_BYTES // stripe) * stripe)
        buf = bytearray(self._sealer.header)
        emitted = 0
        try:
            while True:
                chunk = self._file.read(SEGMENT)
                if not chunk:
                    break
                self.sent += len(chunk)
                if self.sent > self.plain_size:
                    raise ClientError(f"{self.path} grew while it was being stored: store it again when it "
                                      f"is not being written")
                buf += self._sealer.seal(chunk)
                if len(buf) >= per_batch:
                    take = (len(buf) // stripe) * stripe
                    out = self._encoder.encode(memoryview(buf)[:take])
                    del buf[:take]
                    emitted += take
                    yield out
            if self.sent != self.plain_size:
                raise ClientError(f"{self.path} shrank while it was being stored: store it again when it is not "
                                  f"being written")
            buf += self._sealer.finish()
            emitted += len(buf)
            if emitted != self.layout.size:
                raise ClientError(f"sealed {emitted} bytes where {self.layout.size} were declared: report this bug")
            pad = (-len(buf)) % stripe
            buf += bytes(pad)
            yield self._encoder.encode(buf)
        finally:
            self._file.close()

    @property
    def sha256(self) -> str:
        return self._sealer.sha256

    @property
    def header(self) -> bytes:
        """The sealed object's clear header: kept by a client that reads ranges later."""
        return self._sealer.header

    def close(self) -> None:
        self._file.close()


class Decrypter:
    """Coded stripes -> authenticated plaintext, a batch at a time (no file: the S3 server streams it
    to its client). Every byte returned passed its segment's tag; :meth:`finish` checks the trailer."""

    def __init__(self, master: bytes, layout: ObjectLayout) -> None:
        self.layout = layout
        self._opener = Opener(master, layout.size)
        self._decoder = StripeDecoder(layout.k, layout.n)
        self._fed = 0

    def consume(self, data: bytes | memoryview, indices: list[int], block: int) -> bytes:
        if block != self.layout.block:
            raise IntegrityError(f"the gateway sent blocks of {block} bytes for an object coded in "
                                 f"{self.layout.block}: it is misbehaving; try another gateway")
        ciphertext = self._decoder.decode(data, indices, block)
        keep = min(len(ciphertext), self.layout.size - self._fed)
        if keep < len(ciphertext) and any(ciphertext[keep:]):
            raise IntegrityError("the padding after the object is not zero: the stripes were damaged")
        self._fed += keep
        return self._opener.feed(memoryview(ciphertext)[:keep].tobytes() if keep < len(ciphertext) else ciphertext)

    def finish(self) -> Opened:
        return self._opener.finish()


class Restorer:
    """Decode and open an object into ``out`` atomically: a temp file in the same directory,
    fsync, rename. Until :meth:`commit` nothing exists under the output name; :meth:`abort`
    (or any failure) removes the temp file."""

    def __init__(self, master: bytes, layout: ObjectLayout, out: Path, overwrite: bool = False) -> None:
        self.layout = layout
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise OutputError(f"{self.out} already exists: choose another -o, or pass --force to replace it")
        if self.out.is_dir():
            raise OutputError(f"{self.out} is a directory: pass a file name with -o")
        parent = self.out.parent if str(self.out.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"{parent} does not exist: create it or choose another -o")
        # the temp name must stay a legal name when the output's is 255 bytes long
        self._tmp = parent / f".{self.out.name[:40]}.{secrets.token_hex(4)}.tensorage-part"
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise OutputError(f"cannot write in {parent} ({exc.strerror or exc}): choose another -o") from None
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._decrypter = Decrypter(master, layout)
        self.written = 0
        self._done = False

    def consume(self, data: bytes | memoryview, indices: list[int], block: int) -> int:
        """Whole stripes of k blocks; returns plaintext bytes written."""
        plain = self._decrypter.consume(data, indices, block)
        if plain:
            try:
                self._file.write(plain)
            except OSError as exc:
                raise OutputError(f"cannot write {self.out} ({exc.strerror or exc}): free some space or choose "
                                  f"another -o; nothing was written") from None
            self.written += len(plain)
        return len(plain)

    def commit(self) -> Opened:
        """Check the final segment and the content hash, then make the file appear under its name."""
        try:
            opened = self._decrypter.finish()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.out)
            fsync_dir(self.out.parent if str(self.out.parent) else Path("."))
        except BaseException:
            self.abort()
            raise
        self._done = True
        return opened

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)
