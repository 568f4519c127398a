"""What every main screen shares: the title bar, the footer, and redrawing by topic."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Iterable

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from ..messages import NeedData
from ..widgets.chrome import NavBar

# Topics that answer a read (never start one, so reads cannot loop).
LOADED = frozenset({"resume", "names", "chain_loaded", "nodefiles", "disk_loaded", "objects_loaded"})

if TYPE_CHECKING:
    from ..app import ConsoleApp


class ConsoleScreen(Screen):
    MODE: ClassVar[str] = ""
    HELP: ClassVar[str] = ""
    KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()  # (key, what it does) for the help screen
    TOPICS: ClassVar[frozenset[str]] = frozenset()

    @property
    def console(self) -> "ConsoleApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE, self.status_text(), id="nav")
        yield from self.body()
        yield Footer(show_command_palette=False)

    def body(self) -> Iterable[Widget]:
        return ()

    def status_text(self) -> str:
        app = self.console
        ident = app.backend.identity()
        parts = [ident.network]
        if app.block is not None:
            parts.append(f"block {app.block}")
        if app.engine_state != "running":
            parts.append(app.engine_state)
        elif ident.link:
            parts.append("node lost")
        down = [name for name, h in app.chain_health().items() if h.state == "unreachable"]
        if down:  # short: the title bar keeps it in view at 80 columns
            parts.append("⚠ chain down" if len(down) == 1 else f"⚠ chain down ({len(down)} nodes)")
        return " ".join(parts)

    def need(self, *what: str) -> None:
        """Ask the app for fresh reads (it runs them in thread workers and tells us when done)."""
        self.post_message(NeedData(frozenset(what)))

    def on_screen_resume(self) -> None:
        self.refresh_view(set(self.TOPICS) | {"resume", "names"})

    def request_loads(self, topics: set[str]) -> None:
        """Ask the app for the file and chain reads this screen needs (thread workers)."""

    def refresh_view(self, topics: set[str]) -> None:
        try:
            self.query_one(NavBar).status = self.status_text()
        except Exception:
            pass
        self.request_loads(topics)  # only engine-event topics and "resume" start reads
        if topics & (self.TOPICS | LOADED):
            self.redraw(topics)

    def redraw(self, topics: set[str]) -> None:
        """Subclasses render from ``self.console.state`` and the app's loaded data."""
