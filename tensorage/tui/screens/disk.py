"""Disk: each miner's partition (plots, client reserve, temp, free) and its progress, live."""

from __future__ import annotations

from typing import Iterable, Optional

from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable, Static

from ..format import duration, pct, size
from ..widgets.disk_panel import DiskPanel, DiskView, disk_views
from ..widgets.keyed_table import KeyedTable
from .base import ConsoleScreen

COLUMNS = (("node", "miner"), ("uid", "uid"), ("share", "share"), ("plots", "plotted"), ("verified", "verified"),
           ("proven", "proven"), ("shards", "shards"), ("rate", "rate/h"), ("eta", "ETA"))


class DiskScreen(ConsoleScreen):
    MODE = "disk"
    HELP = ("Each miner's disk share: plots planned, plotted, verified (sample challenges after plotting) and "
            "proven (proofs returned over proofs expected in validators' challenges), the partition into plots, "
            "client reserve, temp space and free space, the client shards it holds for validators' gateways "
            "(count and bytes: they count against the share with the plots, and plots give way to them), the "
            "plotting rate and ETA, and the device's free space. It follows plotting live; the plot index is "
            "re-read only when a plot is made, verified or removed, the shard counts when a shard is stored or "
            "deleted.")
    KEYS = (("↑/↓", "choose a miner"), ("a", "allocate a disk share (devnet: add a miner)"))
    TOPICS = frozenset({"disk", "disk_files", "disk_loaded", "challenges", "names", "chain_loaded", "nodes", "shards",
                        "nodefiles"})

    def body(self) -> Iterable[Widget]:
        yield Static("miners", id="disk-title", classes="section")
        yield KeyedTable(COLUMNS, id="disk-table")
        yield DiskPanel(id="disk-panel")

    def request_loads(self, topics: set[str]) -> None:
        if topics & {"disk_files", "resume", "nodes"}:
            self.need("disks")
        if self.console.backend.caps.node_files and topics & {"shards", "jobs", "resume", "nodes"}:
            self.need("nodefiles")  # shard counts live in the miners' state files

    def views(self) -> list[DiskView]:
        app = self.console
        return disk_views(app.state, app.backend, app.metagraph, app.disk_infos, app.snapshots)

    def redraw(self, topics: set[str]) -> None:
        views = self.views()
        table = self.query_one("#disk-table", KeyedTable)
        rows = []
        # below 100 columns the shards column is the count only (the panel has the bytes): the table
        # then fits 80 columns with a scrollbar, so no cell is cut and no row hides behind a scrollbar
        compact = self.size.width < 100
        for v in views:
            proven = pct(v.proven_ratio) if v.served is None else f"{v.served} ans."
            rate = f"{v.rate_per_hour:.0f}" if v.rate_per_hour else "-"
            eta = duration(v.eta_s) if v.eta_s is not None else ("done" if v.planned and v.done >= v.planned else "-")
            plotted = Text(f"{v.done}/{v.planned}", style="yellow" if v.busy else "")
            shards = ("-" if v.shards is None else str(v.shards) if compact or not v.shards
                      else f"{v.shards} · {size(v.shard_bytes)}")
            rows.append((v.name, [v.name, "-" if v.uid is None else str(v.uid), size(v.share), plotted,
                                  f"{v.verified}/{v.planned}", proven, shards, rate, eta]))
        table.sync(rows)
        self.query_one("#disk-title", Static).update(
            f"miners ({len(views)})" if views else "miners: none yet (a: allocate)")
        selected = table.selected_key()
        view: Optional[DiskView] = next((v for v in views if v.name == selected), views[0] if views else None)
        self.query_one(DiskPanel).show(view, self.size.width)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.redraw({"disk"})
