"""A miner's listing in its one canonical form, and the digest that names it (protocol 3).

A listing is what a window's sample is drawn from, so both sides must agree on it byte for
byte. It has two parts:

* plots: entries of ``k (1 byte) | seed (32 bytes)``, seeds strictly ascending;
* certificates of the client shards it holds (:mod:`tensorage.proofs.certificates`, 152 bytes
  each), shard ids strictly ascending, from at most ``MAX_GATEWAYS`` gateways.

The digest ``sha256(domain | plot count | plots | certificates)`` names the listing in
challenges and answers. A listing in any other form is refused whole, not repaired: an honest
miner never sends one. Signatures are checked where listings are checked (the verify pool):
a forged certificate refuses the listing too, since an honest miner checks every certificate
it is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from ..errors import ProtocolError
from .certificates import ENTRY_BYTES as CERT_BYTES
from .certificates import Certificate, CertificateError
from .plots import SEED_BYTES, estimated_plot_bytes

LISTING_DOMAIN = b"tensorage/listing/v3"
ENTRY_BYTES = 1 + SEED_BYTES
T = TypeVar("T")

# Gateways whose certificates one listing may carry: every validator with a permit can be one.
# A window samples chunks per gateway (proofs/windows.py), so this bounds an answer's size.
MAX_GATEWAYS = 64
_COUNT = struct.Struct(">I")


class ListingError(ProtocolError):
    """A listing that is not in canonical form, or larger than the network allows."""


class ListingReader:
    """What every listing offers whatever holds its bytes: entries read by index, never all of
    them turned into Python objects (a full listing is 65,536 plots and 16,384 certificates, and a
    validator follows 256 miners). :class:`Listing` holds its bytes in memory (the miner's own, tests);
    :class:`tensorage.proofs.listing_spool.SpooledListing` keeps them in a file (the validator's)."""

    digest: bytes

    def __len__(self) -> int:  # pragma: no cover - implemented by each holder
        raise NotImplementedError

    @property
    def cert_count(self) -> int:  # pragma: no cover
        raise NotImplementedError

    def _plot_bytes(self, offset: int, size: int) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def _cert_bytes(self, offset: int, size: int) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def _plot_chunks(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The plot entries in whole-entry chunks (counting k without holding them all)."""
        step = chunk - chunk % ENTRY_BYTES
        total = len(self) * ENTRY_BYTES
        for off in range(0, total, step):
            yield self._plot_bytes(off, min(step, total - off))

    @property
    def digest_hex(self) -> str:
        return self.digest.hex()

    def entry(self, i: int) -> tuple[bytes, int]:
        """(seed, k) of the i-th plot."""
        raw = self._plot_bytes(i * ENTRY_BYTES, ENTRY_BYTES)
        return raw[1:], raw[0]

    def entries_at(self, indices: Sequence[int]) -> list[tuple[bytes, int]]:
        """(seed, k) of each of these plots: what a window's sample reads."""
        return [self.entry(i) for i in indices]

    def entries(self) -> Iterable[tuple[bytes, int]]:
        return (self.entry(i) for i in range(len(self)))

    def certificate(self, i: int) -> Certificate:
        """The i-th certificate, parsed now (nothing is kept)."""
        return Certificate.from_entry(self._cert_bytes(i * CERT_BYTES, CERT_BYTES))

    def iter_certificates(self, chunk: int = 1024) -> Iterator[Certificate]:
        """Every certificate, parsed a chunk at a time and not kept."""
        n = self.cert_count
        for start in range(0, n, chunk):
            raw = self._cert_bytes(start * CERT_BYTES, min(chunk, n - start) * CERT_BYTES)
            for off in range(0, len(raw), CERT_BYTES):
                yield Certificate.from_entry(raw[off:off + CERT_BYTES])

    def certificates(self) -> Sequence[Certificate]:
        return tuple(self.iter_certificates())

    def derived(self, key: str, stamp: object, make: Callable[[], T]) -> T:
        """A value derived from this (immutable) listing, kept until asked for with another ``stamp``:
        one slot per key, so a listing followed across many windows keeps one copy, not one per window.
        :meth:`forget_derived` drops them (a listing no window plans from any more)."""
        slot = self.__dict__.get(f"_derived_{key}")
        if slot is None or slot[0] != stamp:
            slot = (stamp, make())
            object.__setattr__(self, f"_derived_{key}", slot)
        return slot[1]

    def forget_derived(self) -> None:
        for key in [k for k in self.__dict__ if k.startswith("_derived_")]:
            object.__delattr__(self, key)

    def k_counts(self) -> Counter:
        counts: Counter = Counter()
        for chunk in self._plot_chunks():
            counts.update(chunk[0::ENTRY_BYTES])
        return counts

    def credited_bytes(self, min_k: int, max_k: int) -> int:
        """Bytes this listing claims in plots the network counts (k within its range)."""
        return sum(estimated_plot_bytes(k) * n for k, n in self.k_counts().items() if min_k <= k <= max_k)

    def out_of_range(self, min_k: int, max_k: int) -> str:
        """Why some entries cannot count, for the operator ('' when all can)."""
        counts = self.k_counts()
        small = sum(n for k, n in counts.items() if k < min_k)
        large = sum(n for k, n in counts.items() if k > max_k)
        return ", ".join(f"{n} {what}" for n, what in ((small, f"below k={min_k}"), (large, f"above k={max_k}")) if n)


def listing_digest(plot_count: int, parts: Iterable[bytes]) -> bytes:
    """The digest of a listing of ``plot_count`` plots whose entries (plots, then certificates) are
    ``parts`` in order: fed piece by piece, so a listing in a file is named without reading it whole."""
    h = hashlib.sha256(LISTING_DOMAIN + _COUNT.pack(plot_count))
    for part in parts:
        h.update(part)
    return h.digest()


@dataclass(frozen=True)
class Listing(ListingReader):
    """Canonical entries as bytes in memory: 33 a plot and 152 a certificate."""

    blob: bytes             # plot entries
    certs: bytes = b""      # certificate entries
    digest: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", listing_digest(len(self.blob) // ENTRY_BYTES, (self.blob, self.certs)))

    # building ------------------------------------------------------------------------------
    @classmethod
    def from_plots(cls, plots: Iterable[tuple[bytes, int]], certificates: Iterable[Certificate] = ()) -> "Listing":
        """From (seed, k) pairs and certificates in any order; a seed (or shard) listed twice keeps
        its first entry."""
        by_seed: dict[bytes, int] = {}
        for seed, k in plots:
            if len(seed) != SEED_BYTES or not 0 < k < 256:
                raise ListingError(f"plot entry seed={seed.hex()[:16]} k={k} cannot be listed")
            by_seed.setdefault(seed, k)
        by_shard: dict[bytes, Certificate] = {}
        for cert in certificates:
            by_shard.setdefault(cert.shard, cert)
        return cls(b"".join(bytes([by_seed[s]]) + s for s in sorted(by_seed)),
                   b"".join(by_shard[s].entry() for s in sorted(by_shard)))

    @classmethod
    def parse(cls, blob: bytes, max_plots: int, certs: bytes = b"", max_shards: int = 0) -> "Listing":
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
        _check_certs(certs, max_shards)
        return cls(blob, certs)

    @classmethod
    def from_b64(cls, text: str, max_plots: int, shards: str = "", max_shards: int = 0) -> "Listing":
        max_chars = 4 * -(-(max_plots + 2000) * ENTRY_BYTES // 3)
        if len(text) > max_chars:
            raise ListingError(f"listing text is {len(text)} characters, more than {max_plots} plots need")
        if len(shards) > 4 * -(-max_shards * CERT_BYTES // 3):
            raise ListingError(f"certificate text is {len(shards)} characters, more than {max_shards} shards need")
        try:
            blob = base64.b64decode(text, validate=True)
            certs = base64.b64decode(shards, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ListingError(f"listing is not base64 ({exc})") from None
        return cls.parse(blob, max_plots, certs, max_shards)

    def to_b64(self) -> str:
        return base64.b64encode(self.blob).decode()

    def certs_b64(self) -> str:
        return base64.b64encode(self.certs).decode()

    # storing -------------------------------------------------------------------------------
    def stored(self) -> bytes:
        """One blob for a database row: plot count, plots, certificates."""
        return _COUNT.pack(len(self)) + self.blob + self.certs

    @classmethod
    def from_stored(cls, data: bytes, max_plots: int, max_shards: int) -> "Listing":
        if len(data) < _COUNT.size:
            raise ListingError("stored listing is truncated")
        (n,) = _COUNT.unpack_from(data)
        end = _COUNT.size + n * ENTRY_BYTES
        return cls.parse(data[_COUNT.size:end], max_plots, data[end:], max_shards)

    # reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Plots listed."""
        return len(self.blob) // ENTRY_BYTES

    def _plot_bytes(self, offset: int, size: int) -> bytes:
        return self.blob[offset:offset + size]

    def _cert_bytes(self, offset: int, size: int) -> bytes:
        return self.certs[offset:offset + size]

    def entry(self, i: int) -> tuple[bytes, int]:
        off = i * ENTRY_BYTES
        return self.blob[off + 1:off + ENTRY_BYTES], self.blob[off]

    @property
    def cert_count(self) -> int:
        return len(self.certs) // CERT_BYTES

    def certificates(self) -> tuple[Certificate, ...]:
        """Parsed once per listing (the miner's own listings; a validator's are spooled and parse
        certificates only when they are drawn)."""
        cached = self.__dict__.get("_certificates")
        if cached is None:
            cached = tuple(self.iter_certificates())
            object.__setattr__(self, "_certificates", cached)
        return cached

    def k_counts(self) -> Counter:
        return Counter(self.blob[0::ENTRY_BYTES])


def _check_certs(certs: bytes, max_shards: int) -> None:
    if len(certs) % CERT_BYTES:
        raise ListingError(f"certificates are {len(certs)} bytes, not a whole number of {CERT_BYTES}-byte entries")
    n = len(certs) // CERT_BYTES
    if n > max_shards:
        raise ListingError(f"listing has {n} shard certificates, more than the {max_shards} this network allows "
                           f"under one hotkey")
    previous = b""
    gateways: set[bytes] = set()
    for off in range(0, len(certs), CERT_BYTES):
        try:
            cert = Certificate.from_entry(certs[off:off + CERT_BYTES])
        except CertificateError as exc:
            raise ListingError(str(exc)) from None
        if cert.shard <= previous:
            what = "listed twice" if cert.shard == previous else "out of order"
            raise ListingError(f"shard {cert.shard.hex()[:16]}… is {what}: a listing holds each shard once, ascending")
        previous = cert.shard
        gateways.add(cert.gateway)
    if len(gateways) > MAX_GATEWAYS:
        raise ListingError(f"listing carries certificates of {len(gateways)} gateways, more than {MAX_GATEWAYS}")


EMPTY = Listing(b"")


def max_listing_chars(max_plots: int, max_shards: int = 0) -> int:
    """What a validator reads of a listing at most: base64 of the entries plus 64 KiB for the
    envelope (so a listing just over a limit is refused with the limit, not its size)."""
    return 4 * -(-max_plots * ENTRY_BYTES // 3) + 4 * -(-max_shards * CERT_BYTES // 3) + (64 << 10)
