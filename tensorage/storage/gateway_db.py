"""The gateway's manifest (``index/gateway.sqlite``): objects -> segments -> shards -> miners,
and each shard's unspent one-use audits. Metadata only: no object bytes ever live here.

Every change that matters is one transaction, so a kill leaves a consistent manifest: a shard
row is written *before* its PUT (state ``placing``), so a shard a miner may hold is always
known and the GC can delete it if the store never completes.

Object states: ``declared`` (quota reserved, no bytes yet) -> ``storing`` -> ``stored``;
``failed`` (interrupted: its shards are deleted by the GC), ``deleting`` (the client removed
it), ``damaged`` (a segment has fewer than k healthy shards).
Shard states: ``placing`` -> ``placed`` (object still storing) -> ``healthy``; ``lost`` (failed
an audit or a download, or its miner is gone), ``doomed`` (to be deleted on its miner).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import peewee as pw

from ..errors import CorruptIndex
from .audits import Audit
from .models import open_sqlite

QUOTA_STATES = ("declared", "storing", "stored", "damaged")
LIVE_SHARDS = ("placing", "placed", "healthy")


def _models(db: pw.Database):
    class Base(pw.Model):
        class Meta:
            database = db

    class ObjectRow(Base):
        id = pw.FixedCharField(max_length=32, primary_key=True)
        client = pw.CharField(index=True)
        size = pw.BigIntegerField()
        k = pw.IntegerField()
        n = pw.IntegerField()
        block = pw.IntegerField()
        per_segment = pw.IntegerField()  # stripes per segment
        segments = pw.IntegerField()
        state = pw.CharField(max_length=10, index=True)
        meta = pw.TextField(default="")
        created_at = pw.FloatField(default=time.time)
        stored_at = pw.FloatField(null=True)
        expires_at = pw.FloatField(null=True)
        reason = pw.TextField(default="")

        class Meta:
            table_name = "objects"

    class ShardRow(Base):
        id = pw.AutoField()
        object_id = pw.FixedCharField(max_length=32, index=True)
        segment = pw.IntegerField()
        idx = pw.IntegerField()          # erasure index 0..n-1
        hash = pw.FixedCharField(max_length=64, index=True)  # sha256 of the wrapped bytes = id on the miner
        wrap = pw.FixedCharField(max_length=32)  # wrap id: the keystream is derived from it
        miner = pw.CharField(index=True)
        size = pw.BigIntegerField()
        state = pw.CharField(max_length=8, index=True)
        misses = pw.IntegerField(default=0)      # audits in a row not answered in time
        passes = pw.IntegerField(default=0)
        last_audit_ok = pw.BooleanField(default=False)
        audited_at = pw.FloatField(null=True)
        placed_at = pw.FloatField(default=time.time)
        reason = pw.TextField(default="")
        attempts = pw.IntegerField(default=0)    # deletes tried on the miner (doomed shards)

        class Meta:
            table_name = "shards"
            indexes = ((("object_id", "segment"), False), (("miner", "state"), False))

    class AuditRow(Base):
        id = pw.AutoField()
        shard = pw.IntegerField(index=True)  # ShardRow.id
        offset = pw.BigIntegerField()
        length = pw.IntegerField()
        nonce = pw.BlobField()
        digest = pw.BlobField()

        class Meta:
            table_name = "audits"

    return ObjectRow, ShardRow, AuditRow


@dataclass(frozen=True)
class AuditTask:
    """One audit to ask a miner (what the gateway's seam hands to a proof round)."""

    audit_id: int
    shard_row: int
    shard: str        # shard id on the miner (sha256 of its bytes)
    miner: str        # miner hotkey
    size: int         # the shard's bytes: what a pass keeps crediting
    offset: int
    length: int
    nonce: bytes
    expected: bytes   # never sent


class GatewayStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_sqlite(path, "gateway manifest (objects stored through this validator)")
        self.Object, self.Shard, self.Audit = _models(self.db)
        try:
            with self.db.atomic():
                self.db.create_tables([self.Object, self.Shard, self.Audit])
        except pw.DatabaseError as exc:
            raise CorruptIndex(f"{path} cannot be used ({exc}): restore it from a backup; without it the "
                               f"objects stored through this validator cannot be found") from None

    def close(self) -> None:
        self.db.close()

    # objects -------------------------------------------------------------------------------
    def declare(self, **fields) -> None:
        with self.db.atomic():
            self.Object.create(state="declared", created_at=time.time(), **fields)

    def get(self, object_id: str):
        return self.Object.get_or_none(self.Object.id == object_id)

    def owned(self, client: str, object_id: str):
        return self.Object.get_or_none((self.Object.id == object_id) & (self.Object.client == client))

    def objects_of(self, client: str) -> list:
        return list(self.Object.select().where((self.Object.client == client)
                                               & self.Object.state.in_(QUOTA_STATES)).order_by(self.Object.created_at))

    def used_bytes(self, client: str) -> int:
        return int(self.Object.select(pw.fn.COALESCE(pw.fn.SUM(self.Object.size), 0))
                   .where((self.Object.client == client) & self.Object.state.in_(QUOTA_STATES)).scalar() or 0)

    def count_of(self, client: str) -> int:
        return self.Object.select().where((self.Object.client == client)
                                          & self.Object.state.in_(QUOTA_STATES)).count()

    def set_state(self, object_id: str, state: str, reason: str = "", only_from: Optional[Iterable[str]] = None) -> bool:
        with self.db.atomic():
            q = self.Object.update(state=state, reason=reason[:500]).where(self.Object.id == object_id)
            if only_from is not None:
                q = q.where(self.Object.state.in_(list(only_from)))
            return q.execute() > 0

    def commit(self, object_id: str) -> None:
        """The last segment is placed: the object and all its shards count from now on."""
        with self.db.atomic():
            self.Shard.update(state="healthy").where((self.Shard.object_id == object_id)
                                                     & (self.Shard.state == "placed")).execute()
            self.Object.update(state="stored", stored_at=time.time(), expires_at=None
                               ).where(self.Object.id == object_id).execute()

    def doom_object(self, object_id: str, state: str = "deleting", reason: str = "") -> None:
        """The object goes: its shards are queued for deletion on their miners, its quota is freed."""
        with self.db.atomic():
            self.Shard.update(state="doomed").where((self.Shard.object_id == object_id)
                                                    & (self.Shard.state != "doomed")).execute()
            self.Object.update(state=state, reason=reason[:500]).where(self.Object.id == object_id).execute()

    def objects_in(self, *states: str) -> list:
        return list(self.Object.select().where(self.Object.state.in_(list(states))))

    def doom_unfinished_repairs(self) -> int:
        """At start: shards a repair was still placing when the process stopped go to the GC."""
        done = self.Object.select(self.Object.id).where(self.Object.state.in_(["stored", "damaged"]))
        with self.db.atomic():
            return self.Shard.update(state="doomed", reason="repair interrupted by a restart").where(
                self.Shard.state.in_(["placing", "placed"]) & self.Shard.object_id.in_(done)).execute()

    def drop_object_if_empty(self, object_id: str) -> bool:
        with self.db.atomic():
            if self.Shard.select().where(self.Shard.object_id == object_id).exists():
                return False
            self.Object.delete().where(self.Object.id == object_id).execute()
            return True

    def health(self, object_ids: list[str]) -> dict[str, int]:
        """Fewest healthy shards of any segment, per object."""
        out: dict[str, int] = {}
        if not object_ids:
            return out
        rows = (self.Shard.select(self.Shard.object_id, self.Shard.segment, pw.fn.COUNT(self.Shard.id).alias("c"))
                .where(self.Shard.object_id.in_(object_ids) & (self.Shard.state == "healthy"))
                .group_by(self.Shard.object_id, self.Shard.segment))
        per: dict[str, dict[int, int]] = {}
        for r in rows:
            per.setdefault(r.object_id, {})[r.segment] = r.c
        for obj in self.Object.select(self.Object.id, self.Object.segments).where(self.Object.id.in_(object_ids)):
            segs = per.get(obj.id, {})
            out[obj.id] = min((segs.get(s, 0) for s in range(obj.segments)), default=0)
        return out

    # shards ---------------------------------------------------------------------------------
    def add_shard(self, **fields) -> int:
        with self.db.atomic():
            return self.Shard.create(state="placing", placed_at=time.time(), **fields).id

    def update_shard(self, row_id: int, **fields) -> None:
        with self.db.atomic():
            self.Shard.update(**fields).where(self.Shard.id == row_id).execute()

    def shard(self, row_id: int):
        return self.Shard.get_or_none(self.Shard.id == row_id)

    def segment_shards(self, object_id: str, segment: int, *states: str) -> list:
        q = self.Shard.select().where((self.Shard.object_id == object_id) & (self.Shard.segment == segment))
        if states:
            q = q.where(self.Shard.state.in_(list(states)))
        return list(q.order_by(self.Shard.idx))

    def object_shards(self, object_id: str, *states: str) -> list:
        q = self.Shard.select().where(self.Shard.object_id == object_id)
        if states:
            q = q.where(self.Shard.state.in_(list(states)))
        return list(q.order_by(self.Shard.segment, self.Shard.idx))

    def mark_lost(self, row_id: int, reason: str) -> bool:
        """True when the shard was live until now."""
        with self.db.atomic():
            return self.Shard.update(state="lost", reason=reason[:500], last_audit_ok=False).where(
                (self.Shard.id == row_id) & self.Shard.state.in_(list(LIVE_SHARDS))).execute() > 0

    def replace(self, lost_rows: list[int], new_rows: list[int]) -> None:
        """A repair landed: the new shards count, the lost ones go to the GC."""
        with self.db.atomic():
            self.Shard.update(state="healthy").where(self.Shard.id.in_(new_rows)).execute()
            if lost_rows:
                self.Shard.update(state="doomed").where(self.Shard.id.in_(lost_rows)).execute()
                self.Audit.delete().where(self.Audit.shard.in_(lost_rows)).execute()

    def doomed(self, limit: int = 500) -> list:
        return list(self.Shard.select().where(self.Shard.state == "doomed").order_by(self.Shard.id).limit(limit))

    def forget_shard(self, row_id: int) -> None:
        with self.db.atomic():
            self.Audit.delete().where(self.Audit.shard == row_id).execute()
            self.Shard.delete().where(self.Shard.id == row_id).execute()

    def miners_with_live_shards(self) -> list[str]:
        return [r.miner for r in self.Shard.select(self.Shard.miner).distinct()
                .where(self.Shard.state.in_(list(LIVE_SHARDS)))]

    def lose_miner(self, miner: str, reason: str) -> list:
        """Every live shard of a miner that is gone: lost. Returns the rows that were live."""
        rows = list(self.Shard.select().where((self.Shard.miner == miner) & self.Shard.state.in_(list(LIVE_SHARDS))))
        with self.db.atomic():
            self.Shard.update(state="lost", reason=reason[:500], last_audit_ok=False).where(
                self.Shard.id.in_([r.id for r in rows] or [-1])).execute()
        return rows

    def segments_below(self, n_of) -> list[tuple[str, int]]:
        """(object, segment) of stored or damaged objects with fewer healthy shards than their n."""
        objs = {o.id: o for o in self.Object.select().where(self.Object.state.in_(["stored", "damaged"]))}
        if not objs:
            return []
        healthy = (self.Shard.select(self.Shard.object_id, self.Shard.segment, pw.fn.COUNT(self.Shard.id).alias("c"))
                   .where(self.Shard.object_id.in_(list(objs)) & (self.Shard.state == "healthy"))
                   .group_by(self.Shard.object_id, self.Shard.segment))
        counts = {(r.object_id, r.segment): r.c for r in healthy}
        out = []
        for oid, obj in objs.items():
            for seg in range(obj.segments):
                if counts.get((oid, seg), 0) < n_of(obj):
                    out.append((oid, seg))
        return out

    # audits ---------------------------------------------------------------------------------
    def add_audits(self, row_id: int, audits: list[Audit]) -> None:
        with self.db.atomic():
            self.Audit.insert_many([{"shard": row_id, "offset": a.offset, "length": a.length, "nonce": a.nonce,
                                     "digest": a.digest} for a in audits]).execute()

    def audits_left(self, row_id: int) -> int:
        return self.Audit.select().where(self.Audit.shard == row_id).count()

    def needing_audits(self, limit: int = 50) -> list:
        """Healthy shards with no unspent audit left (refilled by downloading them once)."""
        spent = self.Audit.select(self.Audit.shard)
        return list(self.Shard.select().where((self.Shard.state == "healthy") & self.Shard.id.not_in(spent))
                    .order_by(self.Shard.audited_at.asc(nulls="first")).limit(limit))

    def take_audits(self, miner: str, limit: int) -> list[AuditTask]:
        """Spend one audit on each of up to ``limit`` of the miner's healthy shards, least recently
        audited first. Spent means deleted: an audit is never asked twice."""
        with self.db.atomic():
            shards = list(self.Shard.select().where((self.Shard.miner == miner) & (self.Shard.state == "healthy"))
                          .order_by(self.Shard.audited_at.asc(nulls="first"), self.Shard.id).limit(limit * 2))
            tasks: list[AuditTask] = []
            for s in shards:
                if len(tasks) >= limit:
                    break
                a = self.Audit.select().where(self.Audit.shard == s.id).order_by(self.Audit.id).first()
                if a is None:
                    continue  # waiting for a refill
                self.Audit.delete().where(self.Audit.id == a.id).execute()
                tasks.append(AuditTask(audit_id=a.id, shard_row=s.id, shard=s.hash, miner=miner, size=s.size,
                                       offset=a.offset, length=a.length, nonce=bytes(a.nonce),
                                       expected=bytes(a.digest)))
            return tasks

    def audit_passed(self, row_id: int) -> None:
        with self.db.atomic():
            self.Shard.update(misses=0, passes=self.Shard.passes + 1, last_audit_ok=True, audited_at=time.time()
                              ).where(self.Shard.id == row_id).execute()

    def audit_missed(self, row_id: int) -> int:
        """Count a late or unanswered audit; returns the misses in a row."""
        with self.db.atomic():
            self.Shard.update(misses=self.Shard.misses + 1, audited_at=time.time()).where(
                self.Shard.id == row_id).execute()
            row = self.shard(row_id)
            return row.misses if row else 0

    def audited_bytes_by_miner(self) -> dict[str, int]:
        """audited_bytes() of every miner at once: one query a proof window, not one per miner."""
        q = (self.Shard.select(self.Shard.miner, pw.fn.SUM(self.Shard.size).alias("b"))
             .where((self.Shard.state == "healthy") & (self.Shard.last_audit_ok == True))  # noqa: E712 - peewee
             .group_by(self.Shard.miner))
        return {r.miner: int(r.b or 0) for r in q}

    def audited_bytes(self, miner: str) -> int:
        return int(self.Shard.select(pw.fn.COALESCE(pw.fn.SUM(self.Shard.size), 0))
                   .where((self.Shard.miner == miner) & (self.Shard.state == "healthy")
                          & (self.Shard.last_audit_ok == True)).scalar() or 0)  # noqa: E712 - peewee

    def stats(self) -> dict[str, int]:
        objects = {r.state: r.c for r in self.Object.select(self.Object.state, pw.fn.COUNT(self.Object.id).alias("c"))
                   .group_by(self.Object.state)}
        shards = {r.state: r.c for r in self.Shard.select(self.Shard.state, pw.fn.COUNT(self.Shard.id).alias("c"))
                  .group_by(self.Shard.state)}
        return {**{f"objects_{k}": v for k, v in objects.items()}, **{f"shards_{k}": v for k, v in shards.items()},
                "audits": self.Audit.select().count()}
