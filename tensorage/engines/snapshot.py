"""A running node's state as one typed schema: what it writes to ``index/node.json``, answers on
``GET /v1/state``, and what ``status``, the console and the devnet supervisor read back.

Readers validate on read (:func:`parse_snapshot`), so nothing downstream indexes dicts by key.
Unknown fields are ignored, so an older reader still reads a newer node. The role-specific parts
are small models: a validator's (:class:`ValidatorSnapshot`) changes with the proof protocol, so
its per-miner entry keeps extra fields (``extra="allow"``) and grows by adding them here.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from ..scheduler import JobInfo
from ..storage.layout import Layout
from ..storage.share import ShareState

NODE_STATE_FILE = "node.json"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class JobState(_Lenient):
    """One scheduled job (mirrors :class:`~tensorage.scheduler.JobInfo`)."""

    id: str
    seconds: float
    next_run: Optional[float] = None
    paused: bool = False
    runs: int = 0
    last_ok: Optional[bool] = None
    last_result: str = ""
    last_duration_s: Optional[float] = None
    last_run_at: Optional[float] = None
    running: bool = False
    chain_failures: int = 0  # runs in a row that failed on the chain: backing off while > 0
    retry_at: Optional[float] = None
    failures: int = 0  # runs that failed since the node started
    last_ok_at: Optional[float] = None

    def info(self) -> JobInfo:
        return JobInfo(**self.model_dump())


class AllocatorState(_Lenient):
    planned: int = 0
    done: int = 0
    verified: int = 0
    plot_bytes: int = 0
    rate_per_hour: float = 0.0
    eta_s: Optional[float] = None
    busy: bool = False
    last_error: str = ""
    running: dict[str, tuple[int, float]] = {}  # seed -> (k, fraction done)


class ChainHealthState(_Lenient):
    """Is the node's chain answering (mirrors :class:`~tensorage.chain.health.ChainHealthView`)."""

    state: Literal["unknown", "ok", "unreachable"] = "unknown"
    since: Optional[float] = None
    last_ok_at: Optional[float] = None
    last_error: str = ""
    last_error_at: Optional[float] = None
    failures: int = 0
    recoveries: int = 0
    next_retry: Optional[float] = None  # the soonest retry of a job backing off


class DiskState(_Lenient):
    """One --db_root_path disk of a miner (engines/disks.py)."""

    path: str
    home: bool = False  # the first: it also keeps indexes, keys, shards and node.json
    state: Literal["ok", "lost"] = "ok"
    reason: str = ""  # why it is lost
    since: Optional[float] = None
    share_bytes: int = 0  # its part of --size_in_gb
    device_total: int = 0
    device_free: int = 0
    plots: int = 0  # plots of it in the listing
    planned: int = 0
    plot_bytes: int = 0


class NodeSnapshot(_Lenient):
    role: str
    source: str
    state: Literal["starting", "running", "stopped"] = "running"
    hotkey: str
    uid: Optional[int] = None
    network: str
    netuid: Optional[int] = None
    wallet: str = ""
    db_root_path: str
    size_in_gb: Optional[float] = None
    pid: int
    protocol: int
    endpoint: Optional[str] = None  # how a process on this machine reaches it (host:port)
    published: Optional[str] = None  # what it published on chain for validators
    metrics: Optional[str] = None  # host:port of its Prometheus metrics, when it serves them
    started_at: float
    updated_at: float
    jobs: list[JobState] = []
    chain: ChainHealthState = ChainHealthState()

    def summary(self) -> str:
        """One line on what the node is doing."""
        return f"{self.role} {self.state}"


class ShardCount(_Lenient):
    shards: int = 0
    bytes: int = 0


class MinerSnapshot(NodeSnapshot):
    role: Literal["miner"] = "miner"
    plots_held: int = 0
    challenges_served: int = 0
    allocating: bool = False
    eta_s: Optional[float] = None
    allocator: AllocatorState = AllocatorState()
    share: Optional[ShareState] = None
    disks: list[DiskState] = []  # one per --db_root_path directory, the home first
    # client shards (storage/shards.py): they count against the share together with the plots
    shards: int = 0
    shard_bytes: int = 0
    shard_free_bytes: int = 0  # room for new shards without removing plots
    shards_by_validator: dict[str, ShardCount] = {}  # placing validator's hotkey -> its shards here
    shards_certified: int = 0  # shards whose certificate the listing carries (they count in windows)
    checks_answered: int = 0   # gateways' re-checks of suspect shards answered

    def summary(self) -> str:
        busy = " · allocating" if self.allocating else ""
        lost = sum(d.state == "lost" for d in self.disks)
        busy += f" · {lost} disk(s) lost" if lost else ""
        shards = f" · {self.shards} client shards ({self.shard_bytes / 1e6:.1f} MB)" if self.shards else ""
        return f"{self.plots_held} plots held{shards} · {self.challenges_served} challenges answered{busy}"


class ScoredMiner(BaseModel):
    """What a validator keeps on one miner; the proof protocol adds fields here."""

    model_config = ConfigDict(extra="allow")

    uid: int
    ratio: Optional[float] = None
    proven_bytes: float = 0.0
    client_bytes: float = 0.0  # certified client credit per window (weighted, before the stake bound)
    score: float = 0.0
    latency_ms: Optional[float] = None
    windows: float = 0.0  # windows of evidence, decayed
    last_window: Optional[int] = None


class ValidatorSnapshot(NodeSnapshot):
    role: Literal["validator"] = "validator"
    rounds_run: int = 0
    last_window: Optional[int] = None
    windows_void: int = 0  # windows whose beacon block a fork replaced: they count for nobody
    last_verdict: dict[str, Any] = {}  # {"window", "summary"} of the newest window recorded
    last_weights_block: Optional[int] = None
    last_weights: dict[str, float] = {}  # uid (JSON key) -> weight last set
    miners_synced: int = 0
    gateway_factors: dict[str, float] = {}  # gateway hotkey -> the share of its certified credit that counts
    miners: dict[str, ScoredMiner] = {}  # miner hotkey -> score

    def summary(self) -> str:
        block = self.last_weights_block
        weights = f"set at block {block}" if block is not None else "not set yet"
        return f"{self.rounds_run} proof rounds · {self.miners_synced} miners synced · weights {weights}"


AnySnapshot = Union[MinerSnapshot, ValidatorSnapshot, NodeSnapshot]
_BY_ROLE: dict[str, type[NodeSnapshot]] = {"miner": MinerSnapshot, "validator": ValidatorSnapshot}


class SnapshotError(ValueError):
    """A snapshot that does not follow the schema (a bug in a node, or a damaged file)."""


def parse_snapshot(data: Union[dict, str, bytes]) -> AnySnapshot:
    """Validate a snapshot (a dict, or JSON text) into the model of its role."""
    try:
        raw = json.loads(data) if isinstance(data, (str, bytes)) else dict(data)
        cls = _BY_ROLE.get(str(raw.get("role")), NodeSnapshot)
        return cls.model_validate(raw)
    except (ValidationError, ValueError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"not a node snapshot: {exc}") from None


def read_snapshot(layout: Layout) -> Optional[AnySnapshot]:
    """The state file a node left in its root, or None when there is none (or it is unreadable)."""
    try:
        return parse_snapshot((layout.index / NODE_STATE_FILE).read_bytes())
    except (OSError, SnapshotError):
        return None
