"""A node's state as plain data, for `tensorage status --json`, scripts and the console."""

from __future__ import annotations

import json
from typing import Any, Optional

from .config import Settings
from .errors import TensorageError
from .proofs.plots import proof_rate
from .storage.layout import Layout, device_space, dir_bytes
from .storage.models import MinerIndex, PlotState
from .storage.partition import reserve_bytes


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
    reserve = reserve_bytes(size, shards, settings.profile)
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


def validator_status(layout: Layout, rounds: int = 5) -> dict[str, Any]:
    """Per miner: its last rounds, its score; and the last weights set."""
    from .storage.validator_db import ValidatorStore

    store = ValidatorStore(layout.validator_state_db, readonly=True)
    try:
        scores = store.scores()
        miners = {}
        for m in store.miners():
            s = scores.get(m.hotkey)
            miners[str(m.uid)] = {
                "hotkey": m.hotkey, "axon": m.axon, "listing": m.listing, "plots_listed": m.listed_plots,
                "credited_bytes": m.credited_bytes, "refused": m.refused,
                "ratio": round(s.returned / s.expected, 4) if s and s.expected else None,
                "proven_bytes": s.proven_bytes if s else 0, "score": s.score if s else 0.0,
                "windows": round(s.windows, 2) if s else 0, "last_window": s.last_window if s else None,
                "latency_ms": round(s.latency_ms, 1) if s else None,
                "last_rounds": [{"window": r.window, "result": r.result, "proofs_returned": r.proofs_returned,
                                 "proofs_expected": round(r.proofs_expected, 2), "credit_bytes": r.credit_bytes,
                                 "latency_ms": round(r.latency_ms, 1), "at": r.started_at, "detail": r.detail}
                                for r in store.recent_rounds(limit=rounds, hotkey=m.hotkey)],
            }
        last = store.last_weights()
        weights = {"block": last.block, "set_at": last.set_at, "weights": json.loads(last.weights)} if last else None
        return {"miners": miners, "weights": weights}
    finally:
        store.close()


def process_status(state: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The node process as its state file left it; a "running" node whose pid is gone is "dead"."""
    if not state:
        return None
    import psutil

    out = {k: state.get(k) for k in ("state", "pid", "endpoint", "started_at", "updated_at")}
    if out["state"] == "running" and not (out["pid"] and psutil.pid_exists(out["pid"])):
        out["state"] = "dead"
    return out


def node_status(settings: Settings, hotkey: Optional[str], with_chain: bool = True) -> dict[str, Any]:
    from .engines.node import read_node_state

    layout = Layout(settings.db_root).require_existing()
    plots = plots_status(layout)
    state = read_node_state(layout) or {}
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
        "role": state.get("role") or ("validator" if layout.validator_state_db.exists() else "miner"),
        "process": process_status(state),
        "jobs": state.get("jobs", []),
    }
    if layout.validator_state_db.exists():
        status["validator"] = validator_status(layout)
    if with_chain:
        status.update(chain_status(settings, hotkey))
    return status



def devnet_status(settings: Settings) -> dict[str, Any]:
    """The whole local subnet: chain, metagraph and every node's status."""
    from .chain.devnet import Devnet, SubnetSpec

    root = settings.devnet_root
    spec = SubnetSpec.load(root)
    chain = Devnet.open(root, settings.resolved_netuid)
    try:
        mg = chain.metagraph()
        last_epoch = chain.last_epoch_block()
    finally:
        chain.close()
    names = spec.hotkey_names(root)
    nodes: dict[str, Any] = {}
    for node in spec.nodes:
        db_root = node.db_root_path or str(root / "nodes" / node.name)
        node_settings = settings.model_copy(update={"db_root_path": db_root, "size_in_gb": node.size_in_gb or 0.001})
        hotkey = next((h for h, n in names.items() if n == node.name), None)
        try:
            nodes[node.name] = node_status(node_settings, hotkey, with_chain=False)
        except TensorageError as exc:
            nodes[node.name] = {"role": node.role, "error": str(exc)}
        nodes[node.name]["uid"] = mg.by_hotkey(hotkey).uid if hotkey and mg.by_hotkey(hotkey) else None
    return {
        "network": "devnet", "netuid": mg.netuid, "secure": False, "block": mg.block, "last_epoch": last_epoch,
        "devnet_root": str(root),
        "metagraph": [{"uid": n.uid, "node": names.get(n.hotkey), "hotkey": n.hotkey, "stake": n.total_stake,
                       "validator_permit": n.validator_permit, "axon": n.axon, "trust": n.trust,
                       "consensus": n.consensus, "incentive": n.incentive, "dividends": n.dividends,
                       "emission": n.emission, "last_update": n.last_update} for n in mg.neurons],
        "nodes": nodes,
    }
