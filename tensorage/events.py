"""Typed events and the in-process bus engines publish on.

Engines never print or draw: they publish events. The console turns them into
Textual messages, the headless runner logs them with rich, and a child node
relays them to its supervisor as JSON lines (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar, Optional

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type["Event"]] = {}


@dataclass(kw_only=True)
class Event:
    """Base event: who published it and when."""

    source: str = ""
    ts: float = field(default_factory=time.time)
    level: ClassVar[str] = "info"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def summary(self) -> str:
        """One line for logs; subclasses say it better."""
        body = {k: v for k, v in asdict(self).items() if k not in ("source", "ts")}
        return f"{type(self).__name__} {body}"

    def to_json(self) -> str:
        return json.dumps({"type": type(self).__name__, **asdict(self)}, separators=(",", ":"))

    @staticmethod
    def from_json(line: str) -> Optional["Event"]:
        """Parse a relayed event; None for lines that are not events."""
        try:
            data = json.loads(line)
            cls = _REGISTRY[data.pop("type")]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None


@dataclass(kw_only=True)
class LogEvent(Event):
    message: str
    severity: str = "info"  # debug | info | warning | error

    def summary(self) -> str:
        return self.message


@dataclass(kw_only=True)
class ErrorEvent(Event):
    message: str
    traceback: str = ""  # a job's crash: the headless log shows it once, with the message (logs.py)
    level: ClassVar[str] = "error"

    def summary(self) -> str:
        return self.message


@dataclass(kw_only=True)
class PlanReady(Event):
    size_bytes: int
    plot_bytes: int
    reserve_bytes: int
    temp_bytes: int
    free_bytes: int
    plots: list[int]  # k of each planned plot, in plotting order
    to_make: int
    to_remove: int
    disk: str = ""  # the --db_root_path disk planned, when a miner has several

    def summary(self) -> str:
        ks = ", ".join(f"{self.plots.count(k)}×k{k}" for k in sorted(set(self.plots), reverse=True)) or "none"
        where = f" of {self.disk}" if self.disk else ""
        return (f"partition{where}: plots {self.plot_bytes / 1e9:.2f} GB ({ks}), reserve "
                f"{self.reserve_bytes / 1e9:.2f} GB, {self.to_make} to make, {self.to_remove} to remove")


@dataclass(kw_only=True)
class PlotProgress(Event):
    seed: str
    k: int
    fraction: float
    done: int
    total: int
    rate_per_hour: float
    eta_s: Optional[float]
    level: ClassVar[str] = "debug"

    def summary(self) -> str:
        eta = f", ETA {self.eta_s:.0f}s" if self.eta_s is not None else ""
        return f"plot k{self.k} {self.seed[:8]} {self.fraction:.0%} ({self.done}/{self.total} done{eta})"


@dataclass(kw_only=True)
class PlotDone(Event):
    seed: str
    k: int
    bytes: int
    seconds: float
    done: int
    total: int

    def summary(self) -> str:
        return f"plotted k{self.k} {self.seed[:8]} {self.bytes / 1e6:.1f} MB in {self.seconds:.1f}s ({self.done}/{self.total})"


@dataclass(kw_only=True)
class PlotVerified(Event):
    seed: str
    k: int
    proofs: int
    expected: float
    ok: bool

    def summary(self) -> str:
        state = "verified" if self.ok else "FAILED verification"
        return f"plot k{self.k} {self.seed[:8]} {state}: {self.proofs} proofs (≈{self.expected:.1f} expected)"


@dataclass(kw_only=True)
class PlotRemoved(Event):
    seed: str
    k: int
    reason: str

    def summary(self) -> str:
        return f"removed plot k{self.k} {self.seed[:8]}: {self.reason}"


@dataclass(kw_only=True)
class DiskLost(Event):
    """A --db_root_path disk went away or fails to read: its plots left the listing."""

    path: str
    reason: str
    level: ClassVar[str] = "error"

    def summary(self) -> str:
        return f"disk {self.path} lost, its plots leave the listing: {self.reason}"


@dataclass(kw_only=True)
class DiskReturned(Event):
    """A lost disk reads again and its plots checked out: they are listed again."""

    path: str
    plots: int
    dropped: int = 0

    def summary(self) -> str:
        dropped = f" ({self.dropped} that failed the check dropped)" if self.dropped else ""
        return f"disk {self.path} back: {self.plots} plots listed again{dropped}"


@dataclass(kw_only=True)
class AllocationDone(Event):
    plots: int
    verified: int
    plot_bytes: int
    seconds: float
    disk: str = ""  # the --db_root_path disk allocated, when a miner has several
    failed: int = 0       # plots of this run that failed (a full disk, a plotter crash): the share is short
    last_error: str = ""  # why the last of them failed

    def summary(self) -> str:
        where = f" on {self.disk}" if self.disk else ""
        short = f"; {self.failed} plots failed, last: {self.last_error}" if self.failed else ""
        return (f"allocation complete{where}: {self.plots} plots ({self.verified} verified), "
                f"{self.plot_bytes / 1e9:.2f} GB in {self.seconds:.1f}s{short}")


@dataclass(kw_only=True)
class ChallengeResult(Event):
    validator: str
    miner_uid: int
    miner_hotkey: str
    plots: int
    proofs_returned: int
    proofs_expected: float
    result: str  # pass | fail | timeout | unreachable
    latency_ms: float
    detail: str = ""
    window: int = -1
    credit_bytes: float = 0.0  # what this window proved: plot bytes held, plus certified client credit
    chunks_asked: int = 0      # chunks of certified client shards sampled in the same window
    chunks_right: int = 0
    client_bytes: float = 0.0  # of credit_bytes, what certified client shards added (weighted, proofs/windows.py)

    @property
    def level(self) -> str:  # type: ignore[override]
        return "info" if self.result == "pass" else "warning"

    def summary(self) -> str:
        chunks = (f", {self.chunks_right}/{self.chunks_asked} shard chunks right" if self.chunks_asked else "")
        return (f"uid {self.miner_uid} {self.result}: {self.proofs_returned}/{self.proofs_expected:.1f} proofs over "
                f"{self.plots} plots in {self.latency_ms:.0f} ms, {self.credit_bytes / 1e6:.1f} MB proven{chunks} "
                f"(window {self.window}){' — ' + self.detail if self.detail else ''}")


@dataclass(kw_only=True)
class WindowJudged(Event):
    """A validator recorded a window's verdicts (or voided it): the one line a window gets in a
    headless log, whatever the number of miners."""

    window: int
    miners: int = 0
    results: dict[str, int] = field(default_factory=dict)  # pass | fail | timeout | unreachable -> miners
    seconds: float = 0.0  # asking every miner and checking their answers
    void: bool = False  # its beacon block was reorganised away: it counts for nobody
    detail: str = ""

    @property
    def passed(self) -> int:
        return self.results.get("pass", 0)

    @property
    def failed(self) -> int:
        return self.miners - self.passed

    def summary(self) -> str:
        if self.void:
            return f"window {self.window} void: {self.detail}" if self.detail else f"window {self.window} void"
        how = ", ".join(f"{n} {r}" for r, n in sorted(self.results.items()) if r not in ("pass", "fail") and n)
        return (f"window {self.window}: {self.miners} miners judged, {self.passed} passed, {self.failed} failed"
                f"{f' ({how})' if how else ''} in {self.seconds:.2f}s{'; ' + self.detail if self.detail else ''}")


@dataclass(kw_only=True)
class ChallengeServed(Event):
    validator_hotkey: str
    plots: int
    proofs: int
    latency_ms: float
    window: int = -1
    cached: bool = False  # answered with the window's answer already looked up for another validator

    def summary(self) -> str:
        how = "shared answer" if self.cached else "looked up"
        return (f"answered {self.validator_hotkey[:8]}: {self.proofs} proofs over {self.plots} plots in "
                f"{self.latency_ms:.0f} ms (window {self.window}, {how})")


@dataclass(kw_only=True)
class WeightsSet(Event):
    block: int
    weights: dict[str, float]  # uid (as str, JSON keys) -> weight
    ok: bool = True
    message: str = ""

    def summary(self) -> str:
        if not self.ok:
            return f"setting weights failed: {self.message}"
        top = sorted(self.weights.items(), key=lambda kv: -kv[1])[:4]
        return f"weights set at block {self.block}: " + ", ".join(f"uid {u}={w:.3f}" for u, w in top)


@dataclass(kw_only=True)
class JobRan(Event):
    job_id: str
    ok: bool
    duration_s: float
    result: str = ""
    level: ClassVar[str] = "debug"

    def summary(self) -> str:
        return f"job {self.job_id} {'ok' if self.ok else 'failed'} in {self.duration_s:.2f}s {self.result}"


@dataclass(kw_only=True)
class NodeState(Event):
    """A supervised node's process state (devnet runner)."""

    node: str
    state: str  # starting | running | exited | restarting | stopped
    pid: Optional[int] = None
    detail: str = ""

    def summary(self) -> str:
        return f"{self.node}: {self.state}{' (pid %d)' % self.pid if self.pid else ''} {self.detail}".rstrip()


# --- client data (docs/design.md#client-data) ------------------------------------------------------------------


@dataclass(kw_only=True)
class ObjectEvent(Event):
    """A gateway stored, served, deleted or failed a client's object."""

    action: str  # stored | retrieved | deleted | failed | damaged
    object_id: str
    client: str
    bytes: int = 0
    seconds: float = 0.0
    detail: str = ""

    @property
    def level(self) -> str:  # type: ignore[override]
        return "warning" if self.action in ("failed", "damaged") else "info"

    def summary(self) -> str:
        rate = f" ({self.bytes / self.seconds / 1e6:.1f} MB/s)" if self.seconds > 0 and self.bytes else ""
        return (f"object {self.object_id[:12]} {self.action} for {self.client[:8]}: {self.bytes / 1e6:.2f} MB"
                f"{rate}{' — ' + self.detail if self.detail else ''}")


@dataclass(kw_only=True)
class ShardLost(Event):
    object_id: str
    segment: int
    index: int
    miner_hotkey: str
    reason: str
    level: ClassVar[str] = "warning"

    def summary(self) -> str:
        return (f"shard {self.index} of object {self.object_id[:12]} segment {self.segment} lost on "
                f"{self.miner_hotkey[:8]}: {self.reason}")


@dataclass(kw_only=True)
class ShardRepaired(Event):
    object_id: str
    segment: int
    indices: list[int]
    miners: list[str]
    seconds: float

    def summary(self) -> str:
        return (f"repaired shards {self.indices} of object {self.object_id[:12]} segment {self.segment} onto "
                f"{', '.join(m[:8] for m in self.miners)} in {self.seconds:.2f}s")


@dataclass(kw_only=True)
class ShardEvent(Event):
    """A miner stored, deleted, refused or scrubbed a shard."""

    action: str  # stored | deleted | refused | scrubbed
    validator_hotkey: str
    shard: str
    bytes: int = 0
    detail: str = ""
    level: ClassVar[str] = "debug"

    def summary(self) -> str:
        return (f"shard {self.shard[:12]} {self.action} for {self.validator_hotkey[:8]} ({self.bytes} bytes)"
                f"{' — ' + self.detail if self.detail else ''}")


@dataclass(kw_only=True)
class ClientTransfer(Event):
    """A client's store or retrieve through a gateway, as it goes (``client.session``): one event
    when it starts, a few while bytes move (throttled), one when it ends."""

    transfer: str          # this operation's id, unique in the publishing process
    op: str                # store | retrieve
    name: str              # the file's name (store) or the output path (retrieve)
    state: str = "running"  # running | done | failed
    done: int = 0          # plaintext bytes read (store) or written (retrieve)
    total: Optional[int] = None
    object_id: str = ""
    path: str = ""         # the local file
    seconds: float = 0.0
    detail: str = ""       # what went wrong, or what was checked

    @property
    def level(self) -> str:  # type: ignore[override]
        return {"running": "debug", "done": "info"}.get(self.state, "error")

    def summary(self) -> str:
        what = f"{self.op} {self.name}"
        if self.state == "failed":
            return f"{what} failed: {self.detail}"
        size = f"{self.done / 1e6:.2f}" + (f" of {self.total / 1e6:.2f}" if self.total is not None else "") + " MB"
        if self.state == "done":
            oid = f" as {self.object_id}" if self.object_id else ""
            return f"{what} done{oid}: {size} in {self.seconds:.1f}s{' — ' + self.detail if self.detail else ''}"
        return f"{what}: {size}"


Subscriber = Callable[[Event], None]


class EventBus:
    """Thread-safe fan-out with a bounded history for late subscribers (the console)."""

    def __init__(self, history: int = 2000) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.history: deque[Event] = deque(maxlen=history)

    def subscribe(self, callback: Subscriber, replay: bool = False) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)
            past = list(self.history) if replay else []
        for event in past:
            callback(event)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            self.history.append(event)
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop an engine
                log.exception("event subscriber failed on %s", type(event).__name__)

    def log(self, message: str, severity: str = "info", source: str = "") -> None:
        self.publish(LogEvent(message=message, severity=severity, source=source))
