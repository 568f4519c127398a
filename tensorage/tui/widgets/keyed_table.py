"""A DataTable that is updated in place from keyed rows, so the cursor stays put."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from textual.widgets import DataTable
from textual.widgets._data_table import CellDoesNotExist, RowKey


class KeyedTable(DataTable):
    DEFAULT_CSS = """
    KeyedTable { height: auto; max-height: 100%; }
    """

    def __init__(self, columns: Sequence[tuple[str, str]], *, id: Optional[str] = None,
                 classes: Optional[str] = None, cursor: bool = True) -> None:
        """``columns``: (key, label) pairs. ``cursor=False``: no row to choose, but still focusable
        (tab), so ↑/↓ scroll the rows that do not fit (the console has no mouse)."""
        super().__init__(id=id, classes=classes, cursor_type="row" if cursor else "none", zebra_stripes=False)
        self._column_spec = list(columns)

    def on_mount(self) -> None:
        self._ensure_columns()

    def _ensure_columns(self) -> None:
        """Columns before any row: a redraw can come before this table's own mount."""
        if not self.columns:
            for key, label in self._column_spec:
                self.add_column(label, key=key)

    def set_columns(self, columns: Sequence[tuple[str, str]]) -> None:
        """Replace the columns when they differ (the rows go too)."""
        if [k for k, _ in columns] == [k for k, _ in self._column_spec] and self.columns:
            return
        self.clear(columns=True)
        self._column_spec = list(columns)
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    def sync(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Make the table show exactly ``rows`` ((key, cells) in order), changing what differs."""
        self._ensure_columns()
        wanted = [k for k, _ in rows]
        current = [rk.value for rk in self.rows]
        if current != wanted:
            selected = self.selected_key()
            self.clear()
            for key, cells in rows:
                self.add_row(*cells, key=key)
            if selected in wanted:
                self.move_cursor(row=wanted.index(selected), animate=False)
            return
        col_keys = [k for k, _ in self._column_spec]
        for key, cells in rows:
            for col, value in zip(col_keys, cells):
                try:
                    if self.get_cell(key, col) != value:
                        self.update_cell(key, col, value, update_width=True)
                except CellDoesNotExist:
                    pass

    def selected_key(self) -> Optional[str]:
        if not self.row_count:
            return None
        try:
            key: RowKey = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key
        except CellDoesNotExist:
            return None
        return key.value
