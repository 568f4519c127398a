"""The miner's plot index (``index/miner.sqlite``), in peewee.

SQLite holds metadata only, never plot or shard bytes. WAL mode, one writer per
database, and every state change in a transaction so a kill never leaves a
half-written row.
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Iterable, Optional

import peewee as pw

from ..errors import CorruptIndex, DiskError

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 10_000,
    "foreign_keys": 1,
}


class PlotState(str, Enum):
    PLANNED = "planned"      # in the plan, not started
    PLOTTING = "plotting"    # a child process is building it
    DONE = "done"            # final file in place, not verified
    VERIFIED = "verified"    # sample challenges answered with valid proofs
    FAILED = "failed"        # verification failed; the file is removed


def open_sqlite(path: Path, what: str, synchronous: str = "normal") -> pw.SqliteDatabase:
    """Open a SQLite file, turning "file is not a database" into an actionable error.
    ``synchronous="full"`` for a database whose commits are promises to someone else (a gateway's
    "stored"): WAL with NORMAL may lose the last commits on a power cut, FULL does not."""
    if not path.parent.is_dir():
        raise DiskError(f"{path.parent} does not exist: run `tensorage allocate` (or start the node) to create it")
    db = pw.SqliteDatabase(str(path), pragmas={**SQLITE_PRAGMAS, "synchronous": synchronous}, check_same_thread=False)
    try:
        db.connect(reuse_if_open=True)
        db.execute_sql("PRAGMA schema_version").fetchone()
    except pw.DatabaseError as exc:
        db.close()
        raise CorruptIndex(
            f"{path} is not a readable SQLite database ({exc}): move it aside and run the command again to "
            f"rebuild the {what} (nothing else was changed)"
        ) from None
    return db


def _plot_model(db: pw.Database) -> type[pw.Model]:
    class Plot(pw.Model):
        seed = pw.FixedCharField(max_length=64, primary_key=True)  # hex
        k = pw.IntegerField()
        position = pw.IntegerField(default=0)  # plotting order (largest first)
        bytes = pw.BigIntegerField(default=0)
        state = pw.CharField(max_length=16, default=PlotState.PLANNED.value, index=True)
        created_at = pw.FloatField(default=time.time)
        plotted_at = pw.FloatField(null=True)
        plot_seconds = pw.FloatField(null=True)
        verified_at = pw.FloatField(null=True)
        proofs_checked = pw.IntegerField(default=0)

        class Meta:
            database = db
            table_name = "plots"

    return Plot


class MinerIndex:
    """Plots of one miner: seed, k, bytes, state, verified_at."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_sqlite(path, "plot index from the plot files")
        self.Plot = _plot_model(self.db)
        try:
            with self.db.atomic():
                self.db.create_tables([self.Plot])
        except pw.DatabaseError as exc:
            raise CorruptIndex(f"{path} cannot be used ({exc}): move it aside and run the command again") from None

    def close(self) -> None:
        self.db.close()

    # reads -------------------------------------------------------------------------
    def plots(self, *states: PlotState) -> list:
        q = self.Plot.select().order_by(self.Plot.position, self.Plot.seed)
        if states:
            q = q.where(self.Plot.state.in_([s.value for s in states]))
        return list(q)

    def get(self, seed_hex: str):
        return self.Plot.get_or_none(self.Plot.seed == seed_hex)

    def counts(self) -> dict[str, int]:
        rows = self.Plot.select(self.Plot.state, pw.fn.COUNT(self.Plot.seed).alias("n")).group_by(self.Plot.state)
        return {r.state: r.n for r in rows}

    def bytes_in(self, *states: PlotState) -> int:
        q = self.Plot.select(pw.fn.COALESCE(pw.fn.SUM(self.Plot.bytes), 0))
        if states:
            q = q.where(self.Plot.state.in_([s.value for s in states]))
        return int(q.scalar() or 0)

    # writes (each one transaction) ---------------------------------------------------
    def add_planned(self, items: Iterable[tuple[str, int, int]]) -> None:
        """Insert (seed hex, k, estimated bytes) rows in plotting order."""
        with self.db.atomic():
            start = (self.Plot.select(pw.fn.MAX(self.Plot.position)).scalar() or 0) + 1
            for offset, (seed, k, est) in enumerate(items):
                self.Plot.create(seed=seed, k=k, bytes=est, position=start + offset, state=PlotState.PLANNED.value)

    def set_state(self, seed_hex: str, state: PlotState, **fields) -> None:
        with self.db.atomic():
            self.Plot.update(state=state.value, **fields).where(self.Plot.seed == seed_hex).execute()

    def mark_done(self, seed_hex: str, size: int, seconds: float) -> None:
        self.set_state(seed_hex, PlotState.DONE, bytes=size, plotted_at=time.time(), plot_seconds=seconds)

    def mark_verified(self, seed_hex: str, proofs: int) -> None:
        self.set_state(seed_hex, PlotState.VERIFIED, verified_at=time.time(), proofs_checked=proofs)

    def remove(self, seeds: Iterable[str]) -> None:
        seeds = list(seeds)
        if seeds:
            with self.db.atomic():
                self.Plot.delete().where(self.Plot.seed.in_(seeds)).execute()

    def last_verified_at(self) -> Optional[float]:
        return self.Plot.select(pw.fn.MAX(self.Plot.verified_at)).scalar()
