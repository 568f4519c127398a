"""The console's frame: a one-line title bar with the screens, and the devnet notice."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from ...config import DEVNET_INSECURE_NOTICE

SCREENS = (("1", "overview", "Overview"), ("2", "disk", "Disk"), ("3", "challenges", "Challenges"),
           ("4", "weights", "Weights"), ("5", "jobs", "Jobs"), ("6", "logs", "Logs"), ("7", "objects", "Objects"))


class NavBar(Static):
    """`` tensorage │ 1 Overview  2 Disk … │ devnet block 123`` with the current screen lit.

    When the labels and the status do not both fit (80 columns), the other screens show their
    number only, so the network and block always stay in view.
    """

    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; color: $foreground; }
    """

    status: reactive[str] = reactive("")

    def __init__(self, current: str, status: str = "", id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.current = current
        self.set_reactive(NavBar.status, status)

    def _tabs(self, compact: bool) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        text.append(" tensorage ", style="bold")
        text.append("│", style="dim")
        for key, mode, label in SCREENS:
            if mode == self.current:
                text.append(f" {key} {label} ", style="bold reverse")
            elif compact:
                text.append(f" {key}", style="bold")
            else:
                text.append(f" {key}", style="bold")
                text.append(f" {label} ", style="dim")
        return text

    def render(self) -> Text:
        width = self.size.width or 80
        text = self._tabs(compact=False)
        if self.status and width - text.cell_len - 2 < len(self.status):  # labels would cut the status
            text = self._tabs(compact=True)
        sep = "│ " if text.plain.endswith(" ") else " │ "
        room = width - text.cell_len - len(sep)
        if self.status and room >= 6:
            status = self.status if len(self.status) <= room else self.status[: room - 1] + "…"
            text.append(sep, style="dim")
            text.append(status)
        return text


class DevnetNotice(Static):
    DEFAULT_CSS = """
    DevnetNotice { height: auto; color: $warning; padding: 0 1; }
    """

    def __init__(self, id: Optional[str] = None) -> None:
        super().__init__(f"⚠ {DEVNET_INSECURE_NOTICE}", id=id)
