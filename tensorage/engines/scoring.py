"""Scores from proof rounds, and weights from scores. Pure functions, no I/O.

Score = proven capacity (ratio of decayed sums: valid proofs returned / proofs an honest
miner returns, capped at 1, times the bytes of the plots it lists) x a latency factor.
A miner holding a fraction f of what it lists therefore scores ~f of an honest peer
listing the same, whatever it lists. Timeouts and unreachable rounds count as zero proofs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..proofs.challenges import CapacityEstimate

# Half of a round's evidence is forgotten after this many rounds: long enough that
# Poisson noise averages out (~25 rounds x ~15 proofs -> ~5 % error), short enough that a
# miner that loses plots is caught within the hour on finney.
HALF_LIFE_ROUNDS = 24
DECAY = 0.5 ** (1 / HALF_LIFE_ROUNDS)
LATENCY_PENALTY = 0.2  # at most 20 % off for answering right at the deadline
IMPLAUSIBLE_P = 1e-3   # a round this unlikely for an honest miner is a "fail"


@dataclass
class MinerScore:
    hotkey: str
    uid: int
    estimate: CapacityEstimate
    latency_ms: float = 0.0
    listed_bytes: int = 0

    @property
    def ratio(self) -> float:
        return self.estimate.ratio

    def proven_bytes(self) -> float:
        return self.ratio * self.listed_bytes

    def score(self, deadline_s: float) -> float:
        return self.proven_bytes() * latency_factor(self.latency_ms, deadline_s)


def latency_factor(latency_ms: float, deadline_s: float) -> float:
    return 1.0 - LATENCY_PENALTY * min(1.0, max(0.0, latency_ms / 1000.0 / deadline_s))


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam)."""
    if lam <= 0:
        return 1.0
    term = math.exp(-lam)
    total = term
    for i in range(1, k + 1):
        term *= lam / i
        total += term
    return min(1.0, total)


def judge(returned: int, expected: float, invalid: int) -> str:
    """pass, or fail when a proof was invalid or the count is implausibly low for an honest miner."""
    if invalid:
        return "fail"
    if poisson_cdf(returned, expected) < IMPLAUSIBLE_P:
        return "fail"
    return "pass"


def normalize(scores: dict[int, float]) -> dict[int, float]:
    clean = {uid: s for uid, s in scores.items() if s > 0 and math.isfinite(s)}
    total = sum(clean.values())
    return {uid: s / total for uid, s in clean.items()} if total > 0 else {}
