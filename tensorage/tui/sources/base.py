"""What every console source offers the app: its capabilities, reads, job control and the wizard's
checks. A source holds no rules of its own: checks come from :mod:`tensorage.checks`, plans from
the allocator and planner, devnet rules from the devnet engine, state from engine snapshots.

Methods marked *blocking* read files or the chain: the app calls them from thread workers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ... import checks
from ...config import GB, NetworkProfile, Settings
from ...engines.snapshot import AnySnapshot
from ...errors import ConfigError, NotEnoughSpace
from ...events import EventBus
from ...storage.layout import device_space
from ...storage.partition import PartitionPlan, max_share_bytes, min_share_bytes, plan_partition
from ..format import size as fmt_size
from .views import Capabilities, DiskInfo, Identity, JobRow, MinerRef, NodeRow, PathCheck, WeightRow, read_disk

if TYPE_CHECKING:
    from ...client.session import ClientSession


class Source:
    caps = Capabilities()
    client: Optional["ClientSession"] = None  # the client's objects, when caps.client_data

    def __init__(self, settings: Settings, bus: EventBus, clock: Callable[[], float] = time.time,
                 cpus: Optional[int] = None) -> None:
        self.settings = settings
        self.bus = bus
        self.clock = clock
        self.cpus = cpus or os.cpu_count() or 1
        self.names_dirty = False

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
        """One line on what the node is doing."""
        return ""

    def own_snapshot(self) -> Optional[AnySnapshot]:
        """The followed node's snapshot (role and attached modes)."""
        return None

    def load_names(self) -> dict[str, str]:
        """Blocking: hotkey -> node name (devnet)."""
        return {}

    def jobs(self, snapshots: dict[str, AnySnapshot]) -> list[JobRow]:
        return []

    def chain_health(self, snapshots: dict[str, AnySnapshot]) -> dict[str, Any]:
        """Node name -> its chain health (``state``, ``since``, ``last_error``, ``next_retry``)."""
        return {}

    def nodes(self) -> list[NodeRow]:
        return []

    def load_node_files(self) -> dict[str, AnySnapshot]:
        """Blocking: node processes' state files, by node name."""
        return {}

    def validator_names(self) -> list[str]:
        return []

    def miners(self) -> list[MinerRef]:
        return []

    def load_disks(self) -> dict[str, DiskInfo]:
        """Blocking: every miner's plot index and device space."""
        return {m.name: read_disk(m.name, m.db_root, int(m.size_in_gb * GB)) for m in self.miners()}

    def disk_live(self) -> dict[str, Any]:
        """A miner engine's allocator status, by source, when there is one."""
        return {}

    def weight_rows(self, metagraph, weights_events: dict, snapshots: dict[str, AnySnapshot]) -> list[WeightRow]:
        return []

    # commands --------------------------------------------------------------------------------
    async def control(self, row: JobRow, action: str) -> str:
        """Run, pause or resume a job; returns what happened (raises TensorageError)."""
        raise ConfigError(f"no engine named {row.source} in this console")

    # allocation wizard -----------------------------------------------------------------------
    def default_path(self) -> str:
        return str(self.settings.db_root)

    def default_workers(self) -> int:
        return self.settings.workers

    def suggested_size_gb(self) -> float:
        return self.settings.size_in_gb

    def check_path(self, text: str) -> PathCheck:
        """Blocking, read-only: can a share live there, and how large can it be?"""
        path = checks.db_root(text)
        checks.writable_target(path)
        self.check_path_for_source(path)
        device = device_space(path)
        max_share = self.max_share(path)
        min_share = min_share_bytes(self.profile)
        if max_share < min_share:
            raise NotEnoughSpace(
                f"{path}: only {fmt_size(max(0, max_share))} can be given to tensorage there (free space minus "
                f"the safety margin); a k={self.profile.min_k} plot with its reserve needs {fmt_size(min_share)}: "
                f"free some space or choose another device")
        return PathCheck(path=path, device_total=device.total, device_free=device.free, max_share=max_share,
                         min_share=min_share)

    def check_path_for_source(self, path: Path) -> None:
        return None

    def max_share(self, path: Path) -> int:
        return max_share_bytes(device_space(path), 0)

    def plan(self, path: Path, size_bytes: int) -> PartitionPlan:
        """Blocking, read-only: the partition a share of ``size_bytes`` at ``path`` would get."""
        return plan_partition(size_bytes, device_space(path), self.profile)

    @staticmethod
    def parse_size(text: str) -> float:
        return checks.size_in_gb(text)

    @staticmethod
    def parse_workers(text: str) -> int:
        return checks.workers(text)

    async def allocate(self, path: Path, size_in_gb: float, workers: int, remove_plots: bool = False) -> str:
        """Start the allocation; returns the event source whose progress to follow."""
        raise ConfigError("this console has no miner to allocate for: run it with --role miner or --network devnet")

