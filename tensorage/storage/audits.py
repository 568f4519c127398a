"""One-use shard audits: a random range of the wrapped shard, a fresh nonce, and
``blake2b(shard[offset:offset+length], key=nonce)``.

The gateway makes a few dozen when it holds the bytes (at placement, after a repair, or after
downloading the shard once more when they run out); each is spent once, so an answer cannot be
replayed or precomputed. Answering needs the wrapped bytes themselves: nobody but the miner
holding them has those (docs/design.md#client-data).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

NONCE_BYTES = 16
DIGEST_BYTES = 32
AUDIT_LENGTH = 16 << 10  # bytes per audit; a shard smaller than this is audited whole


@dataclass(frozen=True)
class Audit:
    offset: int
    length: int
    nonce: bytes
    digest: bytes


def audit_digest(data: bytes, nonce: bytes) -> bytes:
    return hashlib.blake2b(data, key=nonce, digest_size=DIGEST_BYTES).digest()


def make_audits(path: Path, size: int, count: int, length: int = AUDIT_LENGTH) -> list[Audit]:
    """``count`` audits over random ranges of the file (read with pread: no copy of the shard)."""
    length = max(1, min(length, size))
    audits = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(count):
            offset = secrets.randbelow(size - length + 1)
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise OSError(f"{path} is shorter than {size} bytes")
            nonce = secrets.token_bytes(NONCE_BYTES)
            audits.append(Audit(offset=offset, length=length, nonce=nonce, digest=audit_digest(data, nonce)))
    finally:
        os.close(fd)
    return audits


def answer_audit(fd: int, offset: int, length: int, nonce: bytes) -> bytes:
    """The miner's side: read the range and digest it; raises EOFError on a short read."""
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise EOFError(f"the shard has no bytes {offset}..{offset + length}")
    return audit_digest(data, nonce)
