"""Shared helpers: every benchmark prints measured / baseline ratios from the same process."""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.table import Table

console = Console()


@contextmanager
def timer() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.perf_counter()
    yield box
    box.append(time.perf_counter() - start)


def report(title: str, rows: list[tuple[str, str, str, str, str]]) -> None:
    """rows: (what, measured, baseline, ratio, target)."""
    t = Table(title=title)
    for col in ("what", "measured", "baseline", "ratio", "target"):
        t.add_column(col, justify="left" if col == "what" else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    console.print(f"[dim]{os.cpu_count()} CPUs, Python {os.sys.version.split()[0]}[/]")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else values[0]
