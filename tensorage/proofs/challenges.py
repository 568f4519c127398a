"""Challenge derivation and the capacity estimator.

An honest plot has no proof for ~1/e of single challenges and "no proof" cannot be
verified, so a validator never judges one answer: it asks J derived challenges per
sampled plot and compares proofs returned with proofs expected over many rounds.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from .plots import proof_rate

CHALLENGE_BYTES = 32


def new_challenge() -> bytes:
    return secrets.token_bytes(CHALLENGE_BYTES)


def derive(challenge: bytes, plot_id: bytes, j: int) -> bytes:
    """The j-th challenge for one plot: ``sha256(c | plot_id | j)``."""
    return hashlib.sha256(challenge + plot_id + j.to_bytes(4, "big")).digest()


def expected_proofs(ks: list[int], per_plot: int) -> float:
    """Proofs an honest miner returns on average for these sampled plots."""
    return sum(proof_rate(k) for k in ks) * per_plot


@dataclass
class CapacityEstimate:
    """Ratio of decayed sums: proofs returned / proofs expected.

    Keeping numerator and denominator separately (rather than an EMA of per-round
    ratios) weights rounds by how much they asked and stays unbiased when a round
    asks few plots.
    """

    returned: float = 0.0
    expected: float = 0.0

    def update(self, returned: float, expected: float, decay: float) -> None:
        self.returned = decay * self.returned + returned
        self.expected = decay * self.expected + expected

    @property
    def ratio(self) -> float:
        """Proven fraction of the listed plots, capped at 1 (luck does not buy score)."""
        if self.expected <= 0:
            return 0.0
        return min(1.0, self.returned / self.expected)
