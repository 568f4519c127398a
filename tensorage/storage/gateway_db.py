"""The gateway's manifest (``index/gateway.sqlite``): objects -> segments -> shards -> miners, with
each shard's certificate and health. Metadata only: no object bytes ever live here.

Every change that matters is one transaction, so a kill leaves a consistent manifest: a shard row
is written *before* its PUT (state ``placing``), so a shard a miner may hold is always known and
the GC can delete it if the store never completes. The commit that tells a client "stored" is
made with ``synchronous=FULL``: a power cut after it cannot roll the object back.

Object states: ``declared`` (quota reserved, no bytes yet) -> ``storing`` -> ``stored``;
``failed`` (interrupted: its shards are deleted by the GC), ``deleting`` (the client removed
it). (Protocol 2 also had ``damaged``; such rows read as stored: an object is never given up.)

Shard states: ``placing`` -> ``placed`` (object still storing) -> ``healthy``; ``suspect`` (a
window or a download found a chunk wrong or missing; re-checked), ``lost`` (repeated verifiable
failures: the miner answered, signed, and was wrong or missing), ``doomed`` (replaced or removed:
to be deleted on its miner). A suspect or lost shard stays a source for retrieval and repair until
its replacement is placed; only then is it doomed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import peewee as pw

from ..errors import CorruptIndex
from .models import open_sqlite

QUOTA_STATES = ("declared", "storing", "stored", "damaged")
MIN_SHARD_CHARGE = 64 << 10  # each of an object's n shards costs at least this much quota: a miner's certificate,
                             # listing entry and tree cost the same for 1 byte as for 64 KiB, and the miner's count
                             # cap (shards per gateway) is what tiny objects would exhaust


def charged_bytes(size: int, k: int, n: int) -> int:
    """Quota an object costs: its bytes on miners (size times n/k), but at least MIN_SHARD_CHARGE per shard."""
    return max(-(-size * n // k), n * MIN_SHARD_CHARGE)
LIVE_OBJECTS = ("stored", "damaged")
LIVE_SHARDS = ("placing", "placed", "healthy", "suspect")
SOURCES = ("healthy", "suspect", "lost")  # shards a retrieval or repair may read (hash-checked)
SCHEMA_VERSION = 3  # 3: Merkle ids, certificates, suspect shards (protocol 3); 2: sha256 ids, one-use audits


@dataclass(frozen=True)
class ManifestTotals:
    objects: dict[str, tuple[int, int]]  # state -> (objects, bytes)
    shards: dict[str, int]  # state -> shards
    repair_segments: int


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
        hash = pw.FixedCharField(max_length=64, index=True)  # Merkle id of the wrapped bytes = id on the miner
        wrap = pw.FixedCharField(max_length=32)  # wrap id: the keystream is derived from it
        miner = pw.CharField(index=True)
        size = pw.BigIntegerField()
        state = pw.CharField(max_length=8, index=True)
        placed_at = pw.FloatField(default=time.time)
        reason = pw.TextField(default="")
        attempts = pw.IntegerField(default=0)    # deletes tried on the miner (doomed shards)
        failures = pw.IntegerField(default=0)    # verifiable failures in a row (signed re-checks)
        suspect_at = pw.FloatField(null=True)    # when it became suspect
        bad_chunk = pw.IntegerField(null=True)   # the chunk found wrong or missing (re-checks ask for it)
        checked_at = pw.FloatField(null=True)    # the last re-check that got a verifiable answer
        cert_expiry = pw.IntegerField(default=0)  # block until which its certificate counts
        cert_served = pw.BigIntegerField(default=0)  # the "served" its certificate carries
        served = pw.BigIntegerField(default=0)   # bytes it served to retrievals since its period began

        class Meta:
            table_name = "shards"
            indexes = ((("object_id", "segment"), False), (("miner", "state"), False))

    return ObjectRow, ShardRow


class GatewayStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_sqlite(path, "gateway manifest (objects stored through this validator)", synchronous="full")
        self.Object, self.Shard = _models(self.db)
        self.upgraded_from: Optional[int] = None
        try:
            with self.db.atomic("IMMEDIATE"):
                self._upgrade()
                self.db.create_tables([self.Object, self.Shard])
                self.db.execute_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except pw.DatabaseError as exc:
            raise CorruptIndex(f"{path} cannot be used ({exc}): restore it from a backup (`tensorage gateway "
                               f"restore`); without it the objects stored through this validator cannot be "
                               f"found") from None

    def _upgrade(self) -> None:
        """Protocol 2 named shards by sha256 and audited them with one-use digests: its shard rows
        are kept (renamed ``shards_v2``) with their objects until they are migrated; nothing is
        deleted because of a version change."""
        tables = set(self.db.get_tables())
        version = self.db.execute_sql("PRAGMA user_version").fetchone()[0]
        if "shards" in tables and version < SCHEMA_VERSION:
            self.upgraded_from = 2
            self.db.execute_sql('ALTER TABLE "shards" RENAME TO "shards_v2"')
            for (name,) in self.db.execute_sql("SELECT name FROM sqlite_master WHERE type = 'index' AND "
                                               "tbl_name = 'shards_v2' AND sql IS NOT NULL").fetchall():
                self.db.execute_sql(f'DROP INDEX "{name}"')  # the new table's indexes take these names
            if "audits" in tables:
                self.db.execute_sql('DROP TABLE "audits"')

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
        """What the client's objects cost (:func:`charged_bytes`, summed)."""
        on_miners = pw.Cast(self.Object.size, "REAL") * self.Object.n / self.Object.k
        expr = pw.fn.COALESCE(pw.fn.SUM(pw.fn.MAX(on_miners, self.Object.n * MIN_SHARD_CHARGE)), 0)
        return int(self.Object.select(expr).where((self.Object.client == client)
                                                  & self.Object.state.in_(QUOTA_STATES)).scalar() or 0)

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
        """The last segment is placed: the object and all its shards count from now on (durable
        before the client hears "stored": this database commits with synchronous=FULL)."""
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
        """At start: shards a repair was still placing when the process stopped go to the GC (the
        shards they were to replace are still there)."""
        done = self.Object.select(self.Object.id).where(self.Object.state.in_(list(LIVE_OBJECTS)))
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

    def shards_by_id(self, miner: str, shard_ids: Iterable[str]) -> list:
        ids = list(shard_ids)
        if not ids:
            return []
        return list(self.Shard.select().where((self.Shard.miner == miner) & self.Shard.hash.in_(ids)))

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

    def suspect(self, row_id: int, reason: str, chunk: Optional[int] = None) -> bool:
        """A window or a download found it wrong or missing: re-check it. True when it was healthy."""
        with self.db.atomic():
            return self.Shard.update(state="suspect", reason=reason[:500], suspect_at=time.time(), bad_chunk=chunk
                                     ).where((self.Shard.id == row_id) & (self.Shard.state == "healthy")).execute() > 0

    def listed_due(self, miner: str, placed_before: float, live_after: int) -> list:
        """Healthy shards on ``miner`` placed before ``placed_before`` whose certificate is live after
        block ``live_after``: its listing must carry them."""
        return list(self.Shard.select().where((self.Shard.miner == miner) & (self.Shard.state == "healthy")
                                              & (self.Shard.placed_at < placed_before)
                                              & (self.Shard.cert_expiry > live_after)))

    def suspects(self, limit: int = 200) -> list:
        return list(self.Shard.select().where(self.Shard.state == "suspect")
                    .order_by(self.Shard.checked_at.asc(nulls="first"), self.Shard.id).limit(limit))

    def checked(self, row_id: int, ok: bool, reason: str = "") -> int:
        """A re-check got a verifiable answer: right (healthy again, failures cleared) or wrong
        (one more failure in a row). Returns the failures in a row."""
        with self.db.atomic():
            if ok:
                self.Shard.update(state="healthy", failures=0, reason="", suspect_at=None, bad_chunk=None,
                                  checked_at=time.time()
                                  ).where((self.Shard.id == row_id) & (self.Shard.state == "suspect")).execute()
                return 0
            self.Shard.update(failures=self.Shard.failures + 1, reason=reason[:500], checked_at=time.time()
                              ).where(self.Shard.id == row_id).execute()
            row = self.shard(row_id)
            return row.failures if row else 0

    def mark_lost(self, row_id: int, reason: str) -> bool:
        """True when the shard was live until now."""
        with self.db.atomic():
            return self.Shard.update(state="lost", reason=reason[:500]).where(
                (self.Shard.id == row_id) & self.Shard.state.in_(list(LIVE_SHARDS))).execute() > 0

    def replace(self, old_rows: list[int], new_rows: list[int]) -> None:
        """A repair landed: the new shards count, the ones they replace go to the GC."""
        with self.db.atomic():
            self.Shard.update(state="healthy").where(self.Shard.id.in_(new_rows)).execute()
            if old_rows:
                self.Shard.update(state="doomed").where(self.Shard.id.in_(old_rows)).execute()

    def doomed(self, limit: int = 500) -> list:
        return list(self.Shard.select().where(self.Shard.state == "doomed").order_by(self.Shard.id).limit(limit))

    def forget_shard(self, row_id: int) -> None:
        with self.db.atomic():
            self.Shard.delete().where(self.Shard.id == row_id).execute()

    def miners_with_live_shards(self) -> list[str]:
        return [r.miner for r in self.Shard.select(self.Shard.miner).distinct()
                .where(self.Shard.state.in_(list(LIVE_SHARDS)))]

    def lose_miner(self, miner: str, reason: str) -> list:
        """Every live shard of a miner that left the subnet: lost (its bytes are no longer paid for,
        nor reachable). Returns the rows that were live."""
        rows = list(self.Shard.select().where((self.Shard.miner == miner) & self.Shard.state.in_(list(LIVE_SHARDS))))
        with self.db.atomic():
            self.Shard.update(state="lost", reason=reason[:500]).where(
                self.Shard.id.in_([r.id for r in rows] or [-1])).execute()
        return rows

    def live_segments(self) -> list[tuple[str, int]]:
        """(object, segment) of every stored object."""
        return [(o.id, seg) for o in self.Object.select().where(self.Object.state.in_(list(LIVE_OBJECTS)))
                for seg in range(o.segments)]

    # protocol 2 shards, until migrated ----------------------------------------------------------
    def legacy(self, limit: int = 200) -> list[dict]:
        """Shard rows a protocol-2 gateway wrote (named by sha256), still to be migrated."""
        if "shards_v2" not in self.db.get_tables():
            return []
        cur = self.db.execute_sql('SELECT id, object_id, segment, idx, hash, wrap, miner, size, state FROM "shards_v2" '
                                  'ORDER BY id LIMIT ?', (limit,))
        cols = ("id", "object_id", "segment", "idx", "hash", "wrap", "miner", "size", "state")
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def adopt_legacy(self, old: dict, shard_id: str) -> int:
        """A protocol-2 shard found on its miner under its Merkle id: a row of its own (its certificate
        is due at once), and the old row goes."""
        state = old["state"] if old["state"] in ("healthy", "doomed") else "suspect"
        with self.db.atomic():
            row = self.Shard.create(object_id=old["object_id"], segment=old["segment"], idx=old["idx"], hash=shard_id,
                                    wrap=old["wrap"], miner=old["miner"], size=old["size"], state=state,
                                    placed_at=time.time(), reason="migrated from protocol 2")
            self.db.execute_sql('DELETE FROM "shards_v2" WHERE id = ?', (old["id"],))
        return row.id

    def drop_legacy(self, old: dict) -> None:
        with self.db.atomic():
            self.db.execute_sql('DELETE FROM "shards_v2" WHERE id = ?', (old["id"],))

    # certificates and serving ------------------------------------------------------------------
    def certify_due(self, before_block: int, limit: int = 2048) -> list:
        """Shards of live objects whose certificate runs out before ``before_block``, or whose
        served bytes are not yet in it."""
        live = self.Object.select(self.Object.id).where(self.Object.state.in_(list(LIVE_OBJECTS)))
        return list(self.Shard.select().where(
            self.Shard.state.in_(["healthy", "suspect"]) & self.Shard.object_id.in_(live)
            & ((self.Shard.cert_expiry < before_block)
               | (self.Shard.cert_served < pw.fn.MIN(self.Shard.served, self.Shard.size))))
            .order_by(self.Shard.cert_expiry).limit(limit))

    def certified(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """(row, expiry, served in it, new period) of certificates a miner took."""
        with self.db.atomic():
            for row_id, expiry, served, new_period in rows:
                fields = {"cert_expiry": expiry, "cert_served": served}
                if new_period:  # the certificate carries the period that ended; a new one begins
                    fields["served"] = 0
                self.Shard.update(**fields).where(self.Shard.id == row_id).execute()

    def add_served(self, row_id: int, size: int) -> None:
        with self.db.atomic():
            self.Shard.update(served=self.Shard.served + size).where(self.Shard.id == row_id).execute()

    def totals(self) -> "ManifestTotals":
        """Counts for metrics: objects (count, bytes) and shards by state, and the segments of live
        objects that have a suspect or lost shard (what repair has to look at)."""
        objects = {r.state: (int(r.c), int(r.b or 0)) for r in self.Object.select(
            self.Object.state, pw.fn.COUNT(self.Object.id).alias("c"), pw.fn.SUM(self.Object.size).alias("b"))
            .group_by(self.Object.state)}
        shards = {r.state: int(r.c) for r in self.Shard.select(self.Shard.state, pw.fn.COUNT(self.Shard.id).alias("c"))
                  .group_by(self.Shard.state)}
        live = self.Object.select(self.Object.id).where(self.Object.state.in_(list(LIVE_OBJECTS)))
        repair = (self.Shard.select(self.Shard.object_id, self.Shard.segment)
                  .where(self.Shard.state.in_(["suspect", "lost"]) & self.Shard.object_id.in_(live))
                  .distinct().count())
        return ManifestTotals(objects=objects, shards=shards, repair_segments=int(repair))

    def stats(self) -> dict[str, int]:
        objects = {r.state: r.c for r in self.Object.select(self.Object.state, pw.fn.COUNT(self.Object.id).alias("c"))
                   .group_by(self.Object.state)}
        shards = {r.state: r.c for r in self.Shard.select(self.Shard.state, pw.fn.COUNT(self.Shard.id).alias("c"))
                  .group_by(self.Shard.state)}
        return {**{f"objects_{k}": v for k, v in objects.items()}, **{f"shards_{k}": v for k, v in shards.items()}}
