"""A miner's plot listing in its one canonical form, and the digest that names it.

A listing is what a window's sample is drawn from, so both sides must agree on it
byte for byte: entries of ``k (1 byte) | seed (32 bytes)``, seeds strictly ascending
(which also means no seed twice). The digest names the listing in challenges and
answers. A listing in any other form is refused whole, not repaired: an honest miner
never sends one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import ProtocolError
from .plots import SEED_BYTES, estimated_plot_bytes

LISTING_DOMAIN = b"tensorage/listing/v2"
ENTRY_BYTES = 1 + SEED_BYTES


class ListingError(ProtocolError):
    """A listing that is not in canonical form, or larger than the network allows."""


def listing_digest(blob: bytes) -> bytes:
    return hashlib.sha256(LISTING_DOMAIN + blob).digest()


@dataclass(frozen=True)
class Listing:
    """Canonical entries as one bytes object: 33 bytes a plot, cheap to keep for thousands of plots."""

    blob: bytes
    digest: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", listing_digest(self.blob))

    @classmethod
    def from_plots(cls, plots: Iterable[tuple[bytes, int]]) -> "Listing":
        """From (seed, k) pairs in any order; a seed listed twice keeps its first k."""
        by_seed: dict[bytes, int] = {}
        for seed, k in plots:
            if len(seed) != SEED_BYTES or not 0 < k < 256:
                raise ListingError(f"plot entry seed={seed.hex()[:16]} k={k} cannot be listed")
            by_seed.setdefault(seed, k)
        return cls(b"".join(bytes([by_seed[s]]) + s for s in sorted(by_seed)))

    @classmethod
    def parse(cls, blob: bytes, max_plots: int) -> "Listing":
        """Check canonical form; raises ListingError with what is wrong."""
        if len(blob) % ENTRY_BYTES:
            raise ListingError(f"listing is {len(blob)} bytes, not a whole number of {ENTRY_BYTES}-byte entries")
        n = len(blob) // ENTRY_BYTES
        if n > max_plots:
            raise ListingError(f"listing has {n} plots, more than the {max_plots} this network allows under one "
                               f"hotkey: list fewer (or use another hotkey)")
        previous = b""
        for i in range(n):
            seed = blob[i * ENTRY_BYTES + 1:(i + 1) * ENTRY_BYTES]
            if seed <= previous:
                what = "listed twice" if seed == previous else "out of order"
                raise ListingError(f"plot {seed.hex()[:16]}… is {what}: a listing holds each seed once, ascending")
            if blob[i * ENTRY_BYTES] == 0:
                raise ListingError(f"plot {seed.hex()[:16]}… has k=0")
            previous = seed
        return cls(blob)

    @classmethod
    def from_b64(cls, text: str, max_plots: int) -> "Listing":
        max_chars = 4 * -(-(max_plots + 2000) * ENTRY_BYTES // 3)
        if len(text) > max_chars:
            raise ListingError(f"listing text is {len(text)} characters, more than {max_plots} plots need")
        try:
            blob = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ListingError(f"listing is not base64 ({exc})") from None
        return cls.parse(blob, max_plots)

    def to_b64(self) -> str:
        return base64.b64encode(self.blob).decode()

    def __len__(self) -> int:
        return len(self.blob) // ENTRY_BYTES

    def entry(self, i: int) -> tuple[bytes, int]:
        """(seed, k) of the i-th plot."""
        off = i * ENTRY_BYTES
        return self.blob[off + 1:off + ENTRY_BYTES], self.blob[off]

    def entries(self) -> Iterable[tuple[bytes, int]]:
        return (self.entry(i) for i in range(len(self)))

    def k_counts(self) -> Counter:
        return Counter(self.blob[0::ENTRY_BYTES])

    def credited_bytes(self, min_k: int, max_k: int) -> int:
        """Bytes this listing claims in plots the network counts (k within its range)."""
        return sum(estimated_plot_bytes(k) * n for k, n in self.k_counts().items() if min_k <= k <= max_k)

    def out_of_range(self, min_k: int, max_k: int) -> str:
        """Why some entries cannot count, for the operator ('' when all can)."""
        counts = self.k_counts()
        small = sum(n for k, n in counts.items() if k < min_k)
        large = sum(n for k, n in counts.items() if k > max_k)
        return ", ".join(f"{n} {what}" for n, what in ((small, f"below k={min_k}"), (large, f"above k={max_k}")) if n)

    @property
    def hex(self) -> str:
        return self.digest.hex()


EMPTY = Listing(b"")


def max_listing_chars(max_plots: int) -> int:
    """What a validator reads of a listing at most: base64 of the entries plus 64 KiB for the
    envelope (so a listing just over the plot limit is refused with the limit, not its size)."""
    return 4 * -(-max_plots * ENTRY_BYTES // 3) + (64 << 10)
