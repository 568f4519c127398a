"""Simplified Yuma consensus, as the devnet runs it each epoch.

Enough of Yuma for the console to show real consensus figures: stake-weighted
median clipping of weights, rank, trust, incentive, dividends and emission. Bonds
and their EMA are left out; dividends reward a validator for the part of its
clipped weights that landed on incentive, in proportion to its stake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KAPPA = 0.5  # the share of stake that must support a weight for it to count


@dataclass
class ConsensusResult:
    rank: dict[int, float] = field(default_factory=dict)
    trust: dict[int, float] = field(default_factory=dict)
    consensus: dict[int, float] = field(default_factory=dict)
    incentive: dict[int, float] = field(default_factory=dict)
    dividends: dict[int, float] = field(default_factory=dict)
    emission: dict[int, float] = field(default_factory=dict)


def _normalize(values: dict[int, float]) -> dict[int, float]:
    total = sum(v for v in values.values() if v > 0)
    return {k: (max(v, 0.0) / total if total > 0 else 0.0) for k, v in values.items()}


def stake_weighted_median(column: dict[int, float], stake: dict[int, float], kappa: float = KAPPA) -> float:
    """The largest weight that validators holding at least ``kappa`` of stake give or exceed."""
    best = 0.0
    for w in set(column.values()):
        support = sum(stake[i] for i, wi in column.items() if wi >= w)
        if support >= kappa - 1e-12 and w > best:
            best = w
    return best


def yuma(
    weights: dict[int, dict[int, float]],
    stake: dict[int, float],
    uids: list[int],
    emission_per_epoch: float,
    kappa: float = KAPPA,
) -> ConsensusResult:
    """weights: validator uid -> {miner uid: weight}; stake: validator uid -> stake."""
    validators = [v for v in weights if stake.get(v, 0) > 0]
    s = _normalize({v: stake[v] for v in validators})
    w = {v: _normalize({u: x for u, x in weights[v].items() if u in uids}) for v in validators}
    res = ConsensusResult()
    raw_support: dict[int, float] = {}
    for j in uids:
        column = {v: w[v].get(j, 0.0) for v in validators}
        c = stake_weighted_median(column, s, kappa) if validators else 0.0
        res.consensus[j] = c
        res.rank[j] = sum(s[v] * min(column[v], c) for v in validators)
        raw_support[j] = sum(s[v] * column[v] for v in validators)
        res.trust[j] = res.rank[j] / raw_support[j] if raw_support[j] > 0 else 0.0
    res.incentive = _normalize({j: res.rank[j] for j in uids})
    bonds = {v: s[v] * sum(min(w[v].get(j, 0.0), res.consensus[j]) * res.incentive[j] for j in uids)
             for v in validators}
    res.dividends = {j: 0.0 for j in uids}
    res.dividends.update(_normalize(bonds) if bonds else {})
    half = emission_per_epoch / 2
    res.emission = {j: half * res.incentive[j] + half * res.dividends.get(j, 0.0) for j in uids}
    return res
