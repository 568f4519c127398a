"""Write a stream of bytes to a file while hashing it, off the event loop.

Chunks from the network are gathered into ~1 MiB batches; each batch is (optionally)
transformed, hashed and written in a worker thread (blake3 and cryptography release the GIL),
so the event loop only moves buffers. The hash is a shard's Merkle tree
(:class:`~tensorage.proofs.merkle.MerkleBuilder`, whose id is the shard's name) unless another
hasher is given, of the input (``hash_input=True``: what a peer sent, e.g. a wrapped shard being
unwrapped) or of what is written.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable, Optional

from ..proofs.merkle import MerkleBuilder

FLUSH_BYTES = 1 << 20


class HashingFile:
    def __init__(self, path: Path, transform: Optional[Callable[[bytes], bytes]] = None,
                 hash_input: bool = False, flush_bytes: int = FLUSH_BYTES, exclusive: bool = True,
                 hasher=None) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
        self._fd = os.open(self.path, flags, 0o600)
        self._transform = transform
        self._hash_input = hash_input
        self._hash = hasher if hasher is not None else MerkleBuilder()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_bytes = flush_bytes
        self.size = 0  # bytes received

    def _write(self, data: bytes) -> None:
        out = self._transform(data) if self._transform else data
        self._hash.update(data if self._hash_input else out)
        view = memoryview(out)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def write_sync(self, data: bytes) -> None:
        """For callers already in a worker thread."""
        self.size += len(data)
        self._write(data)

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= self._flush_bytes:
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_bytes = [], 0
        await asyncio.to_thread(self._write, data)

    @property
    def hasher(self):
        """The hasher, for what it knows beyond the digest (a shard's tree)."""
        return self._hash

    async def finish(self, sync: bool = True) -> str:
        """Flush, fsync (``sync``) and close; returns the hex digest (a shard's id)."""
        await self.flush()
        if sync:
            await asyncio.to_thread(os.fsync, self._fd)
        self.close()
        return self._hash.hexdigest()

    def finish_sync(self, sync: bool = False) -> str:
        if sync:
            os.fsync(self._fd)
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
