"""A miner or validator engine running on the console's own event loop (``--role``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ...engines.snapshot import AnySnapshot
from ...errors import ConfigError
from ...events import ErrorEvent
from ...storage.partition import PartitionPlan
from .base import Source
from .views import (Capabilities, Identity, JobRow, MinerRef, NodeRow, WeightRow, disk_live_of, jobs_of,
                    weight_rows_of)


class LocalSource(Source):
    def __init__(self, node, clock: Callable[[], float] = time.time, cpus: Optional[int] = None) -> None:
        super().__init__(node.settings, node.bus, clock, cpus)
        self.node = node
        # The miner's proof pool spawns processes through multiprocessing's resource tracker, which
        # hands sys.stderr's descriptor to its helper. While Textual runs, sys.stderr is a capture
        # object without one (fileno() == -1), so start the tracker now, with the real stderr.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        miner = node.role == "miner"
        self.caps = Capabilities(allocate=miner, answers_challenges=miner, judges=not miner,
                                 secure=node.settings.profile.secure)
        self._allocation: Optional[asyncio.Task] = None

    async def start(self) -> str:
        await self.node.launch()
        return f"{self.node.role} {self.node.hotkey} on {self.settings.network}"

    async def stop(self) -> None:
        await self.node.shutdown()

    def own_snapshot(self) -> AnySnapshot:
        return self.node.typed_snapshot()

    def identity(self) -> Identity:
        s = self.node.settings
        return Identity(kind=self.node.role, roles=self.node.role, network=s.network, netuid=s.resolved_netuid,
                        secure=s.profile.secure, wallet=f"{s.wallet.name}/{s.wallet.hotkey}", hotkey=self.node.hotkey,
                        db_root=str(self.node.layout.root),
                        devnet_root=str(s.devnet_root) if s.network == "devnet" else None)

    def summary(self) -> str:
        return self.own_snapshot().summary()

    def load_chain(self):
        mg = self.node.metagraph  # kept fresh by the node's sync job: no chain call here
        return mg, (mg.block if mg else None), None

    def jobs(self, snapshots: dict[str, AnySnapshot]) -> list[JobRow]:
        return jobs_of(self.node.source, self.own_snapshot())

    def chain_health(self, snapshots: dict[str, AnySnapshot]) -> dict[str, Any]:
        return {self.node.source: self.node.chain_health.view(self.node.jobs.next_retry())}  # no whole snapshot

    async def control(self, row: JobRow, action: str) -> str:
        if row.source != self.node.source:
            raise ConfigError(f"no engine named {row.source} in this console")
        command = {"run": self.node.jobs.run_now, "pause": self.node.jobs.pause,
                   "resume": self.node.jobs.resume}[action]
        try:
            return command(row.info.id)[1]
        except KeyError:
            raise ConfigError(f"job {row.info.id} is gone (the engine stopped or replaced it)") from None

    def nodes(self) -> list[NodeRow]:
        return [NodeRow(node=self.node.source, role=self.node.role,
                        state="running" if self.node.served else "starting", pid=os.getpid(),
                        db_root_path=str(self.node.layout.root))]

    def miners(self) -> list[MinerRef]:
        if self.node.role != "miner":
            return []
        return [MinerRef(self.node.source, self.node.layout.root, self.node.settings.size_in_gb)]

    def disk_live(self) -> dict[str, Any]:
        return disk_live_of(self.node.source, self.own_snapshot())

    def validator_names(self) -> list[str]:
        return [self.node.source] if self.node.role == "validator" else []

    def weight_rows(self, metagraph, weights_events: dict, snapshots: dict[str, AnySnapshot]) -> list[WeightRow]:
        return weight_rows_of(self.own_snapshot(), self.node.source, metagraph)

    # wizard ----------------------------------------------------------------------------------
    def suggested_size_gb(self) -> float:
        return self.node.settings.size_in_gb

    def check_path_for_source(self, path: Path) -> None:
        if self.node.role != "miner":
            raise ConfigError("this console runs a validator: a validator keeps no plots")
        mine = self.node.layout.root
        if path.resolve() != mine.resolve():
            raise ConfigError(f"this console's miner keeps its plots in {mine}: allocate there, or restart the "
                              f"console with --db_root_path {path}")

    def max_share(self, path: Path) -> int:
        return self.node.allocator.max_share_bytes()

    def plan(self, path: Path, size_bytes: int) -> PartitionPlan:
        return self.node.allocator.plan(size_bytes)

    async def allocate(self, path: Path, size_in_gb: float, workers: int, remove_plots: bool = False) -> str:
        if self.node.role != "miner":
            return await super().allocate(path, size_in_gb, workers, remove_plots)
        self._allocation = asyncio.ensure_future(self.node.set_share(size_in_gb, workers))
        self._allocation.add_done_callback(self._report)
        return self.node.source

    def _report(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.bus.publish(ErrorEvent(message=f"allocation failed: {task.exception()}", source=self.node.source))
