"""Client shards need room now (engines/allocator.py and engines/disks.py free_for_shards, called by
the miner's shard routes before it refuses a PUT): finished plots go, smallest first, until the bytes
fit; a plot being made stays; each removal is a file, an index row and a PlotRemoved event; with
several disks only the home disk, where shards live, gives plots up. Real plots and indexes."""

from __future__ import annotations

import shutil

from tensorage.chain.devnet import SubnetSpec
from tensorage.config import settings_from_namespace
from tensorage.engines.allocator import Allocator
from tensorage.engines.disks import DiskSet
from tensorage.events import EventBus, PlotRemoved
from tensorage.proofs.plots import plot_filename
from tensorage.storage.models import MinerIndex, PlotState


def settings_for(root, *roots):
    return settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root), "wallet.name": "miner-0",
                                    "db_root_path": str(roots[0]), "more_db_root_paths": [str(r) for r in roots[1:]],
                                    "size_in_gb": 0.03})


def hotkey_of(root) -> str:
    spec = SubnetSpec.load(root)
    return spec.wallet(root, next(n for n in spec.nodes if n.name == "miner-0")).hotkey.ss58_address


def on_disk(layout) -> set[str]:
    return {p.name for p in layout.plots.glob("plot-k*.plot")}


def test_finished_plots_go_smallest_first_until_the_shards_fit(plotted_devnet):
    home = plotted_devnet / "nodes" / "miner-0"
    bus = EventBus()
    removed: list[PlotRemoved] = []
    bus.subscribe(lambda e: removed.append(e) if isinstance(e, PlotRemoved) else None)
    allocator = Allocator(settings_for(plotted_devnet, home), hotkey_of(plotted_devnet), bus, source="miner-0")
    try:
        index = allocator.index
        rows = sorted(index.plots(PlotState.VERIFIED), key=lambda r: (r.bytes, r.seed))
        assert len(rows) == 4 and len({r.bytes for r in rows}) > 1  # plot sizes vary with the seed
        being_made = rows[0]  # the smallest, but still plotting: left alone
        index.set_state(being_made.seed, PlotState.PLOTTING)
        files = on_disk(allocator.layout)

        assert allocator.free_for_shards(0) == allocator.free_for_shards(-5) == 0
        assert removed == [] and on_disk(allocator.layout) == files

        freed = allocator.free_for_shards(1)  # one byte: the smallest finished plot
        first = rows[1]
        assert freed == first.bytes
        assert [(e.seed, e.k, e.reason) for e in removed] == [(first.seed, first.k, "client shards need the room")]
        assert index.get(first.seed) is None
        assert plot_filename(first.k, bytes.fromhex(first.seed)) not in on_disk(allocator.layout)
        assert allocator.status.done == 2  # counts follow (the one plotting is not done)

        freed = allocator.free_for_shards(rows[2].bytes + 1)  # more than the next: the two left go
        assert freed == rows[2].bytes + rows[3].bytes
        assert [e.seed for e in removed] == [first.seed, rows[2].seed, rows[3].seed]
        assert allocator.free_for_shards(10**9) == 0  # nothing finished is left
        assert [r.seed for r in index.plots()] == [being_made.seed]
        assert on_disk(allocator.layout) == {plot_filename(being_made.k, bytes.fromhex(being_made.seed))}
    finally:
        allocator.close()


def test_a_fresh_disk_has_nothing_to_free(plotted_devnet, tmp_path):
    allocator = Allocator(settings_for(plotted_devnet, tmp_path / "empty"), hotkey_of(plotted_devnet), EventBus())
    try:
        assert allocator.free_for_shards(10**6) == 0
        assert not (tmp_path / "empty").exists()  # asking wrote nothing
    finally:
        allocator.close()


def test_with_two_disks_only_the_home_disk_gives_plots_up(plotted_devnet, tmp_path):
    home = plotted_devnet / "nodes" / "miner-0"
    other = tmp_path / "disk-b"
    (other / "index").mkdir(parents=True)
    shutil.copytree(home / "plots", other / "plots")  # plots there too (the same ones: only counts matter here)
    shutil.copy(home / "index" / "miner.sqlite", other / "index" / "miner.sqlite")
    disks = DiskSet(settings_for(plotted_devnet, home, other), hotkey_of(plotted_devnet), EventBus(), source="miner-0")
    try:
        before_home, before_other = on_disk(disks.disks[0].layout), on_disk(disks.disks[1].layout)
        smallest = min(disks.home.index.plots(PlotState.VERIFIED), key=lambda r: (r.bytes, r.seed))
        assert disks.free_for_shards(1) == smallest.bytes
        assert before_home - on_disk(disks.disks[0].layout) == {plot_filename(smallest.k, bytes.fromhex(smallest.seed))}
        assert on_disk(disks.disks[1].layout) == before_other
        index = MinerIndex(other / "index" / "miner.sqlite")
        try:
            assert len(index.plots(PlotState.VERIFIED)) == 4
        finally:
            index.close()
    finally:
        disks.close()
