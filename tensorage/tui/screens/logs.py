"""Logs: the event stream, newest first, filtered by level and source, searchable."""

from __future__ import annotations

import json
from typing import Iterable, Optional

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input, Static

from ...events import Event
from ..format import LEVEL_STYLE, clock
from ..state import LEVELS, level_of
from ..widgets.lazy_table import Column, ListRows, LazyTable
from .base import ConsoleScreen
from .detail import DetailScreen

COLUMNS = (Column("time", 8), Column("level", 7), Column("source", 11), Column("message", 0))


class LogsScreen(ConsoleScreen):
    MODE = "logs"
    HELP = ("Every engine event, newest first. Filter by minimum level (debug shows plot progress and job "
            "runs), by source (a node on the devnet), and search the text. Only the visible lines are "
            "rendered, so the full history (20,000 events) stays fast.")
    KEYS = (("l", "minimum level: debug → info → warning → error"), ("s", "next source (all, then each node)"),
            ("/", "search (Enter keeps it, Esc clears it)"), ("enter", "the whole event (long lines are cut)"),
            ("↑/↓ PgUp/PgDn Home/End", "move"))
    TOPICS = frozenset({"logs"})
    BINDINGS = [
        Binding("l", "level", "Level"),
        Binding("s", "source", "Source"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("escape", "clear_search", "Clear", show=False),
        Binding("enter", "detail", "Whole line"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.min_level = "info"
        self.source: Optional[str] = None
        self.search = ""
        self.view = ListRows()
        self._seen = 0  # state.logs.dropped + len at the last update
        self._seen_version = -1

    def body(self) -> Iterable[Widget]:
        yield Static(id="logs-filter")
        yield LazyTable(COLUMNS, self.render_row, self.view, empty="no events match", id="logs-table")
        yield Input(placeholder="search the log (Enter: keep, Esc: clear)", id="logs-search")

    def on_mount(self) -> None:
        self.query_one("#logs-search").display = False
        self.query_one(LazyTable).focus()

    def render_row(self, e: Event) -> list:
        level = level_of(e)
        return [clock(e.ts), Text(level, style=LEVEL_STYLE.get(level, "")), e.source or "-",
                Text(e.summary(), style=LEVEL_STYLE.get(level, ""))]

    def matches(self, e: Event) -> bool:
        if LEVELS.index(level_of(e)) < LEVELS.index(self.min_level):
            return False
        if self.source is not None and e.source != self.source:
            return False
        if self.search:
            needle = self.search.lower()
            return needle in e.summary().lower() or needle in e.source.lower()
        return True

    def rebuild(self) -> None:
        logs = self.console.state.logs
        self.view = ListRows([e for e in logs.items if self.matches(e)], version=self.view.version + 1)
        self._seen = logs.dropped + len(logs)
        self._seen_version = logs.version
        self.query_one(LazyTable).set_rows(self.view)

    def redraw(self, topics: set[str]) -> None:
        logs = self.console.state.logs
        if logs.version != self._seen_version:
            self.rebuild()  # the oldest events were forgotten: indexes moved
        else:
            total = logs.dropped + len(logs)
            new = total - self._seen
            if new > 0:
                self.view.items.extend(e for e in logs.items[-new:] if self.matches(e))
            self._seen = total
            self.query_one(LazyTable).rows_changed()
        self._status()

    def _status(self) -> None:
        text = Text()
        text.append("level ≥ ", style="dim")
        text.append(self.min_level, style="bold")
        text.append(" · source ", style="dim")
        text.append(self.source or "all", style="bold")
        if self.search:
            text.append(" · search ", style="dim")
            text.append(repr(self.search), style="bold")
        text.append(f" · {len(self.view)} of {len(self.console.state.logs)} events", style="dim")
        self.query_one("#logs-filter", Static).update(text, layout=False)

    def action_level(self) -> None:
        self.min_level = LEVELS[(LEVELS.index(self.min_level) + 1) % len(LEVELS)]
        self.rebuild()
        self._status()

    def action_source(self) -> None:
        sources = [None] + sorted(s for s in self.console.state.sources if s)
        i = sources.index(self.source) if self.source in sources else 0
        self.source = sources[(i + 1) % len(sources)]
        self.rebuild()
        self._status()

    def action_detail(self) -> None:
        event = self.query_one(LazyTable).current()
        if event is None:
            return
        level = level_of(event)
        body = Text(event.summary(), style=LEVEL_STYLE.get(level, ""))
        fields = {k: v for k, v in json.loads(event.to_json()).items() if k not in ("ts", "source")}
        body.append("\n\n" + json.dumps(fields, indent=2, default=str), style="dim")
        self.app.push_screen(DetailScreen(f"{clock(event.ts)} {level} {event.source or '-'}", body))

    def action_search(self) -> None:
        box = self.query_one("#logs-search", Input)
        box.display = True
        box.focus()

    def action_clear_search(self) -> None:
        box = self.query_one("#logs-search", Input)
        if not box.display and not self.search:
            return
        box.value = ""
        box.display = False
        self.search = ""
        self.rebuild()
        self._status()
        self.query_one(LazyTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "logs-search":
            self.search = event.value.strip()
            self.rebuild()
            self._status()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "logs-search":
            event.input.display = bool(self.search)
            self.query_one(LazyTable).focus()
