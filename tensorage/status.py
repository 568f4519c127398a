"""A node's state as plain data, for `tensorage status --json`, scripts and the console."""

from __future__ import annotations

import json
from typing import Any, Optional

import peewee as pw

from .config import GB, Settings, with_defaults
from .engines.snapshot import AnySnapshot, MinerSnapshot, read_snapshot
from .errors import TensorageError
from .proofs.plots import proof_rate
from .storage import share as stored_share
from .storage.layout import Layout, device_space, dir_bytes, safety_margin
from .storage.lock import holder as lock_holder
from .storage.models import MinerIndex, PlotState
from .storage.partition import reserve_bytes
from .storage.share import ShareState


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


def merge_plots(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The plot counts of several disks as one."""
    if len(parts) == 1:
        return parts[0]
    by_k: dict[str, int] = {}
    for p in parts:
        for k, n in p["by_k"].items():
            by_k[k] = by_k.get(k, 0) + n
    merged = {key: sum(p.get(key, 0) for p in parts) for key in ("planned", "done", "verified", "bytes")}
    merged["by_k"] = by_k
    merged["expected_proofs_per_challenge"] = round(sum(p.get("expected_proofs_per_challenge", 0) for p in parts), 3)
    merged["last_verified_at"] = max((p.get("last_verified_at") or 0 for p in parts), default=0) or None
    return merged


def disks_status(settings: Settings, snap: Optional[AnySnapshot]) -> list[dict[str, Any]]:
    """Each --db_root_path disk: what the running miner says, else what its files say."""
    if isinstance(snap, MinerSnapshot) and snap.state != "stopped" and snap.disks:
        return [d.model_dump() for d in snap.disks]
    out = []
    for i, root in enumerate(settings.db_roots):
        layout = Layout(root)
        entry: dict[str, Any] = {"path": str(root), "home": i == 0, "state": "ok", "reason": ""}
        if not layout.index.is_dir():
            entry.update(state="lost", reason=f"{root} holds no tensorage index (gone, unmounted or never allocated)")
        else:
            try:
                plots = plots_status(layout)
                dev = device_space(root)
                entry.update(plots=plots["done"], planned=plots["planned"], plot_bytes=plots["bytes"],
                             device_total=dev.total, device_free=dev.free)
            except (OSError, pw.DatabaseError) as exc:
                entry.update(state="lost", reason=f"{root} cannot be read: {exc}")
        out.append(entry)
    return out


def partition_status(settings: Settings, layout: Layout, plot_bytes: int, size_in_gb: float) -> dict[str, Any]:
    device = device_space(layout.root)
    shards = dir_bytes(layout.shards)
    size = int(size_in_gb * GB)
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


def process_status(snap: Optional[AnySnapshot], layout: Layout) -> Optional[dict[str, Any]]:
    """The node process: as its state file left it, checked against the root's lock (a node that
    says "running" but holds no lock crashed: "dead")."""
    held = lock_holder(layout)
    if snap is None:
        return {"state": "running", "pid": held.pid, "role": held.role} if held else None
    out: dict[str, Any] = {"state": snap.state, "pid": snap.pid, "endpoint": snap.endpoint,
                           "published": snap.published, "started_at": snap.started_at, "updated_at": snap.updated_at}
    if snap.state != "stopped" and held is None:
        out["state"] = "dead"
    elif held is not None and held.pid != snap.pid:
        out.update(state="running", pid=held.pid, endpoint=None)  # another process took the root since
    return out


def live_snapshot(settings: Settings, snap: AnySnapshot) -> Optional[AnySnapshot]:
    """The running node's own answer on its operator API (fresher than its state file), or None."""
    import asyncio

    from .chain.wallets import load_wallet
    from .net.operator import NodeAddress, OperatorClient

    if not snap.endpoint:
        return None
    try:
        wallet = load_wallet(settings)
    except TensorageError:
        return None
    if wallet.hotkey.ss58_address != snap.hotkey:
        return None

    async def ask() -> AnySnapshot:
        client = OperatorClient(wallet, NodeAddress.parse(snap.endpoint or ""))
        try:
            return await client.state()
        finally:
            await client.close()

    try:
        return asyncio.run(asyncio.wait_for(ask(), 5.0))
    except (TensorageError, TimeoutError, OSError):
        return None


def share_status(settings: Settings, layout: Layout, snap: Optional[AnySnapshot]) -> ShareState:
    """The running miner's share, else the one stored with the node, else the default."""
    if isinstance(snap, MinerSnapshot) and snap.share is not None and snap.state != "stopped":
        return snap.share
    return stored_share.resolve(settings, layout)[1]


def node_status(settings: Settings, hotkey: Optional[str], with_chain: bool = True,
                live: bool = True) -> dict[str, Any]:
    layout = Layout(settings.db_root).require_existing()
    plots = merge_plots([plots_status(Layout(r)) for r in settings.db_roots if Layout(r).index.is_dir()])
    snap = read_snapshot(layout)
    process = process_status(snap, layout)
    source = "file"
    if live and snap is not None and process and process["state"] == "running" and process["pid"] == snap.pid:
        fresh = live_snapshot(settings, snap)
        if fresh is not None:
            snap, source = fresh, "live"
    role = snap.role if snap else ("validator" if layout.validator_state_db.exists() else "miner")
    share = share_status(settings, layout, snap)
    status: dict[str, Any] = {
        "network": settings.network,
        "netuid": settings.resolved_netuid,
        "secure": settings.profile.secure,
        "db_root_path": str(layout.root),
        "hotkey": hotkey,
        "block": None,
        "uid": None,
        "role": role,
        "plots": plots,
        "process": process,
        "state_from": source if snap else None,  # live: the node's operator API; file: its node.json
        "jobs": [j.model_dump() for j in snap.jobs] if snap else [],
        # the node's own view of its chain (ok / unreachable since T, last error, next retry)
        "chain_health": snap.chain.model_dump() if snap else None,
        "metrics": snap.metrics if snap else None,  # host:port of its Prometheus metrics, when served
    }
    if role == "miner":
        status["share"] = share.model_dump()
        status["partition"] = partition_status(settings, layout, plots["bytes"], share.size_in_gb)
        status["disks"] = disks_status(settings, snap)
        if isinstance(snap, MinerSnapshot) and snap.allocator.last_error:
            status["allocator_error"] = snap.allocator.last_error  # why plotting stopped (e.g. a full disk)
    if layout.validator_state_db.exists():
        try:
            status["validator"] = validator_status(layout)
        except pw.OperationalError:  # the validator is creating its tables right now: ask again in a moment
            status["validator"] = {"miners": {}, "weights": None,
                                   "note": "the validator is creating its database; ask again in a moment"}
    full = disk_full_status(layout)
    if full:
        status["disk_full"] = full
    if with_chain:
        status.update(chain_status(settings, hotkey))
    return status


def disk_full_status(layout: Layout) -> Optional[str]:
    """Said from the device itself: a full disk also stops the node writing its node.json, so the
    state file cannot be what tells."""
    try:
        dev = device_space(layout.root)
    except OSError:
        return None
    if dev.free >= safety_margin(dev.total):
        return None
    return (f"the disk under {layout.root} is full ({dev.free / 1e6:.1f} MB free of {dev.total / 1e9:.3g} GB): "
            f"the node cannot write its index or state; free some space on it")


def devnet_status(settings: Settings) -> dict[str, Any]:
    """The whole local subnet: chain, metagraph and every node's status."""
    from .chain.devnet import Devnet, SubnetSpec
    from .engines.devnet import node_db_root

    root = settings.devnet_root
    spec = SubnetSpec.load(root)
    from .chain.devnet_faults import read_fault

    chain = Devnet.open(root, settings.resolved_netuid)
    try:
        mg = chain.metagraph()
        last_epoch = chain.last_epoch_block()
        fault = read_fault(chain)
    finally:
        chain.close()
    names = spec.hotkey_names(root)
    nodes: dict[str, Any] = {}
    for node in spec.nodes:
        node_settings = with_defaults(settings, {"db_root_path": str(node_db_root(root, node)),
                                                 "size_in_gb": node.size_in_gb or 0.001})  # not typed flags
        hotkey = next((h for h, n in names.items() if n == node.name), None)
        try:
            nodes[node.name] = node_status(node_settings, hotkey, with_chain=False, live=False)
        except TensorageError as exc:
            nodes[node.name] = {"role": node.role, "error": str(exc)}
        nodes[node.name]["uid"] = mg.by_hotkey(hotkey).uid if hotkey and mg.by_hotkey(hotkey) else None
    return {
        "network": "devnet", "netuid": mg.netuid, "secure": False, "block": mg.block, "last_epoch": last_epoch,
        "devnet_root": str(root),
        "fault": fault.describe() if fault is not None else None,  # `tensorage devnet fault`
        "metagraph": [{"uid": n.uid, "node": names.get(n.hotkey), "hotkey": n.hotkey, "stake": n.total_stake,
                       "validator_permit": n.validator_permit, "axon": n.axon, "trust": n.trust,
                       "consensus": n.consensus, "incentive": n.incentive, "dividends": n.dividends,
                       "emission": n.emission, "last_update": n.last_update} for n in mg.neurons],
        "nodes": nodes,
    }
