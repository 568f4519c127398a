"""Client data on the wire: objects (client <-> validator gateway) and shards (gateway <-> miner).

An object is the client's ciphertext, erasure-coded by the client in *stripes*: ``k`` blocks
of ``block`` bytes each, coded into ``n`` blocks (zfec, systematic). The upload body is the
stripes in order, each stripe's ``n`` blocks concatenated. The gateway groups stripes into
*segments* (bounded shard size, like Storj's 64 MiB segments) and places block ``i`` of a
segment's stripes on one miner as shard ``i``. A shard's id on the miner is the Merkle id of
its (wrapped) bytes (proofs/merkle.py), so the miner, the gateway and every validator can
check what it holds, a chunk at a time.

Streamed bodies (``PUT /v1/objects/{id}``, ``PUT /v1/shards/{id}``) are signed over an empty
body; the signed path carries what binds them (object id and size; shard id = content hash
and size), and the receiver counts and hashes the bytes as they arrive.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Optional

from pydantic import Field, field_validator

from .messages import Message

# fullmatch, never ``match`` with ``$``: "$" also matches before a trailing newline, and an id from
# a URL path may end in one ("%0a")
OBJECT_ID = re.compile(r"[0-9a-f]{32}")
SHARD_ID = re.compile(r"[0-9a-f]{64}")
HEX16 = r"^[0-9a-f]{32}$"
HEX32 = r"^[0-9a-f]{64}$"

DEFAULT_K, DEFAULT_N = 4, 6  # any 4 of 6 shards rebuild a segment: 1.5x the bytes, 2 miners may fail
MAX_N = 32                    # shards per segment (zfec allows 256; a placement needs n distinct miners)
MAX_BLOCK = 1 << 20           # bytes per erasure block
MIN_BLOCK = 4 << 10           # ... and at least this, unless the whole object fits one smaller stripe: a gateway
                              # moves stripes block by block, so 1-byte blocks would cost it 1,000x the CPU
DEFAULT_BLOCK = 64 << 10      # the client's block for large objects
MAX_OBJECT_BYTES = 1 << 44    # 16 TiB: anything larger is a typo
MAX_META_CHARS = 1024         # the client's opaque (encrypted) metadata, base64url
MAX_CHECK_CHUNKS = 16         # chunks one re-check may ask for
MAX_CERTIFICATES = 2048       # certificates one renewal request may carry (~630 KB of JSON)
CERTIFICATE_HEADER = "X-Tensorage-Certificate"  # the gateway's certificate, sent with the shard it certifies


def is_object_id(value: str) -> bool:
    return bool(OBJECT_ID.fullmatch(value))


def is_shard_id(value: str) -> bool:
    return bool(SHARD_ID.fullmatch(value))


@dataclass(frozen=True)
class ObjectLayout:
    """Where the bytes of an object of ``size`` ciphertext bytes go, for given k, n and block."""

    size: int
    k: int
    n: int
    block: int

    @property
    def stripes(self) -> int:
        return max(1, math.ceil(self.size / (self.k * self.block)))

    @property
    def stripe_data(self) -> int:
        """Ciphertext bytes in one stripe (the last one is zero-padded)."""
        return self.k * self.block

    @property
    def stripe_wire(self) -> int:
        """Upload bytes of one stripe: its n coded blocks."""
        return self.n * self.block

    @property
    def body_bytes(self) -> int:
        return self.stripes * self.stripe_wire

    def stripes_per_segment(self, shard_target: int) -> int:
        return max(1, shard_target // self.block)

    def segments(self, per_segment: int) -> list[int]:
        """Stripes in each segment."""
        full, rest = divmod(self.stripes, per_segment)
        return [per_segment] * full + ([rest] if rest else [])


def choose_block(size: int, k: int, max_block: int = DEFAULT_BLOCK) -> int:
    """Small objects get small blocks (a 1-byte file is not padded to k x 64 KiB)."""
    return max(1, min(max_block, math.ceil(size / k)))


# --- JSON messages ------------------------------------------------------------------------


class ObjectDeclare(Message):
    """``POST /v1/objects``: what the client is about to upload; the gateway checks quota and
    room before a byte is sent."""

    size: int = Field(ge=1, le=MAX_OBJECT_BYTES)  # ciphertext bytes
    k: int = Field(ge=1, le=MAX_N)
    n: int = Field(ge=1, le=MAX_N)
    block: int = Field(ge=1, le=MAX_BLOCK)
    meta: str = Field(default="", max_length=MAX_META_CHARS, pattern=r"^[A-Za-z0-9_=-]*$")

    @field_validator("n")
    @classmethod
    def _n_at_least_k(cls, n: int, info) -> int:
        k = info.data.get("k")
        if k is not None and n < k:
            raise ValueError(f"n ({n}) must be at least k ({k})")
        return n

    @field_validator("block")
    @classmethod
    def _block_not_tiny(cls, block: int, info) -> int:
        size, k = info.data.get("size"), info.data.get("k")
        if size is not None and k is not None and block < min(MIN_BLOCK, math.ceil(size / k)):
            raise ValueError(f"blocks of {block} bytes are too small: use at least {MIN_BLOCK} (or one stripe for the "
                             f"whole object)")
        return block

    def layout(self) -> ObjectLayout:
        return ObjectLayout(self.size, self.k, self.n, self.block)


class ObjectDeclared(Message):
    id: str = Field(pattern=HEX16)
    body_bytes: int
    stripes: int
    upload_path: str   # sign and PUT the stripes here
    expires_at: float  # the declaration lapses (and its quota is released) if no upload starts


class ObjectEntry(Message):
    id: str
    size: int
    k: int
    n: int
    block: int
    state: str            # declared | storing | stored | damaged
    created_at: float
    stored_at: Optional[float] = None
    meta: str = ""
    segments: int = 0
    healthy: int = 0      # the fewest healthy shards of any segment (n when all are in place)


class ObjectList(Message):
    objects: list[ObjectEntry]
    used_bytes: int
    quota_bytes: int


class ObjectStored(Message):
    id: str
    size: int
    segments: int
    shards: int
    miners: int


class ObjectDeleted(Message):
    id: str
    deleted: bool = True


class GatewayInfo(Message):
    hotkey: str
    k: int
    n: int
    max_n: int
    miners: int             # miners this gateway can place shards on now
    shard_bytes: int        # target shard size per segment
    max_block: int = MAX_BLOCK


class ShardStored(Message):
    id: str
    size: int
    free_bytes: int  # room left for this gateway's shards on this miner (its plots give way to shards)


class ShardDeleted(Message):
    id: str
    deleted: bool = True
    free_bytes: int = 0  # room left for this gateway's shards now


class ShardSummary(Message):
    """``GET /v1/shards``: what the caller has placed here and the room it has left."""

    shards: int
    bytes: int
    free_bytes: int


class CertificateBatch(Message):
    """``POST /v1/certificates``: renewed certificates (hex) of shards the caller placed here."""

    certificates: list[str] = Field(min_length=1, max_length=MAX_CERTIFICATES)


class CertificatesTaken(Message):
    taken: int
    unknown: list[str] = Field(default_factory=list)  # shards this miner does not hold for the caller


class ShardCheck(Message):
    """``POST /v1/shards/{id}/check``: the placing gateway re-checks a suspect shard: chunks with
    their paths, and (``leaves``) every chunk's leaf hash, so a download that came back wrong can be
    pinned to the chunks that differ."""

    chunks: list[int] = Field(default_factory=list, max_length=MAX_CHECK_CHUNKS)
    leaves: bool = False


class ShardChecked(Message):
    """The miner's signed reply (``net/replies.py``): whether it holds the shard for the caller,
    each asked chunk with its Merkle path in base64 ("" for one it cannot produce), and the leaf
    hashes in base64 when asked ("" when it cannot produce them)."""

    held: bool
    chunks: list[str] = Field(default_factory=list, max_length=MAX_CHECK_CHUNKS)
    leaves: str = ""


# --- the retrieval stream -------------------------------------------------------------------
# GET /v1/objects/{id} answers with the object's parameters in the X-Tensorage-Object header
# (ObjectEntry JSON) and a body of frames:
#   SEG1 | u32 segment | u32 stripes | u32 block | u8 k | k x u8 shard indices,
#        then stripes x k blocks (stripe by stripe, blocks in the order of the indices)
#   ERR1 | u32 length | UTF-8 message   (the gateway could not finish; nothing after it)
#   END1                                 (every segment was sent)

OBJECT_HEADER = "X-Tensorage-Object"
FIRST_STRIPE_HEADER = "X-Tensorage-First-Stripe"  # a ranged retrieval (?stripes=a-b) starts at this stripe: the
                                                  # first of the gateway segment holding stripe a
FRAME_SEGMENT = b"SEG1"
FRAME_ERROR = b"ERR1"
FRAME_END = b"END1"
_SEGMENT = struct.Struct(">IIIB")
_LENGTH = struct.Struct(">I")
MAX_ERROR_FRAME = 4096


def segment_frame(segment: int, stripes: int, block: int, indices: list[int]) -> bytes:
    return FRAME_SEGMENT + _SEGMENT.pack(segment, stripes, block, len(indices)) + bytes(indices)


def error_frame(message: str) -> bytes:
    data = message.encode()[:MAX_ERROR_FRAME]
    return FRAME_ERROR + _LENGTH.pack(len(data)) + data


SEGMENT_HEADER_BYTES = _SEGMENT.size


def parse_segment_header(data: bytes) -> tuple[int, int, int, int]:
    """(segment, stripes, block, k) from the bytes after FRAME_SEGMENT."""
    return _SEGMENT.unpack(data)


def parse_length(data: bytes) -> int:
    return _LENGTH.unpack(data)[0]
