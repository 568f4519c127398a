"""Enter on a row whose text is cut: the whole of it, wrapped and scrollable; Esc or Enter closes."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static


class DetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close", key_display="esc")]

    def __init__(self, title: str, body: RenderableType) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-box"):
            yield Static(Text(self.title_text, style="bold"), id="detail-title")
            yield Static(self.body, id="detail-text")
            yield Static(Text("esc or enter closes · ↑/↓ scroll", style="dim"))
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#detail-box").focus()

    def action_close(self) -> None:
        self.dismiss(None)
