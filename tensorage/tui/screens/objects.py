"""Objects: the client's files on its gateway (id, name, size, state, shard health, stored time)
and the stores and retrieves in flight, with store / retrieve / remove from the keyboard.

The listing comes from the gateway (``ClientSession.list`` in a worker) when the screen opens and
whenever an event says it changed (the gateway stored, deleted or repaired an object, an audit
lost a shard, one of our transfers ended): no polling. Paths are checked in the dialog (in a
thread) before anything starts; the transfers themselves run in the client session and report
as events.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Optional

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from ...client.session import by_bucket, default_name, display_name, input_file, output_file
from ...events import ClientTransfer
from ..format import bar, size
from ..messages import ObjectCommand
from ..widgets.keyed_table import KeyedTable
from .base import ConsoleScreen
from .confirm import ConfirmScreen
from .detail import DetailScreen
from .path_prompt import PathPrompt

COLUMNS = (("id", "id"), ("name", "name"), ("size", "size"), ("state", "state"), ("health", "health"),
           ("stored", "stored"))
ID_CELLS = 9  # 8 hex characters and an ellipsis: enter (or the line below) shows the whole id
NAME_MAX = 48
STATE_STYLE = {"stored": "green", "storing": "yellow", "declared": "yellow", "damaged": "bold red"}
BAR = 16


def stored_at(ts: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def health_text(o) -> Text:
    """Healthy shards (the fewest of any segment) of n, and the k any segment needs."""
    style = "green" if o.healthy >= o.n else "yellow" if o.healthy >= o.k else "bold red"
    return Text(f"{o.healthy}/{o.n} k{o.k}", style=style)


def plain_size(o) -> int:
    return o.plain_size if o.plain_size is not None else o.size


def transfer_line(t: ClientTransfer) -> Text:
    arrow = "↑" if t.op == "store" else "↓"
    line = Text(no_wrap=True, overflow="ellipsis")
    if t.state == "failed":
        line.append(f"✗ {t.op} {t.name}: ", style="bold red")
        line.append(t.detail, style="red")
        return line
    if t.state == "done":
        line.append(f"✓ {t.op} ", style="green")
        line.append(Path(t.name).name if t.op == "retrieve" else t.name, style="bold")
        line.append(f" {size(t.total if t.total is not None else t.done)} in {t.seconds:.1f}s")
        if t.op == "store" and t.object_id:
            line.append(f" → {t.object_id}", style="dim")
        elif t.op == "retrieve":
            line.append(f" → {t.name}", style="dim")
        return line
    name = t.name if t.op == "store" else Path(t.name).name
    line.append(f"{arrow} {t.op} ", style="cyan")
    line.append(name[:24], style="bold")
    line.append(" ")
    fraction = t.done / t.total if t.total else (None if t.total is None else 1.0)
    line.append_text(bar(fraction, BAR, "cyan"))
    total = size(t.total) if t.total is not None else "?"
    pct = f" {fraction * 100:.0f}%" if fraction is not None else ""
    line.append(f" {size(t.done)}/{total}{pct}")
    return line


class ObjectsScreen(ConsoleScreen):
    MODE = "objects"
    HELP = ("The client's objects on its validator gateway, as `tensorage ls` lists them: id, name (sealed with "
            "the key file, so only this client reads it), size, state, health (the fewest healthy shards of any "
            "segment, of n; any k rebuild a segment) and when it was stored. Below: stores and retrieves in "
            "flight, with their bytes done. The devnet console uses the devnet's `client` wallet and key file, "
            "as `tensorage store --network devnet` does. The listing is re-read when the gateway reports a "
            "change, not on a timer.")
    KEYS = (("↑/↓", "choose an object"), ("s", "store a file (type its path)"),
            ("r", "retrieve the object to a file (default: its name, here)"),
            ("d", "remove the object (asks first)"), ("enter", "the object's whole id and details"),
            ("F5", "list again from the gateway"))
    TOPICS = frozenset({"objects", "objects_loaded", "transfers", "names"})
    BINDINGS = [
        Binding("s", "store", "Store"),
        Binding("r", "retrieve", "Retrieve"),
        Binding("d,delete", "remove", "Delete", key_display="d"),
        Binding("f5", "reload", "Refresh", key_display="F5"),
    ]

    def body(self) -> Iterable[Widget]:
        yield Static(id="obj-head")
        yield KeyedTable(COLUMNS, id="obj-table")
        yield Static(id="obj-transfers")
        yield Static(" ", id="obj-detail")

    @property
    def session(self):
        return self.console.backend.client if self.console.backend.caps.client_data else None

    def on_mount(self) -> None:
        self.query_one("#obj-table").focus()

    def request_loads(self, topics: set[str]) -> None:
        if self.session is None:
            return
        app = self.console
        if topics & {"objects", "resume"}:
            self.need("objects")
        elif app.objects_error and topics & {"nodes", "chain"}:
            self.need("objects")  # no gateway yet: try again as the devnet comes up

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("store", "retrieve", "remove", "reload"):
            return self.session is not None
        return True

    # -- drawing ----------------------------------------------------------------------------------
    def objects(self) -> list:
        listing = self.console.objects
        return by_bucket(listing.objects) if listing is not None else []  # S3 objects grouped by bucket

    def selected(self):
        key = self.query_one("#obj-table", KeyedTable).selected_key()
        return next((o for o in self.objects() if o.id == key), None)

    def redraw(self, topics: set[str]) -> None:
        self.query_one("#obj-head", Static).update(self._head())
        if topics & {"objects_loaded", "resume", "names", "objects"}:
            self._table()
        self._transfers()
        self._detail()

    def _head(self) -> Text:
        app = self.console
        text = Text()
        if self.session is None:
            text.append("this console has no client wallet: store files with `tensorage store` (see "
                        "docs/operators.md), or open the devnet console", style="dim")
            return text
        listing = app.objects
        if listing is None and not app.objects_error:
            text.append("asking the gateway for this client's objects…", style="dim")
            return text
        if listing is not None:
            n = len(listing.objects)
            text.append(f"{n} object{'' if n == 1 else 's'}", style="bold")
            text.append(f" · {size(listing.used_bytes)} of {size(listing.quota_bytes)} quota")
            gw = listing.gateway
            name = app.state.names.get(gw.hotkey) if gw is not None else None
            if gw is not None:
                text.append(f" · gateway {name} (uid {gw.uid})" if name else f" · gateway uid {gw.uid}")
            wallet = f" · wallet {self.session.wallet_name}"
            if text.cell_len + len(wallet) <= (self.size.width or 80) - 2:  # on one line, or not at all
                text.append(wallet, style="dim")
            if listing.sealed:
                text.append(f"\nno key file yet ({self.session.key_file}): the first store makes it; back it up",
                            style="yellow")
        if app.objects_error:
            if listing is not None:
                text.append("\n")
            text.append(f"✗ {app.objects_error}", style="red")
        return text

    def _table(self) -> None:
        table = self.query_one("#obj-table", KeyedTable)
        width = self.size.width or 80
        # what the other columns take (cells plus 2 of padding each): the name gets the rest
        fixed = ID_CELLS + len("999.9 MB") + len("declared") + len("10/10 k10") + len("01-15 08:00") + 2 * len(COLUMNS)
        room = max(8, min(NAME_MAX, width - fixed - 4))
        rows = []
        for o in self.objects():
            shown = display_name(o)
            name = Text(shown, no_wrap=True) if shown is not None else Text("(sealed)", style="dim")
            if name.cell_len > room:
                name.truncate(room - 1)
                name.append("…")
            rows.append((o.id, [o.id[:ID_CELLS - 1] + "…", name, Text(size(plain_size(o)), justify="right"),
                                Text(o.state, style=STATE_STYLE.get(o.state, "")), health_text(o),
                                stored_at(o.created_at)]))
        table.sync(rows)

    def _transfers(self) -> None:
        transfers = list(self.console.state.transfers.values())
        widget = self.query_one("#obj-transfers", Static)
        if not transfers:
            widget.display = False
            return
        widget.display = True
        width = max(20, (self.size.width or 80) - 2)
        lines = Text("transfers", style="bold")
        running = [t for t in transfers if t.state == "running"]
        finished = [t for t in transfers if t.state != "running"][-max(1, 4 - len(running)):]
        for t in running[:4] + finished:
            line = transfer_line(t)
            line.truncate(width, overflow="ellipsis")
            lines.append("\n")
            lines.append_text(line)
        widget.update(lines)

    def _detail(self) -> None:
        o = self.selected()
        text = Text(no_wrap=True, overflow="ellipsis")
        if o is None:
            if self.session is not None and self.console.objects is not None and not self.objects():
                text.append("no objects yet: s stores a file", style="dim")
        else:
            text.append(o.id, style="bold")
            text.append(f" {o.name or '(sealed)'} · {o.segments} segment(s) · any {o.k} of {o.n} shards rebuild it",
                        style="dim")
        self.query_one("#obj-detail", Static).update(text, layout=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_detail()

    # -- keys -----------------------------------------------------------------------------------------
    def action_detail(self) -> None:
        o = self.selected()
        if o is None:
            return
        body = Text()
        plain = f" ({o.plain_size} bytes)" if o.plain_size is not None else " (ciphertext)"
        health = f"{o.healthy} of {o.n} shards healthy in its weakest segment; any {o.k} rebuild a segment"
        for label, value in (("id", o.id), ("name", o.name or "(sealed with another key file)"),
                             ("size", size(plain_size(o)) + plain),
                             ("stored", f"{size(o.size)} of ciphertext in {o.segments} segment(s)"),
                             ("state", o.state), ("health", health),
                             ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(o.created_at)))):
            body.append(f"{label:8}", style="bold")
            body.append(f"{value}\n")
        body.append("\nr retrieves it, d removes it (from this screen)", style="dim")
        self.app.push_screen(DetailScreen(o.name or o.id, body))

    def action_store(self) -> None:
        if self.session is None:
            return

        def done(path: Optional[Path]) -> None:
            if path is not None:
                self.post_message(ObjectCommand("store", path=path))

        self.app.push_screen(PathPrompt("Store a file", f"Path of the file to store (relative to {Path.cwd()}); "
                                                        f"it is encrypted with {self.session.key_file.name} "
                                                        f"before it leaves this machine.", "", input_file), done)

    def _target(self):
        """The selected object, when there is a session to act on it with (else a warning, None)."""
        if self.session is None:
            return None
        o = self.selected()
        if o is None:
            self.notify("no object selected", severity="warning")
        return o

    def action_retrieve(self) -> None:
        o = self._target()
        if o is None:
            return
        name = default_name(o)

        def done(path: Optional[Path]) -> None:
            if path is not None:
                self.post_message(ObjectCommand("retrieve", path=path, object_id=o.id))

        self.app.push_screen(PathPrompt(f"Retrieve {o.name or o.id}", "Where to write it (a directory keeps its "
                                                                       "name; an existing file is never replaced):",
                                        str(Path.cwd() / name), lambda text: output_file(text, name)), done)

    def action_remove(self) -> None:
        o = self._target()
        if o is None:
            return

        def done(yes: Optional[bool]) -> None:
            if yes:
                self.post_message(ObjectCommand("remove", object_id=o.id))

        self.app.push_screen(ConfirmScreen(f"Remove {o.name or o.id}?", f"object {o.id}, {size(plain_size(o))}",
                                           warning="its shards are deleted from the miners: it cannot be retrieved "
                                                   "afterwards"), done)

    def action_reload(self) -> None:
        self.need("objects")
