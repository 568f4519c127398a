"""The engines the console drives, behind one small interface the screens use.

* :class:`DevnetBackend` wraps a :class:`~tensorage.engines.devnet.DevnetSupervisor` (a whole
  local subnet: chain clock in this process, miners and validators as child processes whose
  events are relayed onto the bus).
* :class:`NodeBackend` wraps one in-process :class:`MinerEngine` or :class:`ValidatorEngine`.

Methods marked *blocking* read files or the chain: the app calls them from thread workers.
Everything else is a plain engine call on the event loop. No business logic lives here:
plans come from the allocator and planner, checks from :class:`Layout`, state from engines.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import GB, NetworkProfile, Settings
from ..errors import ConfigError, DiskError, NotEnoughSpace, TensorageError
from ..events import EventBus
from ..scheduler import JobInfo, Jobs
from ..storage.layout import Layout, device_space
from ..storage.partition import PartitionPlan, max_share_bytes, min_share_bytes, plan_partition
from .format import size as fmt_size

MAX_WORKERS = 256


@dataclass
class Identity:
    kind: str  # devnet | miner | validator
    roles: str
    network: str
    netuid: Optional[int]
    secure: bool
    wallet: str
    hotkey: Optional[str] = None
    db_root: Optional[str] = None
    devnet_root: Optional[str] = None


@dataclass
class JobRow:
    source: str
    info: JobInfo
    controllable: bool

    @property
    def key(self) -> str:
        return f"{self.source}/{self.info.id}"


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


def summary_of(snap: dict[str, Any]) -> str:
    """One line on what a miner or validator is doing, from its snapshot."""
    if snap.get("role") == "miner":
        busy = " · allocating" if snap.get("allocating") else ""
        return f"{snap.get('plots_held', 0)} plots held · {snap.get('challenges_served', 0)} challenges answered{busy}"
    block = snap.get("last_weights_block")
    weights = f"set at block {block}" if block is not None else "not set yet"
    return (f"{snap.get('rounds_run', 0)} proof rounds · {snap.get('miners_synced', 0)} miners synced · "
            f"weights {weights}")


def disk_live_of(source: str, snap: dict[str, Any]) -> dict[str, Any]:
    """A miner's allocator status, from its snapshot, as the Disk screen reads it."""
    if snap.get("role") != "miner" or "allocator" not in snap:
        return {}
    return {source: {**snap["allocator"], "served": snap.get("challenges_served", 0),
                     "plots_held": snap.get("plots_held", 0)}}


def weight_rows_of(snap: dict[str, Any], source: str, metagraph) -> list[WeightRow]:
    """A validator's scores and last weights, or a miner's view of the chain, from a snapshot."""
    if snap.get("role") == "validator":
        by_uid = {n.uid: n for n in metagraph.neurons} if metagraph else {}
        weights = snap.get("last_weights", {})
        rows = []
        for hotkey, m in sorted(snap.get("miners", {}).items(), key=lambda kv: kv[1]["uid"]):
            n = by_uid.get(m["uid"])
            rows.append(WeightRow(uid=m["uid"], hotkey=hotkey, name="", ratio={source: m.get("ratio")},
                                  score={source: m.get("score")}, weight={source: weights.get(str(m["uid"]))},
                                  incentive=n.incentive if n else None, consensus=n.consensus if n else None,
                                  emission=n.emission if n else None))
        return rows
    if metagraph is None:
        return []
    return [WeightRow(uid=n.uid, hotkey=n.hotkey, name="this miner" if n.hotkey == snap.get("hotkey") else "",
                      incentive=n.incentive, consensus=n.consensus, emission=n.emission)
            for n in metagraph.neurons if not n.validator_permit]


def read_disk(name: str, db_root: Path, size_bytes: int) -> DiskInfo:
    """Blocking: the plot index and device space of one miner."""
    from ..status import plots_status

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


class Backend:
    """What every mode offers the screens."""

    kind = "node"
    can_allocate = False
    allocate_label = "Allocate"

    def __init__(self, settings: Settings, bus: EventBus, clock: Callable[[], float] = time.time,
                 cpus: Optional[int] = None) -> None:
        self.settings = settings
        self.bus = bus
        self.clock = clock
        self.cpus = cpus or os.cpu_count() or 1

    @property
    def profile(self) -> NetworkProfile:
        return self.settings.profile

    # lifecycle -------------------------------------------------------------------------------
    async def start(self) -> str:
        return ""

    async def stop(self) -> None:
        return None

    # reading ---------------------------------------------------------------------------------
    def identity(self) -> Identity:
        raise NotImplementedError

    def load_chain(self) -> tuple[Any, Optional[int], Optional[int]]:
        """Blocking: (metagraph or None, block, last epoch block)."""
        return None, None, None

    def summary(self) -> str:
        """One line on what the engine in this process is doing (role mode)."""
        return ""

    def load_names(self) -> dict[str, str]:
        """Blocking: hotkey -> node name (devnet)."""
        return {}

    def jobs(self) -> list[JobRow]:
        return []

    def nodes(self) -> list[dict]:
        return []

    def load_node_files(self) -> dict[str, dict]:
        """Blocking: node processes' state files (devnet)."""
        return {}

    def miners(self) -> list[MinerRef]:
        return []

    def load_disks(self) -> dict[str, DiskInfo]:
        """Blocking: every miner's plot index and device space."""
        return {m.name: read_disk(m.name, m.db_root, int(m.size_in_gb * GB)) for m in self.miners()}

    def disk_live(self) -> dict[str, Any]:
        """In-process allocator status, when there is one."""
        return {}

    def weight_rows(self, metagraph, weights_events: dict, snapshots: dict[str, dict]) -> list[WeightRow]:
        return []

    # commands --------------------------------------------------------------------------------
    def control(self, row: JobRow, action: str) -> str:
        if not row.controllable:
            raise ConfigError(f"{row.info.id} runs inside the {row.source} process: the console shows its jobs "
                              f"but can only run, pause or resume jobs of engines in this process")
        jobs = self._jobs_for(row.source)
        if jobs is None:
            raise ConfigError(f"no engine named {row.source} in this console")
        try:
            if action == "run":
                jobs.run_now(row.info.id)
                return f"{row.info.id}: running now"
            if action == "pause":
                jobs.pause(row.info.id)
                return f"{row.info.id}: paused"
            if action == "resume":
                jobs.resume(row.info.id)
                return f"{row.info.id}: resumed"
        except KeyError:
            raise ConfigError(f"job {row.info.id} is gone (the engine stopped or replaced it)") from None
        raise ConfigError(f"unknown job action {action}")

    def _jobs_for(self, source: str) -> Optional[Jobs]:
        return None

    # allocation wizard -----------------------------------------------------------------------
    def default_path(self) -> str:
        return str(self.settings.db_root)

    def default_workers(self) -> int:
        return self.settings.workers

    def check_path(self, text: str) -> PathCheck:
        """Blocking, read-only: can a share live there, and how large can it be?"""
        text = text.strip()
        if not text:
            raise ConfigError("enter a directory for the plots, e.g. ~/tensorage-db")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = path.absolute()
        layout = Layout(path)
        layout.check_writable_target()
        self._check_path_for_mode(path, layout)
        device = device_space(path)
        max_share = self._max_share(path, device)
        min_share = min_share_bytes(self.profile)
        if max_share < min_share:
            raise NotEnoughSpace(
                f"{path}: only {fmt_size(max(0, max_share))} can be given to tensorage there (free space minus "
                f"the safety margin); a k={self.profile.min_k} plot with its reserve needs {fmt_size(min_share)}: "
                f"free some space or choose another device")
        return PathCheck(path=path, device_total=device.total, device_free=device.free, max_share=max_share,
                         min_share=min_share)

    def _check_path_for_mode(self, path: Path, layout: Layout) -> None:
        return None

    def _max_share(self, path: Path, device) -> int:
        return max_share_bytes(device, 0)

    def plan(self, path: Path, size_bytes: int) -> PartitionPlan:
        """Blocking, read-only: the partition a share of ``size_bytes`` at ``path`` would get."""
        return plan_partition(size_bytes, device_space(path), self.profile)

    @staticmethod
    def parse_size(text: str) -> float:
        text = text.strip().lower().removesuffix("gb").strip()
        if not text:
            raise ConfigError("enter the share in GB, e.g. 100 (or 0.05 on the devnet)")
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{text!r} is not a number: give the share in GB, e.g. 100") from None
        if not value > 0 or value != value or value == float("inf"):
            raise ConfigError(f"the share must be more than 0 GB (got {text})")
        return value

    @staticmethod
    def parse_workers(text: str) -> int:
        text = text.strip()
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{text or 'nothing'!r} is not a whole number: give how many plots to build at once, "
                              f"e.g. {os.cpu_count() or 1}") from None
        if value < 1:
            raise ConfigError(f"{value} workers would never plot: use at least 1")
        if value > MAX_WORKERS:
            raise ConfigError(f"{value} workers is more than {MAX_WORKERS}: this machine has {os.cpu_count()} CPUs")
        return value

    async def allocate(self, path: Path, size_in_gb: float, workers: int) -> str:
        """Start the allocation; returns the event source whose progress to follow."""
        raise ConfigError("this console has no miner to allocate for: run it with --role miner or --network devnet")


# --- devnet ------------------------------------------------------------------------------------


class DevnetBackend(Backend):
    kind = "devnet"
    can_allocate = True
    allocate_label = "Add miner"

    def __init__(self, supervisor, clock: Callable[[], float] = time.time, cpus: Optional[int] = None) -> None:
        super().__init__(supervisor.settings, supervisor.bus, clock, cpus)
        self.supervisor = supervisor
        self.root: Path = supervisor.root
        self._reader = None  # our own chain connection when the supervisor has none yet
        self._spec = None  # the subnet spec as last read (before the supervisor has loaded it)
        self.names_dirty = True

    async def start(self) -> str:
        await self.supervisor.start()
        self.names_dirty = True
        spec = self.supervisor.spec
        n_v = len(spec.of_role("validator")) if spec else 0
        n_m = len(spec.of_role("miner")) if spec else 0
        return f"devnet at {self.root}: {n_v} validators, {n_m} miners"

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self._reader is not None:
            self._reader.close()

    def identity(self) -> Identity:
        spec = self.supervisor.spec
        if spec is not None:
            roles = f"devnet supervisor: {len(spec.of_role('validator'))} validators, {len(spec.of_role('miner'))} miners"
        else:
            roles = "devnet supervisor"
        return Identity(kind="devnet", roles=roles, network="devnet", netuid=self.settings.resolved_netuid,
                        secure=False, wallet=f"one wallet per node in {self.root / 'wallets'}",
                        devnet_root=str(self.root))

    def _chain(self):
        if self.supervisor.chain is not None:
            return self.supervisor.chain
        from ..chain.devnet import Devnet
        from ..chain.devnet_init import devnet_exists

        if self._reader is None and devnet_exists(self.root):
            self._reader = Devnet.open(self.root, self.settings.resolved_netuid)
        return self._reader

    def load_chain(self):
        chain = self._chain()
        if chain is None:
            return None, None, None
        try:
            return chain.metagraph(), chain.block(), chain.last_epoch_block()
        finally:
            chain.close()  # this worker thread's connection only

    def load_names(self) -> dict[str, str]:
        from ..chain.devnet import SubnetSpec

        try:
            spec = SubnetSpec.load(self.root)
        except TensorageError:
            return {}
        self._spec = spec
        self.names_dirty = False
        return spec.hotkey_names(self.root)

    def jobs(self) -> list[JobRow]:
        return [JobRow("devnet", j, True) for j in self.supervisor.jobs.state()]

    def node_jobs(self, snapshots: dict[str, dict]) -> list[JobRow]:
        rows = []
        for name, snap in sorted(snapshots.items()):
            for j in snap.get("jobs", []):
                try:
                    info = JobInfo(**{k: j.get(k) for k in JobInfo.__dataclass_fields__})
                except TypeError:
                    continue
                rows.append(JobRow(name, info, False))
        return rows

    def _jobs_for(self, source: str) -> Optional[Jobs]:
        return self.supervisor.jobs if source == "devnet" else None

    def nodes(self) -> list[dict]:
        return self.supervisor.state()

    def _spec_nodes(self):
        from ..chain.devnet import SubnetSpec

        spec = self.supervisor.spec or self._spec
        if spec is None:
            try:
                spec = self._spec = SubnetSpec.load(self.root)
            except TensorageError:
                return []
        return spec.nodes

    def validator_names(self) -> list[str]:
        return sorted(n.name for n in self._spec_nodes() if n.role == "validator")

    def _db_root(self, node) -> Path:
        return Path(node.db_root_path).expanduser() if node.db_root_path else self.root / "nodes" / node.name

    def load_node_files(self) -> dict[str, dict]:
        from ..engines.node import read_node_state

        out = {}
        for node in self._spec_nodes():
            snap = read_node_state(Layout(self._db_root(node)))
            if snap is not None:
                out[node.name] = snap
        return out

    def miners(self) -> list[MinerRef]:
        return [MinerRef(n.name, self._db_root(n), n.size_in_gb) for n in self._spec_nodes() if n.role == "miner"]

    def weight_rows(self, metagraph, weights_events: dict, snapshots: dict[str, dict]) -> list[WeightRow]:
        if metagraph is None:
            return []
        validators = sorted(n.name for n in self._spec_nodes() if n.role == "validator")
        rows = []
        for n in metagraph.neurons:
            if n.validator_permit:
                continue
            row = WeightRow(uid=n.uid, hotkey=n.hotkey, name="", incentive=n.incentive, consensus=n.consensus,
                            emission=n.emission)
            for v in validators:
                ev = weights_events.get(v)
                row.weight[v] = ev.weights.get(str(n.uid)) if ev is not None else None
                m = (snapshots.get(v) or {}).get("miners", {}).get(n.hotkey)
                row.ratio[v] = m.get("ratio") if m else None
                row.score[v] = m.get("score") if m else None
            rows.append(row)
        return rows

    # wizard ----------------------------------------------------------------------------------
    def next_miner_name(self) -> str:
        taken = {n.name for n in self._spec_nodes()}
        return next(f"miner-{i}" for i in range(len(taken) + 1) if f"miner-{i}" not in taken)

    def default_path(self) -> str:
        return str(self.root / "nodes" / self.next_miner_name())

    def default_workers(self) -> int:
        return min(self.settings.workers, self.cpus)

    def _check_path_for_mode(self, path: Path, layout: Layout) -> None:
        for node in self._spec_nodes():
            if self._db_root(node).resolve() == path.resolve():
                raise DiskError(f"{path} is {node.name}'s database root: choose a new directory for the new miner")
        if layout.exists():
            raise DiskError(f"{path} already holds a tensorage node (it has an index/ directory): "
                            f"choose a new directory for the new miner")

    async def allocate(self, path: Path, size_in_gb: float, workers: int) -> str:
        node = await self.supervisor.add_miner(size_in_gb, str(path), workers)
        self.names_dirty = True
        return node.name


# --- one node in this process ---------------------------------------------------------------


class NodeBackend(Backend):
    """A miner or validator engine running on the console's event loop."""

    def __init__(self, node, clock: Callable[[], float] = time.time, cpus: Optional[int] = None) -> None:
        super().__init__(node.settings, node.bus, clock, cpus)
        self.node = node
        # The miner's proof pool spawns processes through multiprocessing's resource tracker, which
        # hands sys.stderr's descriptor to its helper. While Textual runs, sys.stderr is a capture
        # object without one (fileno() == -1), so start the tracker now, with the real stderr.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        self.kind = node.role
        self.can_allocate = node.role == "miner"

    async def start(self) -> str:
        await self.node.launch()
        return f"{self.node.role} {self.node.hotkey} on {self.settings.network}"

    async def stop(self) -> None:
        await self.node.shutdown()

    def identity(self) -> Identity:
        s = self.node.settings
        return Identity(kind=self.node.role, roles=self.node.role, network=s.network, netuid=s.resolved_netuid,
                        secure=s.profile.secure, wallet=f"{s.wallet.name}/{s.wallet.hotkey}", hotkey=self.node.hotkey,
                        db_root=str(self.node.layout.root),
                        devnet_root=str(s.devnet_root) if s.network == "devnet" else None)

    def summary(self) -> str:
        return summary_of(self.node.snapshot())

    def load_chain(self):
        mg = self.node.metagraph  # kept fresh by the node's sync job: no chain call here
        return mg, (mg.block if mg else None), None

    def jobs(self) -> list[JobRow]:
        return [JobRow(self.node.source, j, True) for j in self.node.jobs.state()]

    def _jobs_for(self, source: str) -> Optional[Jobs]:
        return self.node.jobs if source == self.node.source else None

    def nodes(self) -> list[dict]:
        return [{"node": self.node.source, "role": self.node.role, "state": "running" if self.node.served else "starting",
                 "pid": os.getpid(), "restarts": 0, "log": "", "db_root_path": str(self.node.layout.root)}]

    def miners(self) -> list[MinerRef]:
        if self.node.role != "miner":
            return []
        return [MinerRef(self.node.source, self.node.layout.root, self.node.settings.size_in_gb)]

    def disk_live(self) -> dict[str, Any]:
        return disk_live_of(self.node.source, self.node.snapshot())

    def weight_rows(self, metagraph, weights_events: dict, snapshots: dict[str, dict]) -> list[WeightRow]:
        return weight_rows_of(self.node.snapshot(), self.node.source, metagraph)

    # wizard ----------------------------------------------------------------------------------
    def _check_path_for_mode(self, path: Path, layout: Layout) -> None:
        if self.node.role != "miner":
            raise ConfigError("this console runs a validator: a validator keeps no plots")
        mine = self.node.layout.root
        if path.resolve() != mine.resolve():
            raise ConfigError(f"this console's miner keeps its plots in {mine}: allocate there, or restart the "
                              f"console with --db_root_path {path}")

    def _max_share(self, path: Path, device) -> int:
        return self.node.allocator.max_share_bytes()

    def plan(self, path: Path, size_bytes: int) -> PartitionPlan:
        return self.node.allocator.plan(size_bytes)

    async def allocate(self, path: Path, size_in_gb: float, workers: int) -> str:
        if self.node.role != "miner":
            return await super().allocate(path, size_in_gb, workers)
        task = asyncio.ensure_future(self.node.set_share(size_in_gb, workers))
        task.add_done_callback(self._report)
        self._allocation = task
        return self.node.source

    def _report(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            from ..events import ErrorEvent

            self.bus.publish(ErrorEvent(message=f"allocation failed: {exc}", source=self.node.source))


# --- a node running in another process -----------------------------------------------------------


class AttachedBackend(Backend):
    """A miner or validator started elsewhere (pm2, systemd, `tensorage miner`): its events stream in
    over its operator endpoint (signed with the node's own hotkey), its files are read from its
    database root, and commands (jobs, a new disk share) go back over HTTP."""

    RECONNECT_S = 5.0
    REFRESH_ON = ("JobRan", "PlotDone", "PlotVerified", "PlotRemoved", "PlanReady", "AllocationDone",
                  "ChallengeServed", "PlotProgress", "WeightsSet")

    def __init__(self, settings: Settings, bus: EventBus, wallet, endpoint: Optional[str] = None,
                 clock: Callable[[], float] = time.time, cpus: Optional[int] = None) -> None:
        from ..net.client import SignedClient

        super().__init__(settings, bus, clock, cpus)
        self.wallet = wallet
        self.layout = Layout(settings.db_root)
        self.endpoint = endpoint
        self.client = SignedClient(wallet)
        self.snap: dict[str, Any] = {}
        self.kind = "node"
        self.host, self.port = "", 0
        self._stream: Optional[asyncio.Task] = None
        self._fetching: Optional[asyncio.Task] = None
        self._dirty = False
        self._stopping = False
        self._unsubscribe: Optional[Callable[[], None]] = None

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> str:
        from ..engines.node import read_node_state

        state = read_node_state(self.layout)
        if state is None and self.endpoint is None:
            raise ConfigError(f"no node has run at {self.layout.root}: start one there (`tensorage miner "
                              f"--db_root_path {self.layout.root}`) or pass --attach host:port")
        endpoint = self.endpoint or (state or {}).get("endpoint")
        if not endpoint or ((state or {}).get("state") == "stopped" and self.endpoint is None):
            raise ConfigError(f"the node at {self.layout.root} is stopped: start it, then attach again")
        host, _, port = endpoint.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.hotkey = self.wallet.hotkey.ss58_address
        await self.fetch_state()
        if self.snap.get("hotkey") != self.hotkey:
            raise ConfigError(f"the node at {endpoint} runs hotkey {self.snap.get('hotkey')}: attach with its wallet")
        self.kind = self.snap.get("role", "node")
        self.can_allocate = self.kind == "miner"
        self._unsubscribe = self.bus.subscribe(self._on_event)
        self._stream = asyncio.ensure_future(self._follow())
        return f"attached to {self.kind} {self.hotkey} at {self.host}:{self.port}"

    async def stop(self) -> None:
        self._stopping = True
        if self._unsubscribe:
            self._unsubscribe()
        for task in (self._stream, self._fetching):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._stream, self._fetching) if t), return_exceptions=True)
        await self.client.close()

    async def fetch_state(self) -> dict[str, Any]:
        from ..net.client import PeerError

        try:
            reply = await self.client.request("GET", self.host, self.port, "/v1/state", receiver=self.hotkey,
                                              timeout=5.0)
        except PeerError as exc:
            raise ConfigError(f"the node at {self.host}:{self.port} is not answering ({exc}): is it running?") from None
        if reply.status != 200:
            raise ConfigError(f"the node refused the console: {reply.error_message}")
        self.snap = reply.json()
        return self.snap

    async def _follow(self) -> None:
        """Relay the node's events onto our bus; reattach after a while if the stream breaks."""
        from ..events import ErrorEvent, Event
        from ..net.client import PeerError

        try:
            async for raw in self.client.lines("GET", self.host, self.port, "/v1/events", receiver=self.hotkey):
                event = Event.from_json(raw.decode(errors="replace")) if raw.strip() else None
                if event is not None:
                    self.bus.publish(event)
            reason = "the node closed the stream"
        except PeerError as exc:
            reason = str(exc)
        if not self._stopping:
            self.bus.publish(ErrorEvent(message=f"lost the node's event stream ({reason}); reattaching in "
                                                f"{self.RECONNECT_S:.0f}s", source="console"))
            asyncio.get_running_loop().call_later(self.RECONNECT_S, self._reattach)

    def _reattach(self) -> None:
        if not self._stopping:
            self._stream = asyncio.ensure_future(self._follow())

    def _on_event(self, event) -> None:
        """Refresh the node's snapshot when something it reports has changed."""
        if type(event).__name__ in self.REFRESH_ON:
            self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        """One snapshot request at a time; changes during it ask for one more."""
        if self._stopping:
            return
        if self._fetching is not None and not self._fetching.done():
            self._dirty = True
            return
        self._fetching = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        while True:
            self._dirty = False
            try:
                await self.fetch_state()
            except ConfigError:
                return  # the stream reports the trouble
            if not self._dirty:
                return

    # reading ------------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.snap.get("source", self.kind)

    def identity(self) -> Identity:
        s = self.settings
        return Identity(kind=self.kind, roles=f"{self.kind} (attached at {self.host}:{self.port})",
                        network=s.network, netuid=self.snap.get("netuid"), secure=s.profile.secure,
                        wallet=self.snap.get("wallet", f"{s.wallet.name}/{s.wallet.hotkey}"),
                        hotkey=self.snap.get("hotkey"), db_root=str(self.layout.root),
                        devnet_root=str(s.devnet_root) if s.network == "devnet" else None)

    def summary(self) -> str:
        return summary_of(self.snap) if self.snap else ""

    def load_chain(self):
        from ..chain import connect

        chain = connect(self.settings)
        try:
            mg = chain.metagraph()
        finally:
            chain.close()
        return mg, mg.block, None

    def jobs(self) -> list[JobRow]:
        return [JobRow(self.source, JobInfo(**j), True) for j in self.snap.get("jobs", [])]

    def control(self, row: JobRow, action: str) -> str:
        if action not in ("run", "pause", "resume"):
            raise ConfigError(f"unknown job action {action}")
        path = f"/v1/jobs/{row.info.id}/{action}"
        task = asyncio.ensure_future(self._command("POST", path, b""))
        task.add_done_callback(lambda _: self._schedule_refresh())
        return f"{row.info.id}: {action} sent to the node"

    async def _command(self, method: str, path: str, body: bytes) -> None:
        from ..events import ErrorEvent
        from ..net.client import PeerError

        try:
            reply = await self.client.request(method, self.host, self.port, path, receiver=self.hotkey, body=body,
                                              timeout=10.0)
            if reply.status >= 300:
                self.bus.publish(ErrorEvent(message=f"the node refused {path}: {reply.error_message}",
                                            source="console"))
        except PeerError as exc:
            self.bus.publish(ErrorEvent(message=f"{path} did not reach the node: {exc}", source="console"))

    def nodes(self) -> list[dict]:
        return [{"node": self.source, "role": self.kind, "state": self.snap.get("state", "?"),
                 "pid": self.snap.get("pid"), "restarts": 0, "log": "", "db_root_path": str(self.layout.root)}]

    def miners(self) -> list[MinerRef]:
        if self.kind != "miner":
            return []
        return [MinerRef(self.source, self.layout.root, float(self.snap.get("size_in_gb") or self.settings.size_in_gb))]

    def disk_live(self) -> dict[str, Any]:
        return disk_live_of(self.source, self.snap)

    def weight_rows(self, metagraph, weights_events: dict, snapshots: dict[str, dict]) -> list[WeightRow]:
        return weight_rows_of(self.snap, self.source, metagraph)

    # wizard ---------------------------------------------------------------------------------------
    def _check_path_for_mode(self, path: Path, layout: Layout) -> None:
        if self.kind != "miner":
            raise ConfigError("the attached node is a validator: a validator keeps no plots")
        if path.resolve() != self.layout.root.resolve():
            raise ConfigError(f"the attached miner keeps its plots in {self.layout.root}: allocate there")

    def _allocator(self):
        from ..engines.allocator import Allocator

        return Allocator(self.settings, self.hotkey)  # read-only use: plans, never plots

    def _max_share(self, path: Path, device) -> int:
        allocator = self._allocator()
        try:
            return allocator.max_share_bytes()
        finally:
            allocator.close()

    def plan(self, path: Path, size_bytes: int) -> PartitionPlan:
        allocator = self._allocator()
        try:
            return allocator.plan(size_bytes)
        finally:
            allocator.close()

    async def allocate(self, path: Path, size_in_gb: float, workers: int) -> str:
        body = json.dumps({"size_in_gb": size_in_gb, "workers": workers}).encode()
        await self._command("POST", "/v1/share", body)
        return self.source
