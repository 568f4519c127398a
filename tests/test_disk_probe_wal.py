"""The disks job's probe must not take the plot index's SQLite locks away from the miner.

A process holds POSIX locks per file: closing any descriptor of a file drops every lock the process
holds on it. A probe that opened and closed ``index/miner.sqlite`` with plain ``open()`` (every 5 s
in the miner) let the next reader in another process (the console, ``tensorage status``) believe it
was the last connection: it checkpointed and deleted the WAL while the miner kept writing into the
deleted file. Seen on a console devnet: plots done and verified in the miner's log stayed
"plotting"/"planned" for every other reader (Disk showed 2/4 verified), and a restart would lose them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tensorage.storage.disk_probe import probe
from tensorage.storage.layout import Layout
from tensorage.storage.models import MinerIndex

COUNT = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
         "print(c.execute('select count(*) from plots').fetchone()[0]); c.close()")


def rows_seen_by_another_process(db: Path) -> int:
    out = subprocess.run([sys.executable, "-c", COUNT, str(db)], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_a_probe_leaves_the_miners_index_readable_by_other_processes(tmp_path):
    layout = Layout(tmp_path / "miner")
    layout.ensure()
    layout.plots.mkdir(parents=True, exist_ok=True)
    index = MinerIndex(layout.miner_db)  # the miner's own connection, open as long as it runs
    try:
        index.add_planned([("aa" * 32, 18, 1000)])
        assert probe(layout) is None  # the disks job, in the miner's process
        assert rows_seen_by_another_process(layout.miner_db) == 1  # the console reads and closes
        index.add_planned([("bb" * 32, 18, 1000)])  # the miner goes on writing
        assert Path(f"{layout.miner_db}-wal").exists()
        assert rows_seen_by_another_process(layout.miner_db) == 2
    finally:
        index.close()
    assert rows_seen_by_another_process(layout.miner_db) == 2  # and after the miner stops
