"""The plotting child process: ``python -m tensorage.proofs.plot_child``.

Imports only what it needs (startup is paid once per plot): builds one plot with
chiapos, whose progress lines go to stdout for the parent to read, optionally
verifies it, and prints one result line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

from ..errors import PlotError
from ..procutil import die_with_parent

RESULT_PREFIX = "TENSORAGE-RESULT "


def main(argv: Optional[list[str]] = None) -> int:
    die_with_parent()
    p = argparse.ArgumentParser(prog="python -m tensorage.proofs.plot_child")
    p.add_argument("--tmp", required=True, type=Path)
    p.add_argument("--final", required=True, type=Path)
    p.add_argument("--filename", required=True)
    p.add_argument("--k", required=True, type=int)
    p.add_argument("--id", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--verify", action="store_true")
    a = p.parse_args(argv)
    from . import chia
    from .plot_check import verify_plot

    plot_id = bytes.fromhex(a.id)
    started = time.monotonic()
    a.tmp.mkdir(parents=True, exist_ok=True)
    chia.create_plot(a.tmp, a.final, a.filename, a.k, plot_id, a.threads)
    seconds = time.monotonic() - started
    final = a.final / a.filename
    proofs = 0
    if a.verify:
        try:
            proofs = verify_plot(final, plot_id, a.k)
        except PlotError as exc:
            sys.stdout.write(RESULT_PREFIX + json.dumps({"error": str(exc)}) + "\n")
            sys.stdout.flush()
            return 3
    sys.stdout.write(RESULT_PREFIX + json.dumps({"bytes": final.stat().st_size, "seconds": seconds,
                                                 "proofs": proofs}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
