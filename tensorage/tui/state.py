"""What the console has seen on the bus, folded into plain data the screens render.

No Textual here: the app feeds batches of engine events to :meth:`ConsoleState.ingest`
and gets back the topics that changed, so only screens that show those topics redraw.
Everything is bounded (rolling lists), so a console left open for weeks stays small.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Iterable, Iterator, Optional, TypeVar

from ..events import (AllocationDone, ChallengeResult, ChallengeServed, ClientTransfer, DiskLost, DiskReturned,
                      ErrorEvent, Event, JobRan, LogEvent, NodeState, ObjectEvent, PlanReady, PlotDone, PlotProgress,
                      PlotRemoved, PlotVerified, ShardEvent, ShardLost, ShardRepaired, WeightsSet)

LEVELS = ("debug", "info", "warning", "error")
CHAIN_JOBS = ("devnet_epoch", "sync")
RECENT_PER_PEER = 20
SERIES_POINTS = 120
PASS_WINDOW = 10
FINISHED_TRANSFERS = 5  # finished stores and retrieves kept on screen next to the running ones

T = TypeVar("T")


def level_of(event: Event) -> str:
    if isinstance(event, LogEvent):
        return event.severity if event.severity in LEVELS else "info"
    level = str(event.level)
    if getattr(event, "ok", True) is False and level in ("debug", "info"):
        return "warning"  # a failed weight set or plot verification is worth seeing
    return level if level in LEVELS else "info"


class RollingList(Generic[T]):
    """An append-only list that forgets its oldest items in chunks past ``cap``.

    ``dropped`` counts forgotten items, so ``dropped + index`` is a stable id for a row
    (line caches key on it); ``version`` changes whenever rows are dropped.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[T] = []
        self.dropped = 0
        self.version = 0

    def append(self, item: T) -> None:
        self.items.append(item)
        if len(self.items) > self.cap + max(1, self.cap // 4):
            cut = len(self.items) - self.cap
            del self.items[:cut]
            self.dropped += cut
            self.version += 1

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> T:
        return self.items[i]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)


@dataclass
class ChallengeRow:
    """One challenge, as a validator judged it (result) or as a miner answered it (served)."""

    ts: float
    source: str  # the node that reported it
    peer_hotkey: str  # the miner (validator view) or the validator (miner view)
    uid: Optional[int]
    plots: int
    returned: int
    expected: Optional[float]
    result: str  # pass | fail | timeout | unreachable | served
    latency_ms: float
    detail: str = ""
    window: int = -1
    chunks_asked: int = 0  # chunks of certified client shards sampled in the window
    chunks_right: int = 0
    client_bytes: float = 0.0  # of the round's proven bytes, what client shards added


@dataclass
class PeerStats:
    key: str
    uid: Optional[int] = None
    n: int = 0
    passed: int = 0
    latency_total: float = 0.0
    last_result: str = ""
    last_ts: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_PER_PEER))  # (returned, expected)
    chunks_asked: int = 0  # chunks of certified client shards sampled in its windows
    chunks_right: int = 0

    @property
    def chunk_rate(self) -> Optional[float]:
        return self.chunks_right / self.chunks_asked if self.chunks_asked else None

    @property
    def pass_rate(self) -> Optional[float]:
        return self.passed / self.n if self.n else None

    @property
    def mean_latency_ms(self) -> Optional[float]:
        return self.latency_total / self.n if self.n else None

    @property
    def proven_ratio(self) -> Optional[float]:
        """Proofs returned over proofs expected in the last challenges (capped at 1)."""
        expected = sum(e for _, e in self.recent if e)
        if not expected:
            return None
        return min(1.0, sum(r for r, _ in self.recent) / expected)


@dataclass
class DiskLive:
    """A miner's allocation as its events tell it (no file reads)."""

    plan: Optional[PlanReady] = None
    running: dict[str, PlotProgress] = field(default_factory=dict)
    done: int = 0
    total: int = 0
    verified: int = 0
    rate_per_hour: float = 0.0
    eta_s: Optional[float] = None
    finished: Optional[AllocationDone] = None
    removed: int = 0
    updated: float = 0.0

    @property
    def plotting(self) -> bool:
        return bool(self.running)


class ConsoleState:
    def __init__(self, log_cap: int = 20_000, challenge_cap: int = 20_000) -> None:
        self.logs: RollingList[Event] = RollingList(log_cap)
        self.results: RollingList[ChallengeRow] = RollingList(challenge_cap)
        self.served: RollingList[ChallengeRow] = RollingList(challenge_cap)
        self.peers: dict[str, PeerStats] = {}  # miner hotkey -> stats (validators' verdicts)
        self.served_peers: dict[str, PeerStats] = {}  # validator hotkey -> stats (what we answered)
        self.pass_series: deque[float] = deque(maxlen=SERIES_POINTS)
        self.latency_series: deque[float] = deque(maxlen=SERIES_POINTS)
        self._recent_results: deque[int] = deque(maxlen=PASS_WINDOW)
        self.disks: dict[str, DiskLive] = {}
        self.weights: dict[str, WeightsSet] = {}
        self.weights_failed: dict[str, WeightsSet] = {}
        self.nodes: dict[str, NodeState] = {}
        self.jobs_ran: dict[tuple[str, str], JobRan] = {}
        self.sources: dict[str, int] = {}
        self.errors = 0
        self.events = 0
        self.names: dict[str, str] = {}  # hotkey -> node name (devnet)
        self.transfers: dict[str, ClientTransfer] = {}  # this console's stores and retrieves, by transfer id

    # -- folding events --------------------------------------------------------------------
    def ingest(self, events: Iterable[Event]) -> set[str]:
        topics: set[str] = set()
        for event in events:
            self.events += 1
            self.sources[event.source] = self.sources.get(event.source, 0) + 1
            self._log(event)
            topics.add("logs")
            if isinstance(event, ChallengeResult):
                self._result(event)
                topics.update(("challenges", "weights"))
            elif isinstance(event, ChallengeServed):
                self._served(event)
                topics.add("challenges")
            elif isinstance(event, ClientTransfer):
                self._transfer(event)
                topics.add("transfers")
                if event.state != "running":
                    topics.add("objects")  # the gateway's listing changed (or may have)
            elif isinstance(event, (ObjectEvent, ShardLost, ShardRepaired)):
                topics.add("objects")
            elif isinstance(event, ShardEvent):
                topics.add("shards")
            elif isinstance(event, (PlanReady, PlotProgress, PlotDone, PlotVerified, PlotRemoved, AllocationDone)):
                self._disk(event)
                topics.add("disk")
                if not isinstance(event, PlotProgress):
                    topics.add("disk_files")  # the plot index changed: worth re-reading
            elif isinstance(event, (DiskLost, DiskReturned)):
                topics.update(("disk", "disk_files"))  # a disk's plots left or rejoined the listing
            elif isinstance(event, WeightsSet):
                (self.weights if event.ok else self.weights_failed)[event.source] = event
                topics.update(("weights", "chain"))
            elif isinstance(event, JobRan):
                self.jobs_ran[(event.source, event.job_id)] = event
                topics.add("jobs")
                if event.job_id in CHAIN_JOBS:
                    topics.add("chain")
                if event.job_id in ("proof_round", "set_weights"):
                    topics.add("weights")
            elif isinstance(event, NodeState):
                self.nodes[event.node] = event
                topics.update(("nodes", "jobs", "chain", "disk", "disk_files"))
            if isinstance(event, ErrorEvent) or level_of(event) == "error":
                self.errors += 1
                topics.add("errors")
        return topics

    def _log(self, event: Event) -> None:
        self.logs.append(event)

    def _result(self, e: ChallengeResult) -> None:
        row = ChallengeRow(ts=e.ts, source=e.source or e.validator[:8], peer_hotkey=e.miner_hotkey, uid=e.miner_uid,
                           plots=e.plots, returned=e.proofs_returned, expected=e.proofs_expected, result=e.result,
                           latency_ms=e.latency_ms, detail=e.detail, window=e.window, chunks_asked=e.chunks_asked,
                           chunks_right=e.chunks_right, client_bytes=e.client_bytes)
        self.results.append(row)
        peer = self.peers.get(e.miner_hotkey) or self.peers.setdefault(e.miner_hotkey, PeerStats(key=e.miner_hotkey))
        self._count(peer, row)
        peer.chunks_asked += e.chunks_asked
        peer.chunks_right += e.chunks_right
        self._recent_results.append(1 if e.result == "pass" else 0)
        self.pass_series.append(sum(self._recent_results) / len(self._recent_results))
        self.latency_series.append(e.latency_ms)

    def _transfer(self, e: ClientTransfer) -> None:
        self.transfers[e.transfer] = e
        finished = [k for k, t in self.transfers.items() if t.state != "running"]
        for key in finished[:-FINISHED_TRANSFERS]:
            del self.transfers[key]

    def _served(self, e: ChallengeServed) -> None:
        row = ChallengeRow(ts=e.ts, source=e.source, peer_hotkey=e.validator_hotkey, uid=None, plots=e.plots,
                           returned=e.proofs, expected=None, result="served", latency_ms=e.latency_ms)
        self.served.append(row)
        key = e.validator_hotkey
        peer = self.served_peers.get(key) or self.served_peers.setdefault(key, PeerStats(key=key))
        self._count(peer, row)

    @staticmethod
    def _count(peer: PeerStats, row: ChallengeRow) -> None:
        peer.uid = row.uid if row.uid is not None else peer.uid
        peer.n += 1
        peer.passed += row.result in ("pass", "served")
        peer.latency_total += row.latency_ms
        peer.last_result, peer.last_ts = row.result, row.ts
        peer.recent.append((row.returned, row.expected or 0.0))

    def _disk(self, e: Event) -> None:
        d = self.disks.get(e.source) or self.disks.setdefault(e.source, DiskLive())
        d.updated = e.ts
        if isinstance(e, PlanReady):
            d.plan = e
            d.total = len(e.plots)
            d.finished = None if e.to_make else d.finished
        elif isinstance(e, PlotProgress):
            d.running[e.seed] = e
            d.done, d.total, d.rate_per_hour, d.eta_s = e.done, e.total, e.rate_per_hour, e.eta_s
        elif isinstance(e, PlotDone):
            d.running.pop(e.seed, None)
            d.done, d.total = e.done, e.total
        elif isinstance(e, PlotVerified):
            d.verified += 1 if e.ok else 0
        elif isinstance(e, PlotRemoved):
            d.running.pop(e.seed, None)
            d.removed += 1
        elif isinstance(e, AllocationDone):
            d.finished = e
            d.running.clear()
            d.eta_s = None
            d.done = e.plots

    # -- reading ------------------------------------------------------------------------------
    def name(self, hotkey: Optional[str], uid: Optional[int] = None) -> str:
        if hotkey and hotkey in self.names:
            return self.names[hotkey]
        if hotkey:
            return hotkey[:8] + "…"
        return f"uid {uid}" if uid is not None else "-"

