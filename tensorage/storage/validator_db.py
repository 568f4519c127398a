"""A validator's own state (``index/validator.sqlite``): miners, their listed plots,
challenge results, scores and weights.

No hash database: proofs of space are verified from the plot id, k and challenge
alone, so a validator stores only what it measured.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Optional

import peewee as pw

from ..errors import CorruptIndex
from .models import open_sqlite

KEEP_ROUNDS_PER_MINER = 200
KEEP_WEIGHTS = 200  # weight-setting log rows kept (the last successful one is always kept)


def _models(db: pw.Database):
    class Base(pw.Model):
        class Meta:
            database = db

    class MinerRow(Base):
        hotkey = pw.CharField(primary_key=True)
        uid = pw.IntegerField(index=True)
        axon = pw.CharField(null=True)
        protocol = pw.IntegerField(null=True)
        plots_synced_at = pw.FloatField(null=True)
        listed_plots = pw.IntegerField(default=0)
        accepted_plots = pw.IntegerField(default=0)
        listed_bytes = pw.BigIntegerField(default=0)  # bytes of accepted plots
        refused = pw.TextField(default="")  # why plots were refused, for the operator

        class Meta:
            table_name = "miners"

    class MinerPlot(Base):
        hotkey = pw.CharField(index=True)
        seed = pw.FixedCharField(max_length=64)
        k = pw.IntegerField()

        class Meta:
            table_name = "miner_plots"
            primary_key = pw.CompositeKey("hotkey", "seed")

    class RoundRow(Base):
        id = pw.AutoField()
        started_at = pw.FloatField(index=True)
        uid = pw.IntegerField()
        hotkey = pw.CharField(index=True)
        result = pw.CharField(max_length=12)
        plots = pw.IntegerField()
        proofs_returned = pw.IntegerField()
        proofs_expected = pw.FloatField()
        latency_ms = pw.FloatField()
        detail = pw.TextField(default="")

        class Meta:
            table_name = "rounds"

    class ScoreRow(Base):
        hotkey = pw.CharField(primary_key=True)
        uid = pw.IntegerField()
        returned = pw.FloatField(default=0.0)   # decayed sum of valid proofs returned
        expected = pw.FloatField(default=0.0)   # decayed sum of proofs an honest miner returns
        audited_bytes = pw.BigIntegerField(default=0)
        latency_ms = pw.FloatField(default=0.0)  # EMA of answered rounds
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

    return MinerRow, MinerPlot, RoundRow, ScoreRow, WeightsRow


class ValidatorStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_sqlite(path, "validator state (scores restart from zero)")
        (self.Miner, self.MinerPlot, self.Round, self.Score, self.Weights) = _models(self.db)
        try:
            with self.db.atomic():
                self.db.create_tables([self.Miner, self.MinerPlot, self.Round, self.Score, self.Weights])
        except pw.DatabaseError as exc:
            raise CorruptIndex(f"{path} cannot be used ({exc}): move it aside and start again") from None

    def close(self) -> None:
        self.db.close()

    # miners and their plots -------------------------------------------------------------
    def upsert_miner(self, hotkey: str, uid: int, axon: Optional[str]) -> None:
        with self.db.atomic():
            self.Miner.insert(hotkey=hotkey, uid=uid, axon=axon).on_conflict(
                conflict_target=[self.Miner.hotkey], update={self.Miner.uid: uid, self.Miner.axon: axon}
            ).execute()

    def forget_miners(self, keep_hotkeys: Iterable[str]) -> int:
        """Drop miners that left the metagraph (a new hotkey on the uid starts from zero)."""
        keep = list(keep_hotkeys)
        with self.db.atomic():
            gone = [m.hotkey for m in self.Miner.select(self.Miner.hotkey).where(self.Miner.hotkey.not_in(keep or [""]))]
            if gone:
                self.MinerPlot.delete().where(self.MinerPlot.hotkey.in_(gone)).execute()
                self.Round.delete().where(self.Round.hotkey.in_(gone)).execute()
                self.Score.delete().where(self.Score.hotkey.in_(gone)).execute()
                self.Miner.delete().where(self.Miner.hotkey.in_(gone)).execute()
        return len(gone)

    def set_miner_plots(self, hotkey: str, plots: list[tuple[str, int]], listed: int, listed_bytes: int,
                        refused: str, protocol: Optional[int]) -> None:
        with self.db.atomic():
            self.MinerPlot.delete().where(self.MinerPlot.hotkey == hotkey).execute()
            rows = [{"hotkey": hotkey, "seed": s, "k": k} for s, k in plots]
            for i in range(0, len(rows), 500):
                self.MinerPlot.insert_many(rows[i:i + 500]).execute()
            self.Miner.update(plots_synced_at=time.time(), listed_plots=listed, accepted_plots=len(plots),
                              listed_bytes=listed_bytes, refused=refused, protocol=protocol
                              ).where(self.Miner.hotkey == hotkey).execute()

    def touch_miner(self, hotkey: str) -> None:
        """The plot list was fetched again and has not changed."""
        with self.db.atomic():
            self.Miner.update(plots_synced_at=time.time()).where(self.Miner.hotkey == hotkey).execute()

    def miner_plots(self, hotkey: str) -> list[tuple[str, int]]:
        return [(p.seed, p.k) for p in self.MinerPlot.select().where(self.MinerPlot.hotkey == hotkey)]

    def miners(self) -> list:
        return list(self.Miner.select().order_by(self.Miner.uid))

    # rounds -----------------------------------------------------------------------------
    def record_rounds(self, rows: list[dict]) -> None:
        with self.db.atomic():
            for i in range(0, len(rows), 200):
                self.Round.insert_many(rows[i:i + 200]).execute()

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
        with self.db.atomic():
            for row in rows:
                self.Score.insert(**row).on_conflict_replace().execute()

    def clear_scores(self) -> None:
        with self.db.atomic():
            self.Score.delete().execute()

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
