"""Scores from proof windows, and weights from scores. Pure functions, no I/O.

A window proves bytes: an unbiased estimate of the listed plot bytes the miner holds, and the
certified client-shard bytes it holds (all or nothing: one wrong chunk and the window proves
nothing), both computed from the very listing its sample was drawn from (proofs/windows.py).
A miner's score is the decayed sum of what its windows proved, times a small latency factor;
nothing is ever multiplied by what the miner lists today. Windows it missed (timeout,
unreachable, a refused answer) prove nothing and still count as windows.

Client credit is kept per gateway, because it counts under each gateway's **stake bound**
(:func:`stake_bound`): every validator sees the same listings and metagraph, so each can total the
credit each gateway's certificates carry across all miners; up to the gateway's stake share of the
network's total credit it counts in full, above it it is scaled down to it. A gateway that
certifies data a colluding miner can regenerate directs at most its stake share of the weights:
the residual of this design, as compression is for plots (docs/proofs.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

LATENCY_PENALTY = 0.2  # at most 20 % off for answering right at the deadline
IMPLAUSIBLE_P = 1e-3   # a window this unlikely for an honest miner is a "fail"


def decay_for(half_life_windows: int) -> float:
    """Per-window factor: half of a window's evidence is forgotten after ``half_life_windows``."""
    return 0.5 ** (1 / half_life_windows)


@dataclass
class MinerScore:
    hotkey: str
    uid: int
    credit: float = 0.0       # decayed sum of plot bytes proven per window
    windows: float = 0.0      # decayed count of windows judged
    returned: float = 0.0     # decayed sums of valid proofs and of proofs expected (for display)
    expected: float = 0.0
    latency_ms: float = 0.0   # EMA over the answers that counted (credited bytes), measured at arrival
    last_window: int = -1     # a window is credited at most once
    client: dict[str, float] = field(default_factory=dict)  # gateway hotkey -> decayed sum of certified credit

    def add_window(self, window: int, credit: float, returned: int, expected: float, decay: float,
                   client: Optional[Mapping[str, float]] = None) -> bool:
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
        for gateway in set(self.client) | set(client or {}):
            value = factor * self.client.get(gateway, 0.0) + (client or {}).get(gateway, 0.0)
            if value > 1e-3:
                self.client[gateway] = value
            else:
                self.client.pop(gateway, None)
        self.last_window = window
        return True

    @property
    def ratio(self) -> float:
        """Valid proofs over proofs expected from the sampled plots (display only: credit is in bytes)."""
        return self.returned / self.expected if self.expected > 0 else 0.0

    def proven_bytes(self) -> float:
        """Mean plot bytes proven per window judged (decayed)."""
        return self.credit / self.windows if self.windows > 0 else 0.0

    def client_bytes(self) -> float:
        """Mean certified client credit per window judged (decayed, before the stake bound)."""
        return sum(self.client.values()) / self.windows if self.windows > 0 else 0.0

    def fade(self, decay: float, now_window: int) -> float:
        """Decay for every window since this miner was last judged: one that stops being checked
        (stops serving, takes a validator permit, ...) fades like one that proves nothing."""
        idle = max(0, now_window - self.last_window) if self.last_window >= 0 else 0
        return decay ** idle

    def score(self, deadline_s: float, decay: float, now_window: int,
              factors: Optional[Mapping[str, float]] = None) -> float:
        """What weights follow: the decayed sums (client credit per gateway times that gateway's
        stake-bound factor; all of it when ``factors`` is None), scaled to bytes (a newcomer ramps
        up as it proves)."""
        client = sum(v * (1.0 if factors is None else factors.get(g, 0.0)) for g, v in self.client.items())
        return ((self.credit + client) * self.fade(decay, now_window) * (1.0 - decay)
                * latency_factor(self.latency_ms, deadline_s))

    def note_latency(self, counts: bool, latency_ms: float) -> bool:
        """Fold one answer's latency into the average, only when the answer counts (its window credited
        bytes from it: ``RoundOutcome.counts``). The latency factor scales the credit those answers
        earned, so it is their latency alone: a fast junk or refused answer cannot pull it down, and a
        timeout or a refused answer (which credit nothing anyway) cannot pull it up. Returns whether
        the average moved."""
        if not counts or latency_ms <= 0:
            return False
        self.latency_ms = latency_ms if self.latency_ms == 0 else 0.8 * self.latency_ms + 0.2 * latency_ms
        return True


def stake_bound(plots: float, certified: Mapping[str, float], stake: Mapping[str, float]) -> dict[str, float]:
    """Per gateway, the factor (0..1) its certificates' credit counts with.

    ``plots``: the network's plot credit; ``certified``: each gateway's certified credit across
    all miners; ``stake``: each gateway's share of the stake of all validators with a permit (0
    for a hotkey without one). Gateway g counts ``min(C_g, s_g * T)`` where T is the network's
    total counted credit, ``T = plots + sum_g min(C_g, s_g * T)``: the fixed point, found by
    capping the gateways that exceed their share until none does (at most one pass per gateway;
    capping only lowers T, so a capped gateway stays capped)."""
    capped: set[str] = set()
    total = plots + sum(certified.values())
    while True:
        free = sum(c for g, c in certified.items() if g not in capped)
        share = sum(stake.get(g, 0.0) for g in capped)
        total = (plots + free) / max(1.0 - share, 1e-9)
        over = {g for g, c in certified.items() if g not in capped and c > stake.get(g, 0.0) * total}
        if not over:
            break
        capped |= over
    return {g: (1.0 if g not in capped else min(1.0, stake.get(g, 0.0) * total / c) if c > 0 else 0.0)
            for g, c in certified.items()}


def bounded_scores(scores: Iterable[MinerScore], stake: Mapping[str, float], deadline_s: float, decay: float,
                   now_window: int) -> tuple[dict[str, float], dict[str, float]]:
    """(score per miner hotkey, factor per gateway): every miner's decayed credit as of now, its
    client credit counted under each gateway's stake bound."""
    scores = list(scores)
    plots = 0.0
    certified: dict[str, float] = {}
    for s in scores:
        fade = s.fade(decay, now_window)
        plots += s.credit * fade
        for g, v in s.client.items():
            certified[g] = certified.get(g, 0.0) + v * fade
    factors = stake_bound(plots, certified, stake)
    return {s.hotkey: s.score(deadline_s, decay, now_window, factors) for s in scores}, factors


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


def normalize(scores: Mapping[int, float]) -> dict[int, float]:
    clean = {uid: s for uid, s in scores.items() if s > 0 and math.isfinite(s)}
    total = sum(clean.values())
    return {uid: s / total for uid, s in clean.items()} if total > 0 else {}


def stake_shares(validators: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Each validator's share of the stake of all validators with a permit: (hotkey, stake) pairs."""
    pairs = [(h, max(0.0, s)) for h, s in validators]
    total = sum(s for _, s in pairs)
    return {h: s / total for h, s in pairs} if total > 0 else {}
