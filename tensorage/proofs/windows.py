"""Proof windows: one shared challenge per window, a sample per miner, and what a window proves.

A window is ``window_blocks`` blocks. Its challenge is derived from the hash of its first
block (the beacon), which nobody knows before that block. Each miner's sample is derived
from the challenge, the miner's hotkey and the digest of a listing fixed before the
beacon, so every validator asks for the same plots and the miner answers once, whatever
the number of validators. Pure functions: miner, validator, tests and benchmarks share them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from .plots import estimated_plot_bytes, proof_rate

if TYPE_CHECKING:
    from ..config import NetworkProfile
    from .listing import Listing

WINDOW_DOMAIN = b"tensorage/window/v2"
SAMPLE_DOMAIN = b"tensorage/sample/v2"
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
    if s > n:
        raise ValueError(f"cannot sample {s} of {n} plots")
    seed = hashlib.sha256(SAMPLE_DOMAIN + challenge + hotkey.encode() + listing_digest).digest()
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


def draw_sample(profile: "NetworkProfile", challenge: bytes, hotkey: str, listing: "Listing") -> list[SampledPlot]:
    """The plots of ``listing`` a window asks for, with what each counts for: the same on the
    miner and on every validator."""
    s = sample_size(len(listing), profile)
    out = []
    for i in sample_indices(challenge, hotkey, listing.digest, len(listing), s):
        seed, k = listing.entry(i)
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


def answer_bound(s: int, per_plot: int, max_k: int) -> int:
    """Most bytes an answer for ``s`` plots may take: every (plot, j) with the capped number
    of proofs of the largest k, JSON punctuation included."""
    proof_chars = 16 * max_k + 3  # hex of 8k bytes, quotes, comma
    return 512 + s * (4 + per_plot * (4 + MAX_PROOFS_PER_CHALLENGE * proof_chars))
