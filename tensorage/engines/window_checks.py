"""The validator's side of a proof window: what it asks each miner, and what the answer proves.

For each miner the window is drawn from the newest listing the validator saw *before* the
window's first block (the miner could not have chosen it knowing the beacon): plots sampled as
every validator samples them, and chunks of the certified client shards it lists, per gateway.
The answer is checked in the verify pool; this module turns the check into the window's
verdict and credit:

* plot credit: an unbiased estimate of the listed plot bytes the miner holds;
* client credit, per gateway: the certified bytes (and bytes served) of its live certificates,
  in full when every sampled chunk came back right;
* one chunk wrong or missing and the window fails and credits nothing at all, plots included:
  holding part of a shard is a losing bet.

Client credit is kept per gateway because weights count it under each gateway's stake bound
(engines/scoring.py). Everything here depends only on the listing, the beacon and the answer,
so every validator computes the same credit from the same evidence. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..chain.port import Neuron
from ..config import NetworkProfile
from ..net.client import PeerError, Reply
from ..proofs.answers import AnswerCheck, AnswerSpec
from ..proofs.certificates import ss58_of
from ..proofs.listing import ListingReader
from ..proofs.listing_spool import ListingUnavailable
from ..proofs.windows import draw_chunks, draw_sample, live_by_gateway, sample_credit
from .scoring import judge

SEEN_KEPT = 3


@dataclass(frozen=True)
class SeenListing:
    """A listing as this validator saw it: the head block read after it arrived (for the record)
    and the unix time it arrived (what the margin is measured with: a validator whose RPC lags
    reads an old head, but its clock does not lag with it)."""

    listing: ListingReader  # in memory (tests) or spooled to a file (the validator: proofs/listing_spool.py)
    seen_block: int
    seen_at: float = 0.0  # 0: restored from before a restart, so before every window still to come


@dataclass
class MinerView:
    """What this validator knows of one miner right now."""

    neuron: Neuron
    seen: list[SeenListing] = field(default_factory=list)  # oldest first, at most SEEN_KEPT
    refused: str = ""        # plots of the latest listing that cannot count (k out of range)
    listing_error: str = ""  # the latest listing was refused whole: why (it then proves nothing)
    error: str = ""          # the latest sync failed: why
    credited_bytes: int = 0

    @property
    def latest(self) -> Optional[SeenListing]:
        return self.seen[-1] if self.seen else None

    def listing_for(self, beacon_at: float, margin_s: float) -> Optional[SeenListing]:
        """The newest listing that arrived more than ``margin_s`` seconds before the beacon block
        was made (its chain timestamp): the miner could not have chosen it knowing the beacon,
        however far behind this validator's own chain node is."""
        usable = [s for s in self.seen if s.seen_at + margin_s < beacon_at]
        return usable[-1] if usable else None

    def add(self, seen: SeenListing) -> None:
        """Keep the newest SEEN_KEPT snapshots. Only the newest two can be planned from (the newest once
        it is old enough, the one before until then): older ones drop what windows derived from them."""
        self.seen = [s for s in self.seen if s.listing.digest != seen.listing.digest]
        self.seen.append(seen)
        del self.seen[:-SEEN_KEPT]
        for old in self.seen[:-2]:
            old.listing.forget_derived()


@dataclass
class WindowTask:
    """One miner's part of a window: what was asked, what a right answer credits, what came back."""

    view: MinerView
    seen: SeenListing
    spec: AnswerSpec
    client: dict[str, float] = field(default_factory=dict)  # gateway hotkey -> credit if every chunk is right
    reply: Optional[Reply] = None
    failure: Optional[PeerError] = None
    check: Optional[AnswerCheck] = None
    retries: int = 0  # 425s asked again inside the deadline


@dataclass
class RoundOutcome:
    uid: int
    hotkey: str
    result: str
    plots: int
    returned: int
    expected: float
    latency_ms: float
    credit: float = 0.0       # plot bytes proven
    detail: str = ""
    chunks_asked: int = 0
    chunks_right: int = 0
    client: dict[str, float] = field(default_factory=dict)  # gateway hotkey -> certified credit proven
    bad_chunks: list[tuple[str, str, int, str]] = field(default_factory=list)  # (gateway, shard id, chunk, why)

    @property
    def client_bytes(self) -> float:
        return sum(self.client.values())

    @property
    def counts(self) -> bool:
        """The window credited bytes from this answer (the answer was checked, not refused, every shard
        chunk was right and it proved something): the answers whose latency the score's latency factor
        stands for. A timeout, an unreachable miner, a refused or unchecked answer, wrong chunks or an
        answer that proved nothing do not count, so they cannot pull the latency average either way."""
        return self.result in ("pass", "fail") and self.total_credit > 0

    @property
    def total_credit(self) -> float:
        return self.credit + self.client_bytes


def plan(profile: NetworkProfile, views: list[MinerView], window: int, start: int, challenge: bytes,
         beacon_at: float, block_s: float) -> list[WindowTask]:
    """Every miner with a listing from before the beacon: its sample and what it credits.
    ``beacon_at`` is the beacon block's chain timestamp, ``block_s`` the chain's block time."""
    tasks = []
    margin_s = profile.listing_margin_blocks * block_s
    for view in views:
        seen = view.listing_for(beacon_at, margin_s)
        if seen is None or not view.neuron.endpoint:
            continue
        hotkey = view.neuron.hotkey
        try:
            plots = draw_sample(profile, challenge, hotkey, seen.listing)
            chunks = draw_chunks(profile, challenge, hotkey, seen.listing, start)
            credit = {ss58_of(g.gateway): g.credit for g in live_by_gateway(seen.listing, start)}
        except ListingUnavailable as exc:  # its file is gone: this miner sits the window out, the others do not
            view.error = str(exc)[:300]
            view.seen = [s for s in view.seen if s is not seen]  # so the next sync fetches it again
            continue
        spec = AnswerSpec(hotkey=hotkey, window=window, listing_hex=seen.listing.digest_hex, challenge=challenge,
                          per_plot=profile.challenges_per_plot, plots=tuple(plots), chunks=tuple(chunks))
        tasks.append(WindowTask(view=view, seen=seen, spec=spec, client=credit))
    return tasks


def judge_task(t: WindowTask, started: float) -> RoundOutcome:
    n = t.view.neuron
    expected = sum(p.expected for p in t.spec.plots)
    out = RoundOutcome(uid=n.uid, hotkey=n.hotkey, result="fail", plots=len(t.spec.plots), returned=0,
                       expected=expected, latency_ms=0.0, chunks_asked=len(t.spec.chunks))
    if t.failure is not None:
        out.result = {"timeout": "timeout", "unreachable": "unreachable"}.get(t.failure.kind, "fail")
        out.detail = str(t.failure)[:300]
        out.latency_ms = max(0.0, (t.failure.at - started) * 1000)
        return out
    assert t.reply is not None
    out.latency_ms = max(0.0, (t.reply.arrived_at - started) * 1000)
    if t.reply.status != 200:
        out.detail = f"HTTP {t.reply.status} {t.reply.error_message}"[:300]
        return out
    check = t.check or AnswerCheck(valid=[0] * len(t.spec.plots), error="not checked",
                                   chunks=[False] * len(t.spec.chunks))
    out.returned = check.returned
    out.result = judge(check.returned, expected, check.invalid, check.error)
    details = [check.error] if check.error else []
    if check.invalid:
        details.append(f"{check.invalid} invalid proofs")
    if check.error is None:
        out.chunks_right = check.chunks_right
        for chunk, right in zip(t.spec.chunks, check.chunks):
            if not right:
                out.bad_chunks.append((ss58_of(chunk.gateway), chunk.shard.hex(), chunk.index,
                                       f"chunk {chunk.index} missing" if right is None else
                                       f"chunk {chunk.index} does not match the certified root"))
        if check.chunks_ok:
            out.credit = sample_credit(len(t.seen.listing), t.spec.plots, check.valid)
            out.client = dict(t.client)
        else:
            out.result = "fail"
            details.append(f"{len(out.bad_chunks)} of {len(t.spec.chunks)} shard chunks wrong or missing: the window "
                           f"proves nothing")
    out.detail = ", ".join(details)[:300]
    return out
