"""Shared helpers: every benchmark prints measured / baseline ratios from the same process, and
states its headline figure with :func:`headline` (written as JSON with ``--json PATH``, which
``python -m benchmarks.run_all`` reads: nobody parses the printed tables)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

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


_JSON_PATH: Optional[Path] = None
HEADLINES: list[dict] = []  # this run's headline figures, in the order stated


def parse_args(parser: argparse.ArgumentParser, argv: Optional[list[str]] = None) -> argparse.Namespace:
    """``parser.parse_args`` plus ``--json PATH``: where :func:`headline` writes the figures."""
    global _JSON_PATH
    parser.add_argument("--json", metavar="PATH", help="also write the headline figures to PATH as JSON "
                        "(python -m benchmarks.run_all reads them)")
    args = parser.parse_args(argv)
    _JSON_PATH = Path(args.json) if args.json else None
    return args


def headline(what: str, value: float, unit: str, baseline: Optional[float] = None, baseline_what: str = "",
             target: str = "", met: Optional[bool] = None, note: str = "") -> dict:
    """A benchmark's headline figure (most state one; a few, one per shape measured), with the
    baseline it was measured against in the same run. ``met``: whether the target is met (None: no
    target). Written to ``--json`` at once, so a benchmark that fails later keeps what it measured."""
    item = {"what": what, "value": value, "unit": unit, "baseline": baseline, "baseline_what": baseline_what,
            "ratio": value / baseline if baseline else None, "target": target, "met": met, "note": note}
    HEADLINES.append(item)
    if _JSON_PATH is not None:
        _JSON_PATH.write_text(json.dumps({"headlines": HEADLINES}, indent=1))
    return item
