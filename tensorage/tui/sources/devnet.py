"""A whole local subnet: the devnet supervisor in this process (chain clock, node processes whose
events it relays onto the bus). Node jobs are controlled over each node's operator API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

from ...client.session import ClientSession
from ...engines import devnet as rules
from ...engines.snapshot import AnySnapshot, ValidatorSnapshot
from ...errors import ConfigError
from .base import Source
from .views import Capabilities, Identity, JobRow, MinerRef, NodeRow, WeightRow, jobs_of


class DevnetSource(Source):
    caps = Capabilities(allocate=True, adds_miners=True, allocate_label="Add a miner to the devnet",
                        node_processes=True, node_files=True, judges=True, many_validators=True, secure=False,
                        client_data=True)

    def __init__(self, supervisor, clock: Callable[[], float] = time.time, cpus: Optional[int] = None) -> None:
        super().__init__(supervisor.settings, supervisor.bus, clock, cpus)
        self.supervisor = supervisor
        self.root: Path = supervisor.root
        self._reader = None  # our own chain connection before the supervisor has one
        self.names_dirty = True
        # the devnet's `client` wallet and key file, as `tensorage store --network devnet` uses them
        self.client = ClientSession(supervisor.settings, supervisor.bus)

    async def start(self) -> str:
        await self.supervisor.start()
        self.names_dirty = True
        spec = self.supervisor.spec
        n_v = len(spec.of_role("validator")) if spec else 0
        n_m = len(spec.of_role("miner")) if spec else 0
        return f"devnet at {self.root}: {n_v} validators, {n_m} miners"

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
        await self.supervisor.stop()
        if self._reader is not None:
            self._reader.close()

    def _nodes(self):
        spec = self.supervisor.spec_or_file()
        return spec.nodes if spec else []

    def identity(self) -> Identity:
        spec = self.supervisor.spec
        roles = "devnet supervisor"
        if spec is not None:
            roles += f": {len(spec.of_role('validator'))} validators, {len(spec.of_role('miner'))} miners"
        return Identity(kind="devnet", roles=roles, network="devnet", netuid=self.settings.resolved_netuid,
                        secure=False, wallet=f"one wallet per node in {self.root / 'wallets'}",
                        devnet_root=str(self.root))

    def _chain(self):
        if self.supervisor.chain is not None:
            return self.supervisor.chain
        from ...chain.devnet import Devnet
        from ...chain.devnet_init import devnet_exists

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
        spec = self.supervisor.spec_or_file()
        if spec is None:
            return {}
        self.names_dirty = False
        from ...chain.devnet_init import client_names

        return {**client_names(self.root), **spec.hotkey_names(self.root)}  # the client wallet is a neuron too

    def jobs(self, snapshots: dict[str, AnySnapshot]) -> list[JobRow]:
        rows = [JobRow("devnet", j) for j in self.supervisor.jobs.state()]
        for name, snap in sorted(snapshots.items()):
            rows += jobs_of(name, snap)  # controlled over the node's operator API
        return rows

    def chain_health(self, snapshots: dict[str, AnySnapshot]) -> dict[str, Any]:
        return {name: snap.chain for name, snap in sorted(snapshots.items()) if snap.state != "stopped"}

    async def control(self, row: JobRow, action: str) -> str:
        if row.source != "devnet":
            return await self.supervisor.node_job(row.source, row.info.id, action)
        command = {"run": self.supervisor.jobs.run_now, "pause": self.supervisor.jobs.pause,
                   "resume": self.supervisor.jobs.resume}[action]
        try:
            return command(row.info.id)[1]
        except KeyError:
            raise ConfigError(f"job {row.info.id} is gone") from None

    def nodes(self) -> list[NodeRow]:
        return [NodeRow(**n) for n in self.supervisor.state()]

    def load_node_files(self) -> dict[str, AnySnapshot]:
        return self.supervisor.node_snapshots()

    def validator_names(self) -> list[str]:
        return sorted(n.name for n in self._nodes() if n.role == "validator")

    def miners(self) -> list[MinerRef]:
        return [MinerRef(n.name, self.supervisor.db_root(n), n.size_in_gb) for n in self._nodes() if n.role == "miner"]

    def weight_rows(self, metagraph, weights_events: dict, snapshots: dict[str, AnySnapshot]) -> list[WeightRow]:
        if metagraph is None:
            return []
        validators = self.validator_names()
        rows = []
        for n in metagraph.neurons:
            if n.validator_permit:
                continue
            row = WeightRow(uid=n.uid, hotkey=n.hotkey, name="", incentive=n.incentive, consensus=n.consensus,
                            emission=n.emission)
            for v in validators:
                ev = weights_events.get(v)
                row.weight[v] = ev.weights.get(str(n.uid)) if ev is not None else None
                snap = snapshots.get(v)
                m = snap.miners.get(n.hotkey) if isinstance(snap, ValidatorSnapshot) else None
                row.ratio[v] = m.ratio if m else None
                row.score[v] = m.score if m else None
            rows.append(row)
        return rows

    # wizard: a new miner joins the devnet ------------------------------------------------------
    def default_path(self) -> str:
        spec = self.supervisor.spec_or_file()
        return str(self.root / "nodes" / (rules.next_miner_name(spec) if spec else "miner-0"))

    def default_workers(self) -> int:
        return min(self.settings.workers, self.cpus)

    def suggested_size_gb(self) -> float:
        return rules.NEW_MINER_SIZE_GB

    def check_path_for_source(self, path: Path) -> None:
        rules.check_new_miner_root(self.root, self.supervisor.spec_or_file(), path)

    async def allocate(self, path: Path, size_in_gb: float, workers: int, remove_plots: bool = False) -> str:
        node = await self.supervisor.add_miner(size_in_gb, str(path), workers)
        self.names_dirty = True
        return node.name
