"""The console's frame: a one-line title bar with the screens, and the devnet notice."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from ...config import DEVNET_INSECURE_NOTICE

SCREENS = (("1", "overview", "Overview"), ("2", "disk", "Disk"), ("3", "challenges", "Challenges"),
           ("4", "weights", "Weights"), ("5", "jobs", "Jobs"), ("6", "logs", "Logs"))


class NavBar(Static):
    """`` tensorage │ 1 Overview  2 Disk … │ devnet block 123`` with the current screen lit.

    The screens always fit (73 columns); the status on the right is shortened to what fits.
    """

    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; color: $foreground; }
    """

    status: reactive[str] = reactive("")

    def __init__(self, current: str, status: str = "", id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.current = current
        self.set_reactive(NavBar.status, status)

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        text.append(" tensorage ", style="bold")
        text.append("│", style="dim")
        for key, mode, label in SCREENS:
            if mode == self.current:
                text.append(f" {key} {label} ", style="bold reverse")
            else:
                text.append(f" {key}", style="bold")
                text.append(f" {label} ", style="dim")
        room = (self.size.width or 80) - text.cell_len - 2
        if self.status and room >= 6:
            status = self.status if len(self.status) <= room else self.status[: room - 1] + "…"
            text.append("│ ", style="dim")
            text.append(status)
        return text


class DevnetNotice(Static):
    DEFAULT_CSS = """
    DevnetNotice { height: auto; color: $warning; padding: 0 1; }
    """

    def __init__(self, id: Optional[str] = None) -> None:
        super().__init__(f"⚠ {DEVNET_INSECURE_NOTICE}", id=id)
