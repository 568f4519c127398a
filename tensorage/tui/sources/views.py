"""Plain data the screens render, built by the sources from engine snapshots, files and the chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ...engines.snapshot import AnySnapshot, MinerSnapshot, ValidatorSnapshot
from ...errors import TensorageError
from ...scheduler import JobInfo
from ...storage.layout import Layout, device_space


@dataclass(frozen=True)
class Capabilities:
    """What a source offers, so screens ask "can it?" instead of "which mode is this?"."""

    allocate: bool = False  # the wizard can allocate a share
    adds_miners: bool = False  # allocating adds a new miner (the devnet) instead of resizing this one
    allocate_label: str = "Allocate / reallocate the disk share"
    node_processes: bool = False  # supervises node processes: show them
    node_files: bool = False  # reads node snapshots from their state files
    answers_challenges: bool = False  # a miner: the challenges it answered (verdicts stay with validators)
    judges: bool = False  # validators' scores and weights are here
    many_validators: bool = False  # one weight column per validator (the devnet)
    secure: bool = True  # a network where proofs mean something (not the devnet)
    client_data: bool = False  # a client wallet and a gateway: store, list, retrieve and remove objects


@dataclass
class Identity:
    kind: str  # devnet | miner | validator | node (attached, before the node answered)
    roles: str
    network: str
    netuid: Optional[int]
    secure: bool
    wallet: str
    hotkey: Optional[str] = None
    db_root: Optional[str] = None
    devnet_root: Optional[str] = None
    link: str = ""  # attached: where the node is, or that it is being looked for


@dataclass
class JobRow:
    source: str  # the engine the job runs in: "devnet" or a node's name
    info: JobInfo

    @property
    def key(self) -> str:
        return f"{self.source}/{self.info.id}"


@dataclass
class NodeRow:
    """A node process as the Overview and Jobs screens list it."""

    node: str
    role: str
    state: str
    pid: Optional[int] = None
    restarts: int = 0
    log: str = ""
    db_root_path: str = ""


@dataclass
class MinerRef:
    name: str
    db_root: Path
    size_in_gb: float


@dataclass
class DiskInfo:
    """A miner's disk read from its database root (blocking read, done in a thread)."""

    name: str
    db_root: str
    size_bytes: int
    planned: int = 0
    done: int = 0
    verified: int = 0
    plot_bytes: int = 0
    by_k: dict[str, int] = field(default_factory=dict)
    device_total: int = 0
    device_free: int = 0
    error: str = ""


@dataclass
class PathCheck:
    path: Path
    device_total: int
    device_free: int
    max_share: int
    min_share: int


@dataclass
class WeightRow:
    """One miner on the Weights screen."""

    uid: int
    hotkey: str
    name: str
    ratio: dict[str, Optional[float]] = field(default_factory=dict)  # validator -> proven ratio
    score: dict[str, Optional[float]] = field(default_factory=dict)  # validator -> score
    weight: dict[str, Optional[float]] = field(default_factory=dict)  # validator -> last weight set
    incentive: Optional[float] = None
    consensus: Optional[float] = None
    emission: Optional[float] = None


def disk_live_of(source: str, snap: Optional[AnySnapshot]) -> dict[str, Any]:
    """A miner's allocator status, from its snapshot, as the Disk screen reads it."""
    if not isinstance(snap, MinerSnapshot):
        return {}
    return {source: {**snap.allocator.model_dump(), "served": snap.challenges_served, "plots_held": snap.plots_held,
                     "snapshot": snap}}


def weight_rows_of(snap: Optional[AnySnapshot], source: str, metagraph) -> list[WeightRow]:
    """A validator's scores and last weights, or a miner's view of the chain, from a snapshot."""
    if isinstance(snap, ValidatorSnapshot):
        by_uid = {n.uid: n for n in metagraph.neurons} if metagraph else {}
        rows = []
        for hotkey, m in sorted(snap.miners.items(), key=lambda kv: kv[1].uid):
            n = by_uid.get(m.uid)
            rows.append(WeightRow(uid=m.uid, hotkey=hotkey, name="", ratio={source: m.ratio},
                                  score={source: m.score}, weight={source: snap.last_weights.get(str(m.uid))},
                                  incentive=n.incentive if n else None, consensus=n.consensus if n else None,
                                  emission=n.emission if n else None))
        return rows
    if metagraph is None:
        return []
    me = snap.hotkey if snap is not None else None
    return [WeightRow(uid=n.uid, hotkey=n.hotkey, name="this miner" if n.hotkey == me else "",
                      incentive=n.incentive, consensus=n.consensus, emission=n.emission)
            for n in metagraph.neurons if not n.validator_permit]


def jobs_of(source: str, snap: Optional[AnySnapshot]) -> list[JobRow]:
    return [JobRow(source, j.info()) for j in snap.jobs] if snap is not None else []


def read_disk(name: str, db_root: Path, size_bytes: int) -> DiskInfo:
    """Blocking: the plot index and device space of one miner."""
    from ...status import plots_status

    info = DiskInfo(name=name, db_root=str(db_root), size_bytes=size_bytes)
    layout = Layout(db_root)
    try:
        p = plots_status(layout)
        info.planned, info.done, info.verified = p["planned"], p["done"], p["verified"]
        info.plot_bytes, info.by_k = p["bytes"], p["by_k"]
    except TensorageError as exc:
        info.error = str(exc)
    except Exception as exc:  # a half-created index while the node starts: show it, try again later
        info.error = f"{type(exc).__name__}: {exc}"
    try:
        dev = device_space(db_root)
        info.device_total, info.device_free = dev.total, dev.free
    except OSError as exc:
        info.error = info.error or f"cannot read free space: {exc}"
    return info
