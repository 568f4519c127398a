"""Proof windows: one shared challenge per window, a sample per miner, and what a window proves.

A window is ``window_blocks`` blocks. Its challenge is derived from the hash of its first
block (the beacon), which nobody knows before that block. Each miner's sample is derived
from the challenge, the miner's hotkey and the digest of a listing fixed before the
beacon, so every validator asks for the same plots and the miner answers once, whatever
the number of validators. Pure functions: miner, validator, tests and benchmarks share them.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from .certificates import Certificate
from .merkle import leaf_count, proof_bytes
from .plots import estimated_plot_bytes, proof_rate

if TYPE_CHECKING:
    from ..config import NetworkProfile
    from .listing import ListingReader

WINDOW_DOMAIN = b"tensorage/window/v3"
SAMPLE_DOMAIN = b"tensorage/sample/v3"
CHUNK_DOMAIN = b"tensorage/chunks/v3"
# A certified shard byte counts this many plot bytes at every validator: it is storage somebody
# uses, and the allocator gives up plots to hold it, so holding it must never cost a miner score.
CLIENT_WEIGHT = 2.0
# A byte the gateway certifies as served to a retrieval in the certificate's period (at most the
# shard's size) adds this much: a miner that stores but will not serve earns less than one that
# does, and a client retrieving its own objects in a loop adds at most SERVE_WEIGHT / CLIENT_WEIGHT
# (25 %) to what its shards earn, inside its gateway's stake bound (engines/scoring.py).
SERVE_WEIGHT = 0.5
# Proofs counted per (plot, j). An honest plot has more than 6 for one challenge with
# probability 8e-5 (Poisson, mean ~1); the expectation below is truncated the same way,
# so the cap costs an honest miner nothing and bounds every answer's size.
MAX_PROOFS_PER_CHALLENGE = 6


def window_of(block: int, profile: "NetworkProfile") -> int:
    return block // profile.window_blocks


def window_start(window: int, profile: "NetworkProfile") -> int:
    """The window's first block, whose hash is its beacon."""
    return window * profile.window_blocks


def window_challenge(beacon: bytes, window: int) -> bytes:
    return hashlib.sha256(WINDOW_DOMAIN + beacon + window.to_bytes(8, "big")).digest()


def sample_size(n_plots: int, profile: "NetworkProfile") -> int:
    """Plots sampled a window: the network-wide rate, at least ``min_sample_plots`` (small
    miners), at most ``max_sample_plots`` (what an answer may carry)."""
    if n_plots <= 0:
        return 0
    wanted = math.ceil(n_plots * profile.sample_fraction)
    return min(n_plots, profile.max_sample_plots, max(profile.min_sample_plots, wanted))


def sample_indices(challenge: bytes, hotkey: str, listing_digest: bytes, n: int, s: int) -> list[int]:
    """``s`` distinct indices in ``range(n)``, uniform, from a partial Fisher-Yates shuffle
    driven by sha256 (O(s), the same on every machine and Python version)."""
    return _shuffle(hashlib.sha256(SAMPLE_DOMAIN + challenge + hotkey.encode() + listing_digest).digest(), n, s)


def _shuffle(seed: bytes, n: int, s: int) -> list[int]:
    if s > n:
        raise ValueError(f"cannot sample {s} of {n}")
    moved: dict[int, int] = {}
    out: list[int] = []
    for i in range(s):
        r = int.from_bytes(hashlib.sha256(seed + i.to_bytes(4, "big")).digest(), "big") % (n - i)
        j = i + r
        out.append(moved.get(j, j))
        moved[j] = moved.get(i, i)
    return out


@lru_cache(maxsize=64)
def expected_per_challenge(k: int, cap: int = MAX_PROOFS_PER_CHALLENGE) -> float:
    """Proofs an honest plot of size k returns for one challenge, counted up to ``cap``:
    E[min(X, cap)] for X ~ Poisson(rate(k))."""
    lam = proof_rate(k)
    p = math.exp(-lam)
    below = 0.0      # sum of x * P(X = x) for x < cap
    p_below = 0.0    # P(X < cap)
    for x in range(cap):
        below += x * p
        p_below += p
        p *= lam / (x + 1)
    return below + cap * (1.0 - p_below)


@dataclass(frozen=True)
class SampledPlot:
    seed: bytes
    k: int
    weight: int       # bytes it counts for (0 when the network does not accept its k)
    expected: float   # proofs an honest plot returns for its J challenges (0 when it does not count)

    @property
    def counts(self) -> bool:
        return self.weight > 0


def draw_sample(profile: "NetworkProfile", challenge: bytes, hotkey: str, listing: "ListingReader") -> list[SampledPlot]:
    """The plots of ``listing`` a window asks for, with what each counts for: the same on the
    miner and on every validator."""
    s = sample_size(len(listing), profile)
    out = []
    # read by index (one open for a spooled listing): the listing is never turned into objects
    for seed, k in listing.entries_at(sample_indices(challenge, hotkey, listing.digest, len(listing), s)):
        weight = plot_weight(k, profile)
        out.append(SampledPlot(seed=seed, k=k, weight=weight,
                               expected=profile.challenges_per_plot * expected_per_challenge(k) if weight else 0.0))
    return out


def plot_weight(k: int, profile: "NetworkProfile") -> int:
    """Bytes a plot of size k counts for: its size when the network accepts k, else nothing."""
    return estimated_plot_bytes(k) if profile.min_k <= k <= profile.max_k else 0


def sample_credit(n_listed: int, plots: Sequence[SampledPlot], valid: Sequence[int]) -> float:
    return window_credit(n_listed, [p.weight for p in plots], [p.expected for p in plots], valid)


def window_credit(n_listed: int, weights: Sequence[int], expected: Sequence[float], valid: Sequence[int]) -> float:
    """Bytes one window proved: an unbiased estimate of the listed bytes the miner holds.

    The sample is uniform over the ``n_listed`` plots, so each sampled plot stands for
    ``n_listed / s`` plots; it counts its own bytes times the share of its expected proofs
    that came back valid. Expected proofs and credited bytes use the same per-plot weights,
    so a plot of k+1 counts twice a plot of k on both sides.
    """
    s = len(weights)
    if s == 0:
        return 0.0
    total = sum(w * v / e for w, e, v in zip(weights, expected, valid) if w > 0 and e > 0)
    return n_listed / s * total


def answer_bound(s: int, per_plot: int, max_k: int, chunks: Sequence["SampledChunk"] = ()) -> int:
    """Most bytes an answer for ``s`` plots and these chunks may take: every (plot, j) with the
    capped number of proofs of the largest k, every chunk with its path in base64, JSON
    punctuation included."""
    proof_chars = 16 * max_k + 3  # hex of 8k bytes, quotes, comma
    chunk_chars = sum(4 * -(-c.proof_bytes // 3) + 3 for c in chunks)
    return 512 + s * (4 + per_plot * (4 + MAX_PROOFS_PER_CHALLENGE * proof_chars)) + chunk_chars


# --- client shards -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SampledChunk:
    """One chunk of one certified shard that a window asks for."""

    shard: bytes      # the shard's Merkle id
    size: int         # the shard's bytes
    index: int        # the chunk
    gateway: bytes    # whose certificate the shard is listed under

    @property
    def proof_bytes(self) -> int:
        return proof_bytes(self.size, self.index)


def live_certificates(listing: "ListingReader", block: int) -> list[Certificate]:
    """The listing's certificates that count at ``block`` (a window's first block): not expired."""
    return [c for c in listing.iter_certificates() if c.counts_at(block)]


@dataclass(frozen=True)
class GatewayShards:
    """One gateway's live certificates in a listing, with what a window needs of them: their
    positions in the listing, not the certificates (a window parses only the few it draws)."""

    gateway: bytes
    indices: array        # listing index of each live certificate, by shard id
    starts: array         # first chunk of each shard in the gateway's chunk space (and the total, last)
    credit: float         # client_credit of these certificates


def live_by_gateway(listing: "ListingReader", block: int) -> tuple[GatewayShards, ...]:
    """The listing's live certificates at ``block`` grouped by gateway, sorted by gateway. Computed once
    per listing for as long as no certificate expires: a full listing is 16,384 certificates and a
    validator plans from it every window (bench_window_shards). Kept as arrays of indices and
    chunk offsets (12 bytes a certificate), not as certificate objects."""
    expiries = listing.derived("expiries", None, lambda: array("Q", sorted(c.expiry for c in
                                                                          listing.iter_certificates())))
    expired = bisect.bisect_left(expiries, block)  # certificates with expiry < block: same count, same live set

    def group() -> tuple[GatewayShards, ...]:
        by: dict[bytes, tuple[array, array, list[float]]] = {}
        for i, c in enumerate(listing.iter_certificates()):
            if not c.counts_at(block):
                continue
            indices, starts, credit = by.setdefault(c.gateway, (array("I"), array("Q", [0]), [0.0]))
            indices.append(i)
            starts.append(starts[-1] + leaf_count(c.size))
            credit[0] += CLIENT_WEIGHT * c.size + SERVE_WEIGHT * c.served  # as client_credit counts it
        return tuple(GatewayShards(gateway=g, indices=indices, starts=starts, credit=credit[0])
                     for g, (indices, starts, credit) in sorted(by.items()))

    return listing.derived("live", expired, group)


def draw_chunks(profile: "NetworkProfile", challenge: bytes, hotkey: str, listing: "ListingReader",
                start_block: int) -> list[SampledChunk]:
    """The chunks a window asks for: for each gateway whose certificates the listing carries,
    ``chunks_per_gateway`` distinct chunks drawn uniformly over that gateway's certified bytes
    (a shard is hit in proportion to its size). Per gateway, so certificates a miner signed for
    itself (worth nothing) cannot dilute the sample away from the shards that pay."""
    out: list[SampledChunk] = []
    for group in live_by_gateway(listing, start_block):
        starts, total = group.starts, group.starts[-1]
        seed = hashlib.sha256(CHUNK_DOMAIN + challenge + hotkey.encode() + listing.digest + group.gateway).digest()
        for position in sorted(_shuffle(seed, total, min(total, profile.chunks_per_gateway))):
            i = bisect.bisect_right(starts, position) - 1
            cert = listing.certificate(group.indices[i])
            out.append(SampledChunk(shard=cert.shard, size=cert.size, index=position - starts[i],
                                    gateway=group.gateway))
    return out


def client_credit(certs: Sequence[Certificate]) -> dict[bytes, float]:
    """Bytes a window credits per gateway for these (live) certificates when every sampled
    chunk came back right: the shard bytes, weighted, and the bytes served, weighted."""
    out: dict[bytes, float] = {}
    for c in certs:
        out[c.gateway] = out.get(c.gateway, 0.0) + CLIENT_WEIGHT * c.size + SERVE_WEIGHT * c.served
    return out
