"""Streaming AEAD in segments (the STREAM construction age uses), AES-256-GCM from ``cryptography``.

Sealed object = header | data segments | trailer segment.

* header (44 bytes, clear, authenticated as the AAD of every segment): magic ``TSGO``, version,
  algorithm, segment size, a random 16-byte salt, and a 16-byte key check.
* object key and key check = HKDF-SHA256(client key, salt, "tensorage/object/v1"), so every
  object has its own key and a wrong key file is named as such before anything is decrypted.
* segment ``i`` (``segment`` plaintext bytes, the last data segment shorter) is sealed under the
  12-byte nonce ``i`` (11 bytes, big-endian) | final flag (1 byte). Swapping segments changes
  their index, cutting the object loses the only segment sealed with the final flag, and
  extending it adds segments after it: each fails its tag.
* the trailer is the final segment (flag 1): plaintext size and sha256 of the plaintext, the
  content hash checked after the last byte is decrypted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
import struct
from dataclasses import dataclass
from typing import Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import IntegrityError, WrongKey

MAGIC = b"TSGO"
VERSION = 1
ALG_AES256_GCM = 1
SEGMENT = 64 << 10
MAX_SEGMENT = 1 << 20  # the largest segment size a client opens: the header is clear text, so a gateway could
                       # otherwise name a segment as large as the object and have it buffered before any tag
TAG = 16
HEADER = struct.Struct(">4sBBHI16s16s")
TRAILER = struct.Struct(">Q32s")
FINAL_SEGMENT = TRAILER.size + TAG
_OBJECT_INFO = b"tensorage/object/v1"
_META_INFO = b"tensorage/meta/v1"


def _derive(master: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(master)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def sealed_size(plain_size: int, segment: int = SEGMENT) -> int:
    """Ciphertext bytes of a plaintext of ``plain_size`` bytes."""
    return HEADER.size + plain_size + math.ceil(plain_size / segment) * TAG + FINAL_SEGMENT


@dataclass(frozen=True)
class Opened:
    size: int
    sha256: str


class Sealer:
    """Seal a plaintext stream segment by segment; ``salt`` is injectable for tests only."""

    def __init__(self, master: bytes, segment: int = SEGMENT, salt: Optional[bytes] = None) -> None:
        self.segment = segment
        self.salt = salt if salt is not None else secrets.token_bytes(16)
        material = _derive(master, self.salt, _OBJECT_INFO, 48)
        self._aead = AESGCM(material[:32])
        self.header = HEADER.pack(MAGIC, VERSION, ALG_AES256_GCM, 0, segment, self.salt, material[32:])
        self._index = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    def seal(self, plaintext: bytes) -> bytes:
        """One data segment: ``segment`` bytes, except the last data segment (1..segment bytes)."""
        if self._done or not plaintext or len(plaintext) > self.segment:
            raise ValueError("seal() takes 1..segment bytes, before finish()")
        self._hash.update(plaintext)
        self._size += len(plaintext)
        out = self._aead.encrypt(_nonce(self._index, False), plaintext, self.header)
        self._index += 1
        return out

    def finish(self) -> bytes:
        """The trailer segment, sealed with the final flag."""
        self._done = True
        trailer = TRAILER.pack(self._size, self._hash.digest())
        return self._aead.encrypt(_nonce(self._index, True), trailer, self.header)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class Opener:
    """Open a sealed stream of known total size, fed in chunks of any size.

    Every tag is checked before its plaintext is returned; ``finish`` checks the trailer's size
    and content hash. Raises WrongKey or IntegrityError, never returns unauthenticated bytes.
    """

    def __init__(self, master: bytes, total: int) -> None:
        self._master = master
        self.total = total
        self._buf = bytearray()
        self._consumed = 0
        self._aead: Optional[AESGCM] = None
        self.header = b""
        self._index = 0
        self._segments = 0
        self._last_len = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._result: Optional[Opened] = None

    def _open_header(self, header: bytes) -> None:
        magic, version, alg, _, segment, salt, check = HEADER.unpack(header)
        if magic != MAGIC:
            raise IntegrityError("the object does not start with a tensorage header: it is not a tensorage "
                                 "object or it was damaged")
        if version != VERSION or alg != ALG_AES256_GCM:
            raise IntegrityError(f"object format v{version}/alg {alg} is not supported by this client: upgrade "
                                 f"tensorage (pip install -U tensorage)")
        if not 1 <= segment <= MAX_SEGMENT:
            raise IntegrityError(f"the object's header names a segment size of {segment} bytes (this client opens "
                                 f"1..{MAX_SEGMENT}): it was damaged or tampered with; nothing was written")
        material = _derive(self._master, salt, _OBJECT_INFO, 48)
        if not secrets.compare_digest(material[32:], check):
            raise WrongKey("this object was encrypted with another key file: pass the key file it was stored "
                           "with (--key_file), or the wallet it was stored from (--wallet.name)")
        data = self.total - HEADER.size - FINAL_SEGMENT
        if data < 0:
            raise IntegrityError(f"the object is {self.total} bytes, too short to be sealed: it was damaged")
        self._segments = math.ceil(data / (segment + TAG))
        self._last_len = data - (self._segments - 1) * (segment + TAG) if self._segments else 0
        if self._segments and self._last_len <= TAG:
            raise IntegrityError("the object's length does not match its segments: it was cut or extended")
        self._aead = AESGCM(material[:32])
        self.header = header
        self._segment = segment

    def _next_len(self) -> int:
        if self._index < self._segments - 1:
            return self._segment + TAG
        if self._index == self._segments - 1:
            return self._last_len
        return FINAL_SEGMENT

    def feed(self, data: bytes) -> bytes:
        """Authenticated plaintext for every segment completed by ``data``."""
        if self._consumed + len(self._buf) + len(data) > self.total:
            raise IntegrityError("more bytes than the object's size arrived: the stream was extended")
        self._buf += data
        out = []
        if self._aead is None:
            if len(self._buf) < HEADER.size:
                return b""
            self._open_header(bytes(self._buf[:HEADER.size]))
            del self._buf[:HEADER.size]
            self._consumed += HEADER.size
        while self._result is None:
            need = self._next_len()
            if len(self._buf) < need:
                break
            chunk = bytes(self._buf[:need])
            del self._buf[:need]
            self._consumed += need
            out.append(self._open_segment(chunk))
        return b"".join(out)

    def _open_segment(self, chunk: bytes) -> bytes:
        assert self._aead is not None
        final = self._index == self._segments
        try:
            plain = self._aead.decrypt(_nonce(self._index, final), chunk, self.header)
        except InvalidTag:
            raise IntegrityError(f"segment {self._index} fails its authentication tag: the data was damaged or "
                                 f"tampered with; nothing of it was written") from None
        self._index += 1
        if not final:
            self._hash.update(plain)
            self._size += len(plain)
            return plain
        size, digest = TRAILER.unpack(plain)
        if size != self._size or digest != self._hash.digest():
            raise IntegrityError("the content hash does not match the decrypted bytes: refusing the object")
        self._result = Opened(size=size, sha256=digest.hex())
        return b""

    def finish(self) -> Opened:
        if self._result is None or self._buf:
            raise IntegrityError(f"the object ended after {self._consumed + len(self._buf)} of {self.total} bytes "
                                 f"without its final segment: it was cut short")
        return self._result


class SegmentOpener:
    """Open chosen data segments of a sealed object (a ranged read) given its 44-byte header and
    ciphertext size: only the segments that cover the range are fetched and decrypted. Each one's
    tag binds its index and the header, so a segment moved, swapped or taken from another object
    fails; the content hash is not checked (it covers the whole object)."""

    def __init__(self, master: bytes, header: bytes, total: int) -> None:
        self._opener = Opener(master, total)
        self._opener._open_header(header)
        self.segment = self._opener._segment
        self.segments = self._opener._segments
        self.plain_size = max(0, total - HEADER.size - FINAL_SEGMENT - self.segments * TAG)

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Data segments holding plaintext bytes ``first..last``."""
        return first // self.segment, last // self.segment

    def offset(self, index: int) -> int:
        """Where data segment ``index`` starts in the ciphertext."""
        return HEADER.size + index * (self.segment + TAG)

    def length(self, index: int) -> int:
        return self.segment + TAG if index < self.segments - 1 else self._opener._last_len

    def open(self, index: int, chunk: bytes) -> bytes:
        if not 0 <= index < self.segments or len(chunk) != self.length(index):
            raise IntegrityError(f"segment {index} has the wrong length: the data was damaged or tampered with")
        try:
            assert self._opener._aead is not None
            return self._opener._aead.decrypt(_nonce(index, False), chunk, self._opener.header)
        except InvalidTag:
            raise IntegrityError(f"segment {index} fails its authentication tag: the data was damaged or "
                                 f"tampered with") from None


def seal_meta(master: bytes, meta: dict) -> str:
    """Metadata only the client can read (file name, size), stored by the gateway as opaque text."""
    salt = secrets.token_bytes(16)
    key = _derive(master, salt, _META_INFO, 32)
    blob = AESGCM(key).encrypt(bytes(12), json.dumps(meta, separators=(",", ":")).encode(), _META_INFO)
    return base64.urlsafe_b64encode(salt + blob).decode()


def open_meta(master: bytes, text: str) -> Optional[dict]:
    """The metadata, or None when it was sealed under another key (or is damaged)."""
    try:
        raw = base64.urlsafe_b64decode(text.encode())
        key = _derive(master, raw[:16], _META_INFO, 32)
        return json.loads(AESGCM(key).decrypt(bytes(12), raw[16:], _META_INFO))
    except (ValueError, InvalidTag, TypeError):
        return None
