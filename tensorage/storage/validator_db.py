"""A validator's own state (``index/validator.sqlite``): miners, the listings their windows
are sampled from, window results, scores and weights.

No hash database: proofs of space are verified from the plot id, k and challenge alone,
so a validator stores only what it measured. A listing is one row, written only when it
changes: a reference to the file its canonical bytes are spooled in (proofs/listing_spool.py;
rows from before that hold the bytes), so a miner that relists thousands of plots costs one
row, not thousands, and the database does not hold a second copy of every listing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import peewee as pw

from ..errors import CorruptIndex
from .models import open_sqlite

# 2: proof windows (protocol 2); protocol-1 miners, rounds and scores are dropped
# 3: certified client shards (protocol 3): listings carry certificates (protocol-2 listings are
#    dropped: miners list again), rounds note shard chunks and client credit, scores keep client
#    credit per gateway; plot scores and weights are kept
SCHEMA_VERSION = 3
KEEP_ROUNDS_PER_MINER = 200
KEEP_WEIGHTS = 200  # weight-setting log rows kept (the last successful one is always kept)
KEEP_LISTINGS_PER_MINER = 3
_V1_TABLES = ("miner_plots", "rounds", "scores", "miners")


@dataclass(frozen=True)
class StoredListing:
    hotkey: str
    digest: str
    blob: bytes
    seen_block: int


def _models(db: pw.Database):
    class Base(pw.Model):
        class Meta:
            database = db

    class MetaRow(Base):
        key = pw.CharField(primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "meta"

    class MinerRow(Base):
        hotkey = pw.CharField(primary_key=True)
        uid = pw.IntegerField(index=True)
        axon = pw.CharField(null=True)
        protocol = pw.IntegerField(null=True)
        plots_synced_at = pw.FloatField(null=True)
        listing = pw.CharField(max_length=64, default="")  # digest of the latest listing seen
        listed_plots = pw.IntegerField(default=0)
        credited_bytes = pw.BigIntegerField(default=0)  # bytes of its plots the network counts
        refused = pw.TextField(default="")  # why the listing or some plots cannot count, for the operator

        class Meta:
            table_name = "miners"

    class ListingRow(Base):
        hotkey = pw.CharField(index=True)
        digest = pw.FixedCharField(max_length=64)
        blob = pw.BlobField()
        seen_block = pw.IntegerField()

        class Meta:
            table_name = "listings"
            primary_key = pw.CompositeKey("hotkey", "digest")

    class RoundRow(Base):
        id = pw.AutoField()
        window = pw.IntegerField(index=True)
        started_at = pw.FloatField(index=True)
        uid = pw.IntegerField()
        hotkey = pw.CharField(index=True)
        result = pw.CharField(max_length=12)
        plots = pw.IntegerField()
        proofs_returned = pw.IntegerField()
        proofs_expected = pw.FloatField()
        credit_bytes = pw.FloatField(default=0.0)  # plots and client shards, before any stake bound
        latency_ms = pw.FloatField()
        listing = pw.CharField(max_length=64, default="")
        detail = pw.TextField(default="")
        client_bytes = pw.FloatField(default=0.0)  # of credit_bytes, what certified client shards added
        chunks_asked = pw.IntegerField(default=0)
        chunks_right = pw.IntegerField(default=0)

        class Meta:
            table_name = "rounds"

    class ScoreRow(Base):
        hotkey = pw.CharField(primary_key=True)
        uid = pw.IntegerField()
        credit = pw.FloatField(default=0.0)     # decayed sum of bytes proven per window
        windows = pw.FloatField(default=0.0)    # decayed count of windows judged
        returned = pw.FloatField(default=0.0)   # decayed sums of proofs (display)
        expected = pw.FloatField(default=0.0)
        last_window = pw.IntegerField(default=-1)
        client = pw.TextField(default="{}")     # JSON {gateway hotkey: decayed sum of certified credit}
        latency_ms = pw.FloatField(default=0.0)
        proven_bytes = pw.FloatField(default=0.0)
        score = pw.FloatField(default=0.0)
        updated_at = pw.FloatField(default=time.time)

        class Meta:
            table_name = "scores"

    class WeightsRow(Base):
        id = pw.AutoField()
        block = pw.IntegerField()
        set_at = pw.FloatField()
        ok = pw.BooleanField()
        weights = pw.TextField()  # JSON {uid: weight}
        message = pw.TextField(default="")

        class Meta:
            table_name = "weights"

    return MetaRow, MinerRow, ListingRow, RoundRow, ScoreRow, WeightsRow


class ValidatorStore:
    """The validator writes it (one writer); ``readonly`` readers (status, the console, tests)
    never write, so they never contend with the running validator for its write lock."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.db = open_sqlite(path, "validator state (scores restart from zero)")
        (self.Meta, self.Miner, self.Listing, self.Round, self.Score, self.Weights) = _models(self.db)
        self.upgraded_from: Optional[int] = None
        if readonly:
            return
        try:
            with self.db.atomic("IMMEDIATE"):  # take the write lock first: a read-then-write could not wait
                self._upgrade()
                self.db.create_tables([self.Meta, self.Miner, self.Listing, self.Round, self.Score, self.Weights])
                self.Meta.insert(key="schema", value=str(SCHEMA_VERSION)).on_conflict_replace().execute()
        except pw.DatabaseError as exc:
            raise CorruptIndex(f"{path} cannot be used ({exc}): move it aside and start again") from None

    def _upgrade(self) -> None:
        """A protocol-1 database: its rounds and scores measured an unsound protocol; drop them
        (the weights log is kept). A protocol-2 one: its listings cannot carry certificates
        (dropped: miners list again at the next sync); rounds and scores gain their client
        columns, plot scores are kept."""
        tables = set(self.db.get_tables())
        if "meta" not in tables and "miners" in tables:
            self.upgraded_from = 1
            for table in _V1_TABLES:
                if table in tables:
                    self.db.execute_sql(f'DROP TABLE "{table}"')
            return
        if "meta" not in tables:
            return
        row = self.db.execute_sql("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None or int(row[0]) >= SCHEMA_VERSION:
            return
        self.upgraded_from = 2
        if "listings" in tables:
            self.db.execute_sql('DELETE FROM "listings"')
        if "rounds" in tables:
            for column, kind in (("client_bytes", "REAL"), ("chunks_asked", "INTEGER"), ("chunks_right", "INTEGER")):
                self.db.execute_sql(f'ALTER TABLE "rounds" ADD COLUMN {column} {kind} NOT NULL DEFAULT 0')
        if "scores" in tables:
            self.db.execute_sql('ALTER TABLE "scores" ADD COLUMN client TEXT NOT NULL DEFAULT \'{}\'')

    def close(self) -> None:
        self.db.close()

    # The writes a validator makes for every miner on every sync and window go through
    # ``executemany`` in one transaction: built in C, not row by row in Python, so the writer
    # thread barely holds the GIL the event loop needs.
    def _many(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            with self.db.atomic():
                self.db.cursor().executemany(sql, rows)

    # miners and their listings ---------------------------------------------------------
    def upsert_miners(self, rows: list[tuple[str, int, Optional[str]]]) -> None:
        """(hotkey, uid, axon) of every serving miner, in one transaction."""
        self._many('INSERT INTO "miners" (hotkey, uid, axon, listing, listed_plots, credited_bytes, refused) '
                   "VALUES (?, ?, ?, '', 0, 0, '') ON CONFLICT(hotkey) DO UPDATE SET uid = excluded.uid, "
                   "axon = excluded.axon", rows)

    def forget_miners(self, keep_hotkeys: Iterable[str]) -> int:
        """Drop miners that left the metagraph (a new hotkey on the uid starts from zero)."""
        keep = list(keep_hotkeys)
        with self.db.atomic():
            gone = [m.hotkey for m in self.Miner.select(self.Miner.hotkey).where(self.Miner.hotkey.not_in(keep or [""]))]
            if gone:
                for model in (self.Listing, self.Round, self.Score, self.Miner):
                    model.delete().where(model.hotkey.in_(gone)).execute()
        return len(gone)

    def set_listing_state(self, hotkey: str, listing: str, listed: int, credited_bytes: int, refused: str,
                          protocol: Optional[int]) -> None:
        with self.db.atomic():
            self.Miner.update(plots_synced_at=time.time(), listing=listing, listed_plots=listed,
                              credited_bytes=credited_bytes, refused=refused, protocol=protocol
                              ).where(self.Miner.hotkey == hotkey).execute()

    def add_listing(self, hotkey: str, digest: str, blob: bytes, seen_block: int,
                    keep: int = KEEP_LISTINGS_PER_MINER) -> None:
        """One row per listing a miner published; only the newest ``keep`` are kept. A listing seen
        again replaces its row: the row names the file the validator holds it in now
        (proofs/listing_spool.py), and the block it was seen at again."""
        with self.db.atomic():
            self.Listing.insert(hotkey=hotkey, digest=digest, blob=blob, seen_block=seen_block
                                ).on_conflict(conflict_target=[self.Listing.hotkey, self.Listing.digest],
                                              update={self.Listing.blob: blob,
                                                      self.Listing.seen_block: seen_block}).execute()
            old = [r.digest for r in self.Listing.select(self.Listing.digest).where(self.Listing.hotkey == hotkey)
                   .order_by(self.Listing.seen_block.desc()).offset(keep)]
            if old:
                self.Listing.delete().where((self.Listing.hotkey == hotkey) & self.Listing.digest.in_(old)).execute()

    @property
    def listing_dir(self) -> Path:
        """Where the validator spools listing files, next to this database (the VerifyPool's spool is
        ``index/verify``): what a row's reference names (proofs/listing_spool.py)."""
        return self.path.parent / "verify" / "listings"

    def listing(self, row: StoredListing, max_plots: int, max_shards: int):
        """A row's listing in memory, whatever form the row has (never owns the validator's file).
        Raises ``ListingUnavailable`` when the file is gone: a row outlives the file of a snapshot the
        validator stopped following (rows are what a restart tries; the newest is the one in use)."""
        from ..proofs.listing_spool import read_stored

        return read_stored(row.blob, max_plots, max_shards, self.listing_dir)

    def iter_listings(self):
        """Rows one at a time (a restart at the limits: 256 miners' old-format rows are 2 MB each)."""
        query = self.Listing.select().order_by(self.Listing.hotkey, self.Listing.seen_block)
        for r in query.iterator():
            yield StoredListing(r.hotkey, r.digest, bytes(r.blob), r.seen_block)

    def listings(self) -> list[StoredListing]:
        return [StoredListing(r.hotkey, r.digest, bytes(r.blob), r.seen_block)
                for r in self.Listing.select().order_by(self.Listing.hotkey, self.Listing.seen_block)]

    def touch_miners(self, hotkeys: list[str]) -> None:
        """Their plot lists were fetched again and have not changed."""
        now = time.time()
        self._many('UPDATE "miners" SET plots_synced_at = ? WHERE hotkey = ?', [(now, h) for h in hotkeys])

    def miners(self) -> list:
        return list(self.Miner.select().order_by(self.Miner.uid))

    # rounds -----------------------------------------------------------------------------
    ROUND_COLUMNS = ("window", "started_at", "uid", "hotkey", "result", "plots", "proofs_returned", "proofs_expected",
                     "credit_bytes", "latency_ms", "listing", "detail", "client_bytes", "chunks_asked", "chunks_right")
    SCORE_COLUMNS = ("hotkey", "uid", "credit", "windows", "returned", "expected", "last_window", "client",
                     "latency_ms", "proven_bytes", "score", "updated_at")

    def record_rounds(self, rows: list[dict]) -> None:
        cols = self.ROUND_COLUMNS
        self._many(f'INSERT INTO "rounds" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})',
                   [tuple(r[c] for c in cols) for r in rows])

    def prune_rounds(self, keep_per_miner: int = KEEP_ROUNDS_PER_MINER) -> None:
        """Bound the database: keep the most recent rounds of each miner."""
        with self.db.atomic():
            for m in self.Round.select(self.Round.hotkey).distinct():
                cutoff = (self.Round.select(self.Round.id).where(self.Round.hotkey == m.hotkey)
                          .order_by(self.Round.id.desc()).offset(keep_per_miner).limit(1).scalar())
                if cutoff is not None:
                    self.Round.delete().where((self.Round.hotkey == m.hotkey) & (self.Round.id <= cutoff)).execute()

    def recent_rounds(self, limit: int = 100, hotkey: Optional[str] = None) -> list:
        q = self.Round.select().order_by(self.Round.id.desc()).limit(limit)
        if hotkey:
            q = q.where(self.Round.hotkey == hotkey)
        return list(q)

    # scores and weights -------------------------------------------------------------------
    def scores(self) -> dict[str, object]:
        return {s.hotkey: s for s in self.Score.select()}

    def save_scores(self, rows: list[dict]) -> None:
        cols = self.SCORE_COLUMNS
        self._many(f'INSERT OR REPLACE INTO "scores" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})',
                   [tuple(r.get(c, 0) for c in cols) for r in rows])

    def log_weights(self, block: int, weights: dict[int, float], ok: bool, message: str = "",
                    keep: int = KEEP_WEIGHTS) -> None:
        with self.db.atomic():
            self.Weights.create(block=block, set_at=time.time(), ok=ok,
                                weights=json.dumps({str(k): v for k, v in weights.items()}), message=message)
            # Bound the log: the most recent ``keep`` rows, and always the last successful one
            # (what a restart restores).
            cutoff = (self.Weights.select(self.Weights.id).order_by(self.Weights.id.desc())
                      .offset(keep).limit(1).scalar())
            if cutoff is not None:
                last_ok = (self.Weights.select(pw.fn.MAX(self.Weights.id))
                           .where(self.Weights.ok == True).scalar())  # noqa: E712 - peewee expression
                self.Weights.delete().where((self.Weights.id <= cutoff)
                                            & (self.Weights.id != (last_ok or 0))).execute()

    def last_weights(self, ok_only: bool = True):
        q = self.Weights.select().order_by(self.Weights.id.desc()).limit(1)
        if ok_only:
            q = q.where(self.Weights.ok == True)  # noqa: E712 - peewee expression
        return q.first()
