"""A miner or validator running in its own process (pm2, systemd, `tensorage miner`), followed over
its operator API with the node's own wallet: its events stream in, its snapshot is refreshed when
they say something changed, commands (jobs, a new share) go back over HTTP. When the node restarts
(a new pid, maybe a new port) the follower finds it again from its state file, else from the chain,
and says so on screen. Quitting the console leaves the node running."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ...config import Settings
from ...engines.snapshot import AnySnapshot, MinerSnapshot, read_snapshot
from ...errors import ConfigError, TensorageError
from ...events import ErrorEvent, Event, EventBus, LogEvent, NodeState
from ...net.operator import Link, NodeAddress, NodeFollower, NodeRefused, NodeUnreachable
from ...storage.layout import Layout
from ...storage.lock import holder as lock_holder
from ...storage.partition import PartitionPlan
from .base import Source
from .views import (Capabilities, Identity, JobRow, MinerRef, NodeRow, WeightRow, disk_live_of, jobs_of,
                    weight_rows_of)

CONSOLE = "console"
REFRESH_ON = ("DiskLost", "DiskReturned", "JobRan", "PlotDone", "PlotVerified", "PlotRemoved", "PlanReady", "AllocationDone", "ChallengeServed",
              "PlotProgress", "WeightsSet")


class AttachedSource(Source):
    def __init__(self, settings: Settings, bus: EventBus, wallet, endpoint: Optional[str] = None,
                 clock: Callable[[], float] = time.time, cpus: Optional[int] = None) -> None:
        super().__init__(settings, bus, clock, cpus)
        self.wallet = wallet
        self.hotkey = wallet.hotkey.ss58_address
        self.layout = Layout(settings.db_root)
        self.endpoint = NodeAddress.parse(endpoint) if endpoint else None
        self.snap: Optional[AnySnapshot] = None
        self.follower = NodeFollower(wallet, self.locate, self._on_event, self._on_link, self._on_state)
        self._run: Optional[asyncio.Task] = None
        self._fetching: Optional[asyncio.Task] = None
        self._dirty = False
        self._stopping = False
        self._announced: Optional[tuple[str, Optional[int]]] = None

    # finding the node ---------------------------------------------------------------------------
    async def locate(self) -> list[NodeAddress]:
        """Where the node may be: its state file when it says it runs (and holds the root's lock),
        the address given with --attach, then the address it published on chain."""
        found: list[NodeAddress] = []
        snap, held = await asyncio.to_thread(lambda: (read_snapshot(self.layout), lock_holder(self.layout)))
        if snap is not None and snap.endpoint and snap.state != "stopped" and held is not None:
            found.append(NodeAddress.parse(snap.endpoint))
        if self.endpoint is not None and self.endpoint not in found:
            found.append(self.endpoint)
        if not found:
            published = await asyncio.to_thread(self._published_on_chain)
            if published is not None:
                found.append(published)
        return found

    def _published_on_chain(self) -> Optional[NodeAddress]:
        from ...chain import connect

        try:
            chain = connect(self.settings)
            try:
                me = chain.metagraph().by_hotkey(self.hotkey)
            finally:
                chain.close()
        except TensorageError:
            return None
        return NodeAddress(*me.endpoint) if me is not None and me.endpoint else None

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> str:
        snap, held = await asyncio.to_thread(lambda: (read_snapshot(self.layout), lock_holder(self.layout)))
        if snap is None and held is None and self.endpoint is None:
            raise ConfigError(f"no node has run at {self.layout.root}: start one there (`tensorage miner "
                              f"--db_root_path {self.layout.root}`) or pass --attach host:port")
        if self.endpoint is None and held is None:
            raise ConfigError(f"the node at {self.layout.root} is stopped: start it, then attach again")
        try:
            await self.follower.connect()
        except NodeRefused as exc:
            raise ConfigError(f"the node refused the console: {exc}") from None
        except NodeUnreachable as exc:
            raise ConfigError(str(exc)) from None
        self._run = asyncio.ensure_future(self.follower.run())
        return f"attached to {self.kind} {self.hotkey} at {self.follower.link.address}"

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._run, self._fetching):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._run, self._fetching) if t), return_exceptions=True)
        await self.follower.close()

    # what the follower reports -------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        self.bus.publish(event)
        if type(event).__name__ in REFRESH_ON:
            self._schedule_refresh()

    def _on_state(self, snap: AnySnapshot) -> None:
        self.snap = snap
        miner = isinstance(snap, MinerSnapshot)
        self.caps = Capabilities(allocate=miner, answers_challenges=miner, judges=not miner and snap.role != "node",
                                 secure=self.settings.profile.secure)

    def _on_link(self, link: Link) -> None:
        """Say on screen (and in the log) when the node is lost and when it is found again, once each."""
        key = (link.state, link.pid)
        if key == self._announced or self._stopping:
            return
        previous, self._announced = self._announced, key
        name = self.source
        if link.state == "connected":
            again = previous is not None and previous[0] == "lost"
            how = "found the node again" if again else "attached to the node"
            restarted = ", restarted" if again and previous[1] not in (None, link.pid) else ""
            self.bus.publish(LogEvent(message=f"{how} at {link.address} (pid {link.pid}{restarted})",
                                      severity="warning" if again else "info", source=CONSOLE))
            self.bus.publish(NodeState(node=name, state="running", pid=link.pid, detail=f"at {link.address}",
                                       source=CONSOLE))
        elif link.state == "lost":
            self.bus.publish(ErrorEvent(message=f"lost the node ({link.reason}); looking for it (its node.json, "
                                                f"then the chain), retrying with backoff", source=CONSOLE))
            self.bus.publish(NodeState(node=name, state="restarting", pid=link.pid, detail="looking for it",
                                       source=CONSOLE))

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
                await self.follower.refresh()
            except TensorageError:
                return  # the stream reports the trouble
            if not self._dirty:
                return

    # reading ------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.snap.role if self.snap else "node"

    @property
    def source(self) -> str:
        return self.snap.source if self.snap else self.kind

    def own_snapshot(self) -> Optional[AnySnapshot]:
        return self.snap

    def identity(self) -> Identity:
        s, link = self.settings, self.follower.link
        where = {"connected": f"attached at {link.address}",
                 "lost": f"lost at {link.address}: looking for it in its node.json, then on chain",
                 "connecting": "connecting"}[link.state]
        return Identity(kind=self.kind, roles=f"{self.kind} ({where})", network=s.network,
                        netuid=self.snap.netuid if self.snap else None, secure=s.profile.secure,
                        wallet=self.snap.wallet if self.snap else f"{s.wallet.name}/{s.wallet.hotkey}",
                        hotkey=self.hotkey, db_root=str(self.layout.root),
                        devnet_root=str(s.devnet_root) if s.network == "devnet" else None,
                        link="" if link.state == "connected" else where)

    def summary(self) -> str:
        return self.snap.summary() if self.snap else ""

    def load_chain(self):
        from ...chain import connect

        chain = connect(self.settings)
        try:
            mg = chain.metagraph()
        finally:
            chain.close()
        return mg, mg.block, None

    def jobs(self, snapshots: dict[str, AnySnapshot]) -> list[JobRow]:
        return jobs_of(self.source, self.snap)

    def chain_health(self, snapshots: dict[str, AnySnapshot]) -> dict[str, Any]:
        return {self.source: self.snap.chain} if self.snap is not None else {}

    async def control(self, row: JobRow, action: str) -> str:
        operator = self.follower.operator
        if operator is None or self.follower.link.state != "connected":
            raise ConfigError("the node is not connected right now: try again once the console finds it")
        try:
            reply = await operator.job(row.info.id, action)
        except NodeRefused as exc:
            raise ConfigError(f"the node refused: {exc}") from None
        except NodeUnreachable as exc:
            raise ConfigError(str(exc)) from None
        finally:
            self._schedule_refresh()
        return reply.message

    def nodes(self) -> list[NodeRow]:
        link = self.follower.link
        state = {"connected": self.snap.state if self.snap else "?", "lost": "restarting",
                 "connecting": "starting"}[link.state]
        return [NodeRow(node=self.source, role=self.kind, state=state, pid=link.pid,
                        db_root_path=str(self.layout.root))]

    def miners(self) -> list[MinerRef]:
        if not isinstance(self.snap, MinerSnapshot):
            return []
        return [MinerRef(self.source, self.layout.root, self.snap.share.size_in_gb if self.snap.share
                         else self.snap.size_in_gb or self.settings.size_in_gb)]

    def disk_live(self) -> dict[str, Any]:
        return disk_live_of(self.source, self.snap)

    def validator_names(self) -> list[str]:
        return [self.source] if self.kind == "validator" else []

    def weight_rows(self, metagraph, weights_events: dict, snapshots: dict[str, AnySnapshot]) -> list[WeightRow]:
        return weight_rows_of(self.snap, self.source, metagraph)

    # wizard ---------------------------------------------------------------------------------------
    def suggested_size_gb(self) -> float:
        miners = self.miners()
        return miners[0].size_in_gb if miners else self.settings.size_in_gb

    def check_path_for_source(self, path: Path) -> None:
        if self.kind != "miner":
            raise ConfigError("the attached node is a validator: a validator keeps no plots")
        if path.resolve() != self.layout.root.resolve():
            raise ConfigError(f"the attached miner keeps its plots in {self.layout.root}: allocate there")

    def _allocator(self):
        from ...engines.disks import DiskSet

        return DiskSet(self.settings, self.hotkey)  # read-only use: plans, never plots

    def max_share(self, path: Path) -> int:
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

    async def allocate(self, path: Path, size_in_gb: float, workers: int, remove_plots: bool = False) -> str:
        operator = self.follower.operator
        if operator is None:
            raise ConfigError("the node is not connected right now: try again once the console finds it")
        try:
            await operator.set_share(size_in_gb, workers, remove_plots=remove_plots)
        except NodeRefused as exc:
            raise ConfigError(str(exc)) from None
        except NodeUnreachable as exc:
            raise ConfigError(str(exc)) from None
        self._schedule_refresh()
        return self.source
