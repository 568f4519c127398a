"""Run a whole local subnet: the devnet chain's epoch clock plus one real process per
miner and validator, supervised (restart on crash, clean stop, a log file each).

Children report their engine events as JSON lines on stdout; the supervisor
republishes them on its own bus under the node's name, so the console and the
headless logger see the whole subnet. Children die with the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Optional

from ..chain.devnet import Devnet, DevnetNode, SubnetSpec
from ..chain.devnet_init import devnet_exists, init_devnet
from ..chain.wallets import create_wallet
from ..config import Settings, with_defaults
from ..errors import ChainError, DiskError, TensorageError
from ..events import Event, EventBus, NodeState
from ..procutil import child_env
from ..scheduler import Jobs
from ..storage.layout import Layout
from .snapshot import AnySnapshot, read_snapshot

RESTART_BACKOFF_S = (1, 2, 5, 10, 30)
STOP_GRACE_S = 8.0
NEW_MINER_SIZE_GB = 0.03  # what the wizard proposes for a new devnet miner: 4 k18 plots, plotted in seconds


# Flags the supervisor hands on, by the role that takes them (each command takes only its own).
ROLE_FLAGS = {
    "miner": {"--seconds_per_reallocate", "--workers", "--disable_verify", "--logging.debug", "--logging.trace",
              "--logging.format"},
    "validator": {"--seconds_per_round", "--seconds_per_weights", "--logging.debug", "--logging.trace",
                  "--logging.format"},
}


def flags_for(role: str, node_args: tuple[str, ...]) -> list[str]:
    """The part of ``node_args`` (flags, each maybe followed by its value) that ``role`` takes."""
    out: list[str] = []
    keep = False
    for token in node_args:
        if token.startswith("--"):
            keep = token in ROLE_FLAGS.get(role, set())
        if keep:
            out.append(token)
    return out


# --- devnet rules: node names and database roots (the console and the CLI ask here) -------------


def node_db_root(root: Path, node: DevnetNode) -> Path:
    """A devnet node's database root: its own, or <devnet root>/nodes/<name>."""
    return Path(node.db_root_path).expanduser() if node.db_root_path else root / "nodes" / node.name


def next_miner_name(spec: SubnetSpec) -> str:
    taken = {n.name for n in spec.nodes}
    return next(f"miner-{i}" for i in range(len(taken) + 1) if f"miner-{i}" not in taken)


def node_settings(settings: Settings) -> Settings:
    """On the devnet a node named by --wallet.name gets its own db root and the spec's share, as
    defaults: they stay out of ``model_fields_set``, which holds only what the operator typed."""
    if settings.network != "devnet":
        return settings
    root = settings.devnet_root
    update: dict = {}
    if "db_root_path" not in settings.model_fields_set:
        update["db_root_path"] = str(root / "nodes" / settings.wallet.name)
    node = (next((n for n in SubnetSpec.load(root).nodes if n.name == settings.wallet.name), None)
            if devnet_exists(root) else None)
    if node is not None and node.size_in_gb > 0 and "size_in_gb" not in settings.model_fields_set:
        update["size_in_gb"] = node.size_in_gb
    if node is not None and node.workers and "workers" not in settings.model_fields_set:
        update["workers"] = node.workers
    # Defaults, not flags: a size the operator did not type must not override the share stored with it.
    return with_defaults(settings, update)


def check_new_miner_root(root: Path, spec: Optional[SubnetSpec], path: Path) -> None:
    """A new devnet miner needs a database root no other node uses."""
    for node in spec.nodes if spec else []:
        if node_db_root(root, node).resolve() == path.resolve():
            raise DiskError(f"{path} is {node.name}'s database root: choose a new directory for the new miner")
    if Layout(path).exists():
        raise DiskError(f"{path} already holds a tensorage node (it has an index/ directory): "
                        f"choose a new directory for the new miner")


def register_miner(root: Path, size_in_gb: float, db_root_path: Optional[str] = None,
                   workers: Optional[int] = None) -> DevnetNode:
    """Register one more miner on an existing devnet (the console's allocation wizard)."""
    root = Path(root).expanduser()
    spec = SubnetSpec.load(root)
    node = DevnetNode(name=next_miner_name(spec), role="miner", size_in_gb=size_in_gb, db_root_path=db_root_path,
                      workers=workers)
    wallet = create_wallet(root / "wallets", node.wallet_name)
    chain = Devnet.open(root)
    try:
        chain.register(wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address)
    finally:
        chain.close()
    spec.nodes.append(node)
    spec.save(root)
    return node


@dataclass
class Child:
    node: DevnetNode
    log_path: Path
    proc: Optional[asyncio.subprocess.Process] = None
    state: str = "stopped"
    restarts: int = 0
    started_at: Optional[float] = None
    last_exit: Optional[int] = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc and self.proc.returncode is None else None


class DevnetSupervisor:
    def __init__(self, settings: Settings, bus: Optional[EventBus] = None, miners: int = 6, validators: int = 2,
                 node_args: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.root = settings.devnet_root
        self.bus = bus or EventBus()
        self.jobs = Jobs(self.bus, "devnet")
        self.node_args = node_args
        self.n_miners, self.n_validators = miners, validators
        self.children: dict[str, Child] = {}
        self.chain: Optional[Devnet] = None
        self.spec: Optional[SubnetSpec] = None
        self._stopping = False
        self._stop = asyncio.Event()

    # setup ---------------------------------------------------------------------------------
    def prepare(self) -> SubnetSpec:
        if not devnet_exists(self.root):
            init_devnet(self.root, miners=self.n_miners, validators=self.n_validators)
            self.bus.log(f"created a devnet at {self.root}: {self.n_validators} validators, {self.n_miners} miners",
                         source="devnet")
        self.spec = SubnetSpec.load(self.root)
        self.chain = Devnet.open(self.root, self.settings.resolved_netuid)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        for node in self.spec.nodes:
            self.children[node.name] = Child(node=node, log_path=self.root / "logs" / f"{node.name}.log")
        return self.spec

    def db_root(self, node: DevnetNode) -> Path:
        return node_db_root(self.root, node)

    def spec_or_file(self) -> Optional[SubnetSpec]:
        """The spec as loaded at start, or read from disk before that (None: no devnet yet)."""
        if self.spec is not None:
            return self.spec
        try:
            return SubnetSpec.load(self.root)
        except ChainError:
            return None

    def node_snapshots(self) -> dict[str, AnySnapshot]:
        """Blocking: every node's state file, by node name."""
        out: dict[str, AnySnapshot] = {}
        for node in (self.spec_or_file() or SubnetSpec(nodes=[])).nodes:
            snap = read_snapshot(Layout(self.db_root(node)))
            if snap is not None:
                out[node.name] = snap
        return out

    async def node_job(self, name: str, job: str, action: str) -> str:
        """Run, pause or resume a job inside a node process, over its operator API with its own
        wallet (the devnet holds every node's keys)."""
        from ..net.operator import NodeAddress, OperatorClient

        spec = self.spec_or_file()
        node = next((n for n in spec.nodes if n.name == name), None) if spec else None
        if node is None:
            raise TensorageError(f"no devnet node named {name}")
        snap = await asyncio.to_thread(read_snapshot, Layout(self.db_root(node)))
        if snap is None or snap.state != "running" or not snap.endpoint:
            raise TensorageError(f"{name} is not serving yet: try again once it runs")
        client = OperatorClient(spec.wallet(self.root, node), NodeAddress.parse(snap.endpoint))  # type: ignore[union-attr]
        try:
            reply = await client.job(job, action)
        finally:
            await client.close()
        return reply.message

    def argv(self, node: DevnetNode) -> list[str]:
        argv = [sys.executable, "-m", "tensorage", node.role, "--subtensor.network", "devnet",
                "--devnet.root", str(self.root), "--wallet.name", node.wallet_name,
                "--db_root_path", str(self.db_root(node)), "--events", "jsonl", *flags_for(node.role, self.node_args)]
        # No --size_in_gb / --workers from the spec: typed here they would be the operator's flags and
        # override the share stored with the node; the child takes them as defaults (node_settings).
        return argv

    async def add_miner(self, size_in_gb: float, db_root_path: Optional[str] = None,
                        workers: Optional[int] = None) -> DevnetNode:
        """Register and start one more miner (what the console's allocation wizard confirms)."""
        node = await asyncio.to_thread(register_miner, self.root, size_in_gb, db_root_path, workers)
        self.spec = SubnetSpec.load(self.root)
        child = self.children[node.name] = Child(node=node, log_path=self.root / "logs" / f"{node.name}.log")
        self.bus.log(f"added {node.name}: {size_in_gb:g} GB at {self.db_root(node)}", source="devnet")
        await self.spawn(child)
        return node

    # processes -------------------------------------------------------------------------------
    async def spawn(self, child: Child) -> None:
        log: IO[bytes] = open(child.log_path, "ab")
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {child.node.name}\n".encode())
        log.flush()
        child.proc = await asyncio.create_subprocess_exec(
            *self.argv(child.node), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
            env=child_env({"COLUMNS": "120"}),
        )
        log.close()  # the child holds its own copy of the descriptor
        child.state, child.started_at = "running", time.time()
        self.bus.publish(NodeState(node=child.node.name, state="running", pid=child.proc.pid, source="devnet"))
        child.tasks = [asyncio.ensure_future(self._relay(child)), asyncio.ensure_future(self._watch(child))]

    async def _relay(self, child: Child) -> None:
        assert child.proc and child.proc.stdout
        async for raw in child.proc.stdout:
            event = Event.from_json(raw.decode(errors="replace"))
            if event is not None:
                event.source = child.node.name
                self.bus.publish(event)

    async def _watch(self, child: Child) -> None:
        assert child.proc
        code = await child.proc.wait()
        child.last_exit = code
        if self._stopping:
            child.state = "stopped"
            self.bus.publish(NodeState(node=child.node.name, state="stopped", detail=f"exit {code}", source="devnet"))
            return
        child.state = "restarting"
        delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
        child.restarts += 1
        self.bus.publish(NodeState(node=child.node.name, state="exited",
                                   detail=f"exit {code}; restarting in {delay}s (see {child.log_path})",
                                   source="devnet"))
        self.jobs.scheduler.add_job(self.spawn, "date", args=[child], id=f"restart-{child.node.name}",
                                    replace_existing=True, run_date=datetime.now() + timedelta(seconds=delay))

    async def epoch(self) -> str:
        assert self.chain is not None
        ran = await asyncio.to_thread(self.chain.run_epoch)
        return f"epoch at block {self.chain.block()}" if ran else ""

    # lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        spec = self.prepare()
        assert self.chain is not None
        self.jobs.add("devnet_epoch", self.epoch, self.chain.block_time(), first_in=None)
        self.jobs.start()
        for node in spec.of_role("miner") + spec.of_role("validator"):
            await self.spawn(self.children[node.name])

    async def stop(self) -> None:
        self._stopping = True
        self.jobs.shutdown()
        running = [c for c in self.children.values() if c.proc and c.proc.returncode is None]
        for c in running:
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        if running:
            done, pending = await asyncio.wait([asyncio.ensure_future(c.proc.wait()) for c in running],  # type: ignore
                                               timeout=STOP_GRACE_S)
            for c in running:
                if c.proc and c.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        c.proc.kill()
                    await c.proc.wait()
        for c in self.children.values():
            for t in c.tasks:
                t.cancel()
            await asyncio.gather(*c.tasks, return_exceptions=True)
        if self.chain is not None:
            self.chain.close()

    def request_stop(self) -> None:
        self._stop.set()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()

    def state(self) -> list[dict]:
        return [{"node": c.node.name, "role": c.node.role, "state": c.state, "pid": c.pid, "restarts": c.restarts,
                 "log": str(c.log_path), "db_root_path": str(self.db_root(c.node))}
                for c in self.children.values()]

