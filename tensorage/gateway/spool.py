"""The gateway's working files: one segment's shards at a time, on disk, never whole objects.

A shard's id is the Merkle id of its wrapped bytes, known only once the last block of its
segment has arrived, and a download is checked against that id before any of it is used; so each
segment's shards pass through files under ``<db_root>/spool`` (page cache, in practice),
bounded by the segment size, and are removed as soon as they are placed or served.
Functions named ``*_sync`` run in worker threads (AES-CTR, blake3 and zfec release the GIL).
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..client.erasure import StripeDecoder, StripeEncoder
from ..storage.streams import HashingFile
from ..storage.wrap import keystream, new_wrap_id


class SpoolError(Exception):
    """The gateway's own disk failed (not a peer's fault)."""


@dataclass
class ShardFile:
    """A wrapped shard ready to place: its erasure index, wrap id, file, Merkle id and size."""

    idx: int
    wrap: str
    path: Path
    hash: str = ""
    size: int = 0


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        shutil.rmtree(self.root, ignore_errors=True)  # nothing in here outlives the process that made it
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, tag: str) -> Path:
        return self.root / f"{tag}-{secrets.token_hex(6)}"

    def writers(self, tag: str, indices: list[int], secret: bytes) -> list[tuple[ShardFile, HashingFile]]:
        """New wrapped shards for these erasure indices, each under a fresh wrap id."""
        out = []
        for idx in indices:
            wrap = new_wrap_id()
            shard = ShardFile(idx=idx, wrap=wrap, path=self.path(f"{tag}-{idx}"))
            out.append((shard, HashingFile(shard.path, transform=keystream(secret, wrap))))
        return out

    @staticmethod
    def remove(paths) -> None:
        for p in paths:
            Path(p).unlink(missing_ok=True)


def demux_sync(data: bytes, writers: list[HashingFile], n: int, block: int) -> None:
    """Whole stripes of n blocks -> block i of each stripe appended (wrapped) to shard i."""
    mv = memoryview(data)
    stride = n * block
    for i, w in enumerate(writers):
        w.write_sync(b"".join(mv[off + i * block: off + (i + 1) * block] for off in range(0, len(data), stride)))


def finish_sync(writers: list[tuple[ShardFile, HashingFile]]) -> list[ShardFile]:
    out = []
    for shard, f in writers:
        shard.size = f.size
        shard.hash = f.finish_sync()
        out.append(shard)
    return out


def _columns(paths: list[Path], first_stripe: int, stripes: int, block: int) -> list[memoryview]:
    """Stripes ``first_stripe..`` of each spooled shard file (one read each)."""
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    try:
        columns = [os.pread(fd, stripes * block, first_stripe * block) for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)
    if any(len(c) != stripes * block for c in columns):
        raise SpoolError("a spooled shard is shorter than its segment")
    return [memoryview(c) for c in columns]


def interleave_sync(paths: list[Path], first_stripe: int, stripes: int, block: int) -> bytes:
    """Stripes ``first_stripe..`` of k shard files -> stripe by stripe, k blocks each."""
    views = _columns(paths, first_stripe, stripes, block)
    return b"".join(v[j * block:(j + 1) * block] for j in range(stripes) for v in views)


def rebuild_sync(paths: list[Path], indices: list[int], first_stripe: int, stripes: int, block: int,
                 decoder: StripeDecoder, encoder: StripeEncoder, writers: list[tuple[ShardFile, HashingFile]]) -> None:
    """Repair: from k unwrapped shards, the missing shards' blocks of these stripes (wrapped on write)."""
    views = _columns(paths, first_stripe, stripes, block)
    wanted = [s.idx for s, _ in writers]
    out: list[list[bytes]] = [[] for _ in wanted]
    for j in range(stripes):
        primary = decoder.primary([v[j * block:(j + 1) * block] for v in views], indices)
        for slot, coded in enumerate(encoder.encode_some(primary, wanted)):
            out[slot].append(coded)
    for (_, f), blocks in zip(writers, out):
        f.write_sync(b"".join(blocks))
