"""A big read-only table that renders only the lines on screen, from a line cache.

Toolong's trick for huge logs: the widget holds no rows, only a reference to a sequence
(a :class:`~tensorage.tui.state.RollingList` or a filtered view of one) and renders line
``y`` on demand. Appending 10,000 rows costs nothing until they scroll into view, and a
redraw touches only the visible lines. Newest rows are on top; while the cursor is on the
top row the table follows new rows, otherwise the view stays on the row being read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True)
class Column:
    label: str
    width: int  # 0: take the rest of the line
    justify: str = "left"


class Rows(Protocol):
    dropped: int
    version: int

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...


class ListRows:
    """A plain list with the attributes :class:`LazyTable` expects (for filtered views)."""

    def __init__(self, items: Optional[list] = None, version: int = 0) -> None:
        self.items = items if items is not None else []
        self.dropped = 0
        self.version = version

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


Cell = "str | Text"


class LazyTable(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"lazytable--header", "lazytable--cursor"}
    DEFAULT_CSS = """
    LazyTable {
        height: 1fr;
        scrollbar-size-horizontal: 0;
        scrollbar-size-vertical: 1;
        & > .lazytable--header { text-style: bold; background: $panel; color: $foreground; }
        & > .lazytable--cursor { background: $block-cursor-blurred-background; }
        &:focus > .lazytable--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    }
    """
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "Newest", show=False),
        Binding("end,G", "jump(-1)", "Oldest", show=False),
    ]

    cursor: reactive[int] = reactive(0, repaint=False, init=False)

    @dataclass
    class CursorMoved(Message):
        table: "LazyTable"
        row: Any

    def __init__(self, columns: Sequence[Column], render_row: Callable[[Any], Sequence[Any]],
                 rows: Optional[Rows] = None, *, empty: str = "nothing yet", name: Optional[str] = None,
                 id: Optional[str] = None, classes: Optional[str] = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self.render_row = render_row
        self.rows: Rows = rows if rows is not None else ListRows()
        self.empty = empty
        self._cache: LRUCache[tuple, Strip] = LRUCache(1024)
        self._seen_total = self.rows.dropped + len(self.rows)
        self._seen_version = self.rows.version
        self.render_epoch = 0  # bump to invalidate cached lines (e.g. names learned later)

    # -- data --------------------------------------------------------------------------------
    def set_rows(self, rows: Rows) -> None:
        """Show another sequence (a new filter): back to the top."""
        self.rows = rows
        self._cache.clear()
        self._seen_total = rows.dropped + len(rows)
        self._seen_version = rows.version
        self.cursor = 0
        self.scroll_to(y=0, animate=False, immediate=True)
        self._resize()
        self.refresh()

    def rows_changed(self) -> None:
        """The sequence grew (or dropped its oldest rows): keep the reader's place."""
        total = self.rows.dropped + len(self.rows)
        added = total - self._seen_total
        if self.rows.version != self._seen_version:
            self._cache.clear()
            self._seen_version = self.rows.version
        self._seen_total = total
        if added > 0 and (self.cursor > 0 or self.scroll_offset.y > 0):
            # rows appear on top: move down with the row being read
            self.set_reactive(LazyTable.cursor, min(len(self.rows) - 1, self.cursor + added))
            self._resize()
            self.scroll_to(y=self.scroll_offset.y + added, animate=False, immediate=True)
        else:
            self._resize()
        n = len(self.rows)
        if self.cursor >= n:
            self.set_reactive(LazyTable.cursor, max(0, n - 1))
        self.refresh()

    def invalidate(self) -> None:
        self._cache.clear()
        self.refresh()

    def current(self) -> Any:
        n = len(self.rows)
        if not n:
            return None
        return self.rows[self._index(min(self.cursor, n - 1))]

    def _index(self, display_row: int) -> int:
        return len(self.rows) - 1 - display_row

    def _resize(self) -> None:
        width = max(self.size.width, sum(c.width + 1 for c in self.columns))
        self.virtual_size = Size(self.size.width or width, len(self.rows) + 1)

    def on_resize(self) -> None:
        self._cache.clear()
        self._resize()

    # -- keys ----------------------------------------------------------------------------------
    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.CursorMoved(self, self.current()))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        n = len(self.rows)
        if n:
            self.cursor = max(0, min(n - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        n = len(self.rows)
        if n:
            self.cursor = 0 if where == 0 else n - 1

    # -- rendering -----------------------------------------------------------------------------
    def _line(self, cells: Sequence[Any], width: int, style: Style) -> Strip:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        fixed = sum(c.width + 1 for c in self.columns if c.width)
        for i, (col, cell) in enumerate(zip(self.columns, cells)):
            w = col.width or max(1, width - fixed)
            piece = cell if isinstance(cell, Text) else Text(str(cell))
            piece = piece.copy()
            piece.truncate(w, overflow="ellipsis")
            if col.justify == "right":
                piece.pad_left(w - piece.cell_len)
            else:
                piece.pad_right(w - piece.cell_len)
            if i:
                text.append(" ")
            text.append_text(piece)
        segments = list(text.render(self.app.console))
        segments = [s for s in segments if s.text != "\n"]
        strip = Strip(Segment.apply_style(segments, style), text.cell_len)
        return strip.crop_extend(0, width, style)

    def render_lines(self, crop):
        # styles once per frame, not once per line
        self._base_style = self.rich_style
        self._header_style = self.get_component_rich_style("lazytable--header")
        self._cursor_style = self.get_component_rich_style("lazytable--cursor")
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = getattr(self, "_base_style", None) or self.rich_style
        if y == 0:
            header = getattr(self, "_header_style", None) or self.get_component_rich_style("lazytable--header")
            return self._line([c.label for c in self.columns], width, base + header)
        n = len(self.rows)
        row = self.scroll_offset.y + y - 1
        if n == 0:
            if y == 1:
                return Strip([Segment(self.empty[:width].ljust(width), base + Style(dim=True))], width)
            return Strip.blank(width, base)
        if row >= n:
            return Strip.blank(width, base)
        index = self._index(row)
        key = (self.rows.dropped + index, width, self.render_epoch)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._line(self.render_row(self.rows[index]), width, base)
            self._cache[key] = strip
        if row == self.cursor:  # over the row's own colours, like DataTable's cursor
            cursor = getattr(self, "_cursor_style", None) or self.get_component_rich_style("lazytable--cursor")
            strip = Strip(Segment.apply_style(list(strip), post_style=cursor), strip.cell_length)
        return strip
