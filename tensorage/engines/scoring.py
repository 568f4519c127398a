"""Scores from proof windows, and weights from scores. Pure functions, no I/O.

A window proves bytes: an unbiased estimate of the listed bytes the miner holds, computed
from the very listing its sample was drawn from (proofs/windows.py ``window_credit``).
A miner's score is the decayed sum of what its windows proved, times a small latency
factor; nothing is ever multiplied by what the miner lists today. Windows it missed
(timeout, unreachable, a refused answer) prove nothing and still count as windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

LATENCY_PENALTY = 0.2  # at most 20 % off for answering right at the deadline
IMPLAUSIBLE_P = 1e-3   # a window this unlikely for an honest miner is a "fail"
# A byte of client data whose audit passed counts this many plot bytes: it is storage somebody
# uses, and the allocator gives up plots to hold it, so holding it must never cost a miner score.
CLIENT_WEIGHT = 2.0


def decay_for(half_life_windows: int) -> float:
    """Per-window factor: half of a window's evidence is forgotten after ``half_life_windows``."""
    return 0.5 ** (1 / half_life_windows)


@dataclass
class MinerScore:
    hotkey: str
    uid: int
    credit: float = 0.0       # decayed sum of bytes proven per window
    windows: float = 0.0      # decayed count of windows judged
    returned: float = 0.0     # decayed sums of valid proofs and of proofs expected (for display)
    expected: float = 0.0
    latency_ms: float = 0.0   # EMA over answered windows, measured at arrival
    last_window: int = -1     # a window is credited at most once

    def add_window(self, window: int, credit: float, returned: int, expected: float, decay: float) -> bool:
        """Fold one window in; False (and nothing changes) when it was already counted."""
        if window <= self.last_window:
            return False
        # windows skipped since the last one (this validator did not check them) just decay
        gap = 1 if self.last_window < 0 else window - self.last_window
        factor = decay ** gap
        self.credit = factor * self.credit + credit
        self.windows = factor * self.windows + 1.0
        self.returned = factor * self.returned + returned
        self.expected = factor * self.expected + expected
        self.last_window = window
        return True

    @property
    def ratio(self) -> float:
        """Valid proofs over proofs expected from the sampled plots (display only: credit is in bytes)."""
        return self.returned / self.expected if self.expected > 0 else 0.0

    def proven_bytes(self) -> float:
        """Mean bytes proven per window judged (decayed)."""
        return self.credit / self.windows if self.windows > 0 else 0.0

    def score(self, deadline_s: float, decay: float, now_window: int) -> float:
        """What weights follow: the decayed sum, scaled to bytes (a newcomer ramps up as it proves),
        decayed further by every window since this miner was last judged: one that stops being
        checked (stops serving, takes a validator permit, ...) fades like one that proves nothing."""
        idle = max(0, now_window - self.last_window) if self.last_window >= 0 else 0
        return self.credit * decay ** idle * (1.0 - decay) * latency_factor(self.latency_ms, deadline_s)

    def note_latency(self, result: str, latency_ms: float, deadline_s: float) -> None:
        if result in ("pass", "fail") and latency_ms > 0:
            self.latency_ms = latency_ms if self.latency_ms == 0 else 0.8 * self.latency_ms + 0.2 * latency_ms
        elif result == "timeout":
            self.latency_ms = deadline_s * 1000


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


def judge(returned: int, expected: float, invalid: int, error: Optional[str] = None) -> str:
    """pass, or fail when the answer was refused, a proof was invalid or the count is
    implausibly low for an honest miner."""
    if error or invalid:
        return "fail"
    if poisson_cdf(returned, expected) < IMPLAUSIBLE_P:
        return "fail"
    return "pass"


def normalize(scores: dict[int, float]) -> dict[int, float]:
    clean = {uid: s for uid, s in scores.items() if s > 0 and math.isfinite(s)}
    total = sum(clean.values())
    return {uid: s / total for uid, s in clean.items()} if total > 0 else {}
