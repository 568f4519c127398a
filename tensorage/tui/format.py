"""Small formatting helpers shared by the console's screens (plain functions, no state)."""

from __future__ import annotations

import time
from typing import Optional

from rich.text import Text

BAR_FULL = "█"
BAR_EMPTY = "░"


def size(n: Optional[float]) -> str:
    """Decimal units, like --size_in_gb and `df -H`."""
    if n is None:
        return "-"
    n = float(n)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n:.0f} B"


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def clock(ts: Optional[float]) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def short(hotkey: Optional[str], n: int = 8) -> str:
    if not hotkey:
        return "-"
    return hotkey if len(hotkey) <= n else hotkey[:n] + "…"


def bar(fraction: Optional[float], width: int, style: str = "green") -> Text:
    """A fixed-width bar; an unknown fraction is drawn empty and dim."""
    width = max(1, width)
    if fraction is None:
        return Text().append(BAR_EMPTY * width, style="dim")
    fraction = min(1.0, max(0.0, fraction))
    filled = int(round(fraction * width))
    out = Text()
    out.append(BAR_FULL * filled, style=style)
    out.append(BAR_EMPTY * (width - filled), style="dim")
    return out


def stacked_bar(parts: list[tuple[float, str]], width: int) -> Text:
    """One bar split into coloured parts proportional to their values."""
    total = sum(v for v, _ in parts if v > 0)
    out = Text()
    if total <= 0:
        return Text().append(BAR_EMPTY * width, style="dim")
    used = 0
    for i, (value, style) in enumerate(parts):
        if value <= 0:
            continue
        cells = width - used if i == len(parts) - 1 else int(round(value / total * width))
        cells = max(0, min(cells, width - used))
        out.append(BAR_FULL * cells, style=style)
        used += cells
    if used < width:
        out.append(BAR_EMPTY * (width - used), style="dim")
    return out


RESULT_STYLE = {"pass": "green", "fail": "red", "timeout": "yellow", "unreachable": "magenta", "served": "cyan"}
LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red"}


def result_text(result: str) -> Text:
    return Text(result, style=RESULT_STYLE.get(result, ""))


SPARK = "▁▂▃▄▅▆▇█"


def spark(values: list[float], width: int, low: Optional[float] = None, high: Optional[float] = None,
          style: str = "green") -> Text:
    """A one-line sparkline of the last ``width`` values; a fixed range keeps 100 % looking like 100 %."""
    values = list(values)[-width:] if width > 0 else []
    if not values:
        return Text().append("·" * max(0, width), style="dim")
    lo = min(values) if low is None else low
    hi = max(values) if high is None else high
    span = hi - lo
    chars = "".join(SPARK[0 if span <= 0 else int(round((min(hi, max(lo, v)) - lo) / span * (len(SPARK) - 1)))]
                    for v in values)
    return Text().append(chars, style=style)
