"""A yes/no question over the current screen (``ModalScreen[bool]``)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No", key_display="n/esc"),
    ]

    def __init__(self, question: str, detail: str = "", warning: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.warning = warning  # what cannot be undone, shown in red

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question, style="bold"), id="confirm-question")
            if self.detail:
                yield Static(self.detail, id="confirm-detail")
            if self.warning:
                yield Static(Text(f"⚠ {self.warning}", style="bold red"), id="confirm-warning")
            yield Static(Text.assemble(("y", "bold"), " yes   ", ("n", "bold"), " / ", ("esc", "bold"), " no"),
                         id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
