"""Erasure coding in stripes with zfec: k blocks of ciphertext -> n blocks, any k rebuild them.

Work is done a batch of stripes at a time, so memory is bounded by the batch whatever the
object size. zfec is systematic (blocks 0..k-1 are the data itself) and releases the GIL, so
callers run these in threads.
"""

from __future__ import annotations

import zfec


class StripeEncoder:
    def __init__(self, k: int, n: int, block: int) -> None:
        self.k, self.n, self.block = k, n, block
        self._encoder = zfec.Encoder(k, n)

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        """Whole stripes of ciphertext (a multiple of k x block) -> their n blocks each, stripe by stripe."""
        stripe = self.k * self.block
        if len(data) % stripe:
            raise ValueError(f"encode() takes whole stripes of {stripe} bytes, got {len(data)}")
        mv = memoryview(data)
        out: list = []
        for off in range(0, len(data), stripe):
            out.extend(self._encoder.encode([mv[off + i * self.block: off + (i + 1) * self.block]
                                             for i in range(self.k)]))
        return b"".join(out)

    def encode_some(self, primary: list, wanted: list[int]) -> list[bytes]:
        """Only the coded blocks ``wanted`` of one stripe (repair)."""
        return [bytes(b) for b in self._encoder.encode(primary, wanted)]


class StripeDecoder:
    def __init__(self, k: int, n: int) -> None:
        self.k, self.n = k, n
        self._decoder = zfec.Decoder(k, n)

    def decode(self, data: bytes | memoryview, indices: list[int], block: int) -> bytes:
        """Stripes of k blocks (in the order of ``indices``) -> the stripes' ciphertext."""
        if len(indices) != self.k or len(set(indices)) != self.k or not all(0 <= i < self.n for i in indices):
            raise ValueError(f"need {self.k} distinct shard indices below {self.n}, got {indices}")
        stripe = self.k * block
        if len(data) % stripe:
            raise ValueError(f"decode() takes whole stripes of {stripe} bytes, got {len(data)}")
        mv = memoryview(data)
        if list(indices) == list(range(self.k)):
            return bytes(mv)  # the data blocks themselves, in order
        out: list = []
        for off in range(0, len(data), stripe):
            blocks = [mv[off + j * block: off + (j + 1) * block] for j in range(self.k)]
            out.extend(self._decoder.decode(blocks, list(indices)))
        return b"".join(out)

    def primary(self, blocks: list, indices: list[int]) -> list:
        """The k data blocks of one stripe from any k of its blocks."""
        if list(indices) == list(range(self.k)):
            return list(blocks)
        return list(self._decoder.decode(blocks, list(indices)))
