"""`?`: what the current screen shows and every key that works there."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GLOBAL_KEYS = (
    ("1 … 7", "Overview, Disk, Challenges, Weights, Jobs, Logs, Objects"),
    ("a", "allocation wizard (devnet: add a miner)"),
    ("ctrl+p", "command palette: run / pause / resume a job, switch screen, allocate, store a file"),
    ("? or F1", "this help (F1 also while typing in a box)"),
    ("q", "quit: stop the engines cleanly (nothing is left half written)"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q,f1", "dismiss_help", "Close", key_display="esc"),
    ]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        title = getattr(self.under, "TITLE_TEXT", "") or getattr(self.under, "MODE", "").capitalize() or "Help"
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column()
        own = list(getattr(self.under, "KEYS", ()))
        taken = {key for key, _ in own}
        for key, what in own + [(k, w) for k, w in GLOBAL_KEYS if k not in taken]:  # the screen's word wins
            keys.add_row(key, what)
        body = Group(Text(title, style="bold"), Text(getattr(self.under, "HELP", "")), Text(""),
                     Text("Keys", style="bold"), keys, Text(""), Text("esc, ? or q closes this help", style="dim"))
        with VerticalScroll(id="help-box"):
            yield Static(body, id="help-text")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
