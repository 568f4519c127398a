"""A node's state as plain data, for `tensorage status --json`, scripts and the console."""

from __future__ import annotations

from typing import Any, Optional

from .config import Settings
from .errors import TensorageError
from .proofs.plots import proof_rate
from .storage.layout import Layout, device_space, dir_bytes
from .storage.models import MinerIndex, PlotState


def plots_status(layout: Layout) -> dict[str, Any]:
    if not layout.miner_db.exists():
        return {"planned": 0, "done": 0, "verified": 0, "bytes": 0, "by_k": {}}
    index = MinerIndex(layout.miner_db)
    try:
        counts = index.counts()
        rows = index.plots(PlotState.DONE, PlotState.VERIFIED)
        by_k: dict[str, int] = {}
        for r in rows:
            by_k[str(r.k)] = by_k.get(str(r.k), 0) + 1
        return {
            "planned": sum(counts.values()),
            "done": len(rows),
            "verified": counts.get(PlotState.VERIFIED.value, 0),
            "bytes": index.bytes_in(PlotState.DONE, PlotState.VERIFIED),
            "by_k": by_k,
            "expected_proofs_per_challenge": round(sum(proof_rate(r.k) for r in rows), 3),
            "last_verified_at": index.last_verified_at(),
        }
    finally:
        index.close()


def partition_status(settings: Settings, layout: Layout, plot_bytes: int) -> dict[str, Any]:
    device = device_space(layout.root)
    shards = dir_bytes(layout.shards)
    size = settings.size_bytes
    reserve = shards + int(settings.profile.reserve_fraction * size)
    return {
        "size_bytes": size,
        "plot_bytes": plot_bytes,
        "reserve_bytes": reserve,
        "shard_bytes": shards,
        "free_bytes": max(0, size - plot_bytes - shards),
        "device_free_bytes": device.free,
        "device_total_bytes": device.total,
    }


def chain_status(settings: Settings, hotkey: Optional[str]) -> dict[str, Any]:
    from .chain import connect

    out: dict[str, Any] = {"block": None, "uid": None}
    try:
        chain = connect(settings)
        try:
            mg = chain.metagraph()
        finally:
            chain.close()
    except TensorageError as exc:
        out["chain_error"] = str(exc)
        return out
    out["block"] = mg.block
    neuron = mg.by_hotkey(hotkey) if hotkey else None
    if neuron is not None:
        out.update(uid=neuron.uid, stake=neuron.total_stake, validator_permit=neuron.validator_permit,
                   incentive=neuron.incentive, emission=neuron.emission, axon=neuron.axon)
    return out


def node_status(settings: Settings, hotkey: Optional[str], with_chain: bool = True) -> dict[str, Any]:
    layout = Layout(settings.db_root).require_existing()
    plots = plots_status(layout)
    status: dict[str, Any] = {
        "network": settings.network,
        "netuid": settings.resolved_netuid,
        "secure": settings.profile.secure,
        "db_root_path": str(layout.root),
        "hotkey": hotkey,
        "block": None,
        "uid": None,
        "plots": plots,
        "partition": partition_status(settings, layout, plots["bytes"]),
    }
    if with_chain:
        status.update(chain_status(settings, hotkey))
    return status

