"""The devnet a new user ends up with: two validators and seven miners (the default three plus four
added with the wizard), on fixed state. Tables must show all nine nodes, or scroll by keys."""

from __future__ import annotations

from tensorage.config import GB
from tensorage.events import ChallengeResult, PlanReady, PlotProgress
from tensorage.tui.app import ConsoleApp
from tensorage.tui.sources import DiskInfo

from . import conftest
from .conftest import DEVICE, NOW, StaticBackend, feed_fixed_events

EXTRA = {f"miner-{i}": 0.05 for i in range(3, 7)}
EXTRA_HOTKEYS = {name: f"5Extra{name[-1]}" + "x" * 42 for name in EXTRA}
EXTRA_UIDS = {name: 2 + int(name[-1]) for name in EXTRA}


def install(monkeypatch) -> None:
    """Four more miners in the fixed chain, names and devnet spec (the conftest reads its tables
    when called)."""
    monkeypatch.setattr(conftest, "HOTKEYS", {**conftest.HOTKEYS, **EXTRA_HOTKEYS})
    monkeypatch.setattr(conftest, "UIDS", {**conftest.UIDS, **EXTRA_UIDS})
    monkeypatch.setattr(conftest, "SIZES", {**conftest.SIZES, **EXTRA})


class NineNodes(StaticBackend):
    def load_disks(self) -> dict[str, DiskInfo]:
        base = {n: gb for n, gb in conftest.SIZES.items() if n not in EXTRA}
        out = {}
        for i, (name, gb) in enumerate(base.items()):
            planned, done = (4, 6, 9)[i], (4, 6, 5)[i]
            out[name] = DiskInfo(name=name, db_root=f"/srv/tensorage/devnet/nodes/{name}", size_bytes=int(gb * GB),
                                 planned=planned, done=done, verified=done, plot_bytes=done * 3_900_000,
                                 device_total=DEVICE.total, device_free=DEVICE.free)
        for name, gb in EXTRA.items():
            out[name] = DiskInfo(name=name, db_root=f"/srv/tensorage/devnet/nodes/{name}", size_bytes=int(gb * GB),
                                 planned=12, done=10, verified=10, plot_bytes=10 * 3_900_000,
                                 device_total=DEVICE.total, device_free=DEVICE.free)
        return out

    def load_node_files(self) -> dict:
        snaps = super().load_node_files()
        for name in EXTRA:  # every miner holds client shards: the widest shards column
            snap = snaps["miner-1"].model_copy(deep=True)
            snap.source, snap.hotkey, snap.shards, snap.shard_bytes = name, EXTRA_HOTKEYS[name], 12, 36_180_000
            snaps[name] = snap
        return snaps


def nine_node_app(kind: type = None) -> ConsoleApp:
    backend = (kind or NineNodes)()
    feed_fixed_events(backend.bus)
    for name in EXTRA:  # still plotting: an ETA in minutes
        size = int(EXTRA[name] * GB)
        backend.bus.publish(PlanReady(size_bytes=size, plot_bytes=12 * 3_900_000, reserve_bytes=size // 10,
                                      temp_bytes=7_800_000, free_bytes=0, plots=[18] * 12, to_make=12, to_remove=0,
                                      source=name, ts=NOW - 100))
        backend.bus.publish(PlotProgress(seed="0e" * 32, k=18, fraction=0.5, done=10, total=12, rate_per_hour=1234.0,
                                         eta_s=150.0, source=name, ts=NOW - 50))
        for v in ("validator-0", "validator-1"):
            backend.bus.publish(ChallengeResult(validator=conftest.HOTKEYS[v], miner_uid=EXTRA_UIDS[name],
                                                miner_hotkey=EXTRA_HOTKEYS[name], plots=4, proofs_returned=15,
                                                proofs_expected=15.2, result="pass", latency_ms=300.0, window=52,
                                                source=v, ts=NOW - 40))
    return ConsoleApp(backend, start_engines=False)
