"""The miner's shard store (docs/design.md#client-data): content-addressed files under ``shards/`` and one
index per placing validator in ``index/validator-<hotkey>.sqlite``.

A shard's name is the sha256 of its bytes, checked as they arrive, so a name can never be a
path (``..``, ``/``) and a file can never hold other bytes than its name says. Writes go to a
temp file, are fsynced and renamed, then the index row is written: a kill leaves either
nothing or a whole shard (a whole shard without a row is adopted or removed at start).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Optional

import peewee as pw

from ..errors import CorruptIndex
from ..net.objects import AuditAnswer, AuditItem, is_shard_id
from .audits import answer_audit
from .files import fsync_dir
from .layout import Layout
from .models import open_sqlite
from .streams import HashingFile

TMP_PREFIX = ".tmp-"
IDLE_S = 60.0  # an upload that sends nothing for this long is dropped
SS58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{40,60}$")
INDEX_GLOB = "validator-*.sqlite"


class ShardRefused(Exception):
    """A shard request that cannot be honoured; ``status`` and ``code`` for the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _shard_model(db: pw.Database) -> type[pw.Model]:
    class Shard(pw.Model):
        id = pw.FixedCharField(max_length=64, primary_key=True)
        size = pw.BigIntegerField()
        stored_at = pw.FloatField(default=time.time)

        class Meta:
            database = db
            table_name = "shards"

    return Shard


class ShardIndex:
    """Shards one validator placed here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_sqlite(path, "shard index of this validator")
        self.Shard = _shard_model(self.db)
        try:
            with self.db.atomic():
                self.db.create_tables([self.Shard])
        except pw.DatabaseError as exc:
            raise CorruptIndex(f"{path} cannot be used ({exc}): move it aside and restart") from None

    def has(self, shard_id: str) -> bool:
        return self.Shard.get_or_none(self.Shard.id == shard_id) is not None

    def add(self, shard_id: str, size: int) -> None:
        with self.db.atomic():
            self.Shard.insert(id=shard_id, size=size, stored_at=time.time()).on_conflict_ignore().execute()

    def remove(self, shard_id: str) -> bool:
        with self.db.atomic():
            return self.Shard.delete().where(self.Shard.id == shard_id).execute() > 0

    def ids(self) -> list[str]:
        return [r.id for r in self.Shard.select(self.Shard.id)]

    def stats(self) -> tuple[int, int]:
        row = self.Shard.select(pw.fn.COUNT(self.Shard.id), pw.fn.COALESCE(pw.fn.SUM(self.Shard.size), 0)).scalar(
            as_tuple=True)
        return int(row[0]), int(row[1])

    def close(self) -> None:
        self.db.close()


@dataclass
class ShardCounts:
    files: int
    bytes: int
    validators: dict[str, tuple[int, int]]  # hotkey -> (shards, bytes)


class ShardStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.shards
        self.dir.mkdir(parents=True, exist_ok=True)
        self._indexes: dict[str, ShardIndex] = {}
        for path in sorted(layout.index.glob(INDEX_GLOB)):
            hotkey = path.name[len("validator-"):-len(".sqlite")]
            if SS58.match(hotkey):
                self._indexes[hotkey] = ShardIndex(path)
        self.reserved = 0
        self.inflight: set[str] = set()
        self.used_bytes = self._recover()

    def _recover(self) -> int:
        """Remove half-written temp files; drop whole shards no validator indexes (a kill between
        rename and index row); count the rest."""
        indexed: set[str] = set()
        for index in self._indexes.values():
            indexed.update(index.ids())
        used = 0
        for entry in os.scandir(self.dir):
            if entry.name.startswith(TMP_PREFIX):
                os.unlink(entry.path)
            elif is_shard_id(entry.name) and entry.name not in indexed:
                os.unlink(entry.path)
            elif is_shard_id(entry.name):
                used += entry.stat().st_size
        return used

    # lookups -----------------------------------------------------------------------------
    def index(self, validator: str, create: bool = False) -> Optional[ShardIndex]:
        index = self._indexes.get(validator)
        if index is None and create:
            if not SS58.match(validator):
                raise ShardRefused(400, "bad_request", "the validator hotkey is not an ss58 address")
            index = self._indexes[validator] = ShardIndex(self.layout.validator_index(validator))
        return index

    def path(self, shard_id: str) -> Path:
        if not is_shard_id(shard_id):
            raise ShardRefused(400, "bad_shard_id", f"{shard_id[:80]!r} is not a shard id: a shard id is the sha256 "
                                                    f"of its bytes, 64 lowercase hex characters")
        return self.dir / shard_id

    def held_by(self, validator: str, shard_id: str) -> Path:
        """The shard's file if ``validator`` placed it; 403 if only another validator did, else 404."""
        path = self.path(shard_id)
        index = self.index(validator)
        if index is not None and index.has(shard_id):
            return path
        if any(v != validator and i.has(shard_id) for v, i in self._indexes.items()):
            raise ShardRefused(403, "forbidden", f"shard {shard_id[:16]}… was placed by another validator: only the "
                                                 f"validator that placed a shard may read, audit or delete it")
        raise ShardRefused(404, "unknown_shard", f"no shard {shard_id[:16]}… placed by you is held here: check the "
                                                 f"id, or the miner lost it")

    def counts(self) -> ShardCounts:
        per = {v: i.stats() for v, i in self._indexes.items()}
        return ShardCounts(files=sum(c for c, _ in per.values()), bytes=self.used_bytes, validators=per)

    # writes --------------------------------------------------------------------------------
    async def receive(self, validator: str, shard_id: str, size: int, chunks: AsyncIterator[bytes]) -> None:
        """Stream a shard in; keep it only if exactly ``size`` bytes hashing to ``shard_id`` arrived.
        The caller reserved room for ``size`` bytes (:attr:`reserved`)."""
        final = self.path(shard_id)
        index = self.index(validator, create=True)
        assert index is not None
        tmp = self.dir / f"{TMP_PREFIX}{shard_id[:16]}-{os.urandom(4).hex()}"
        out = HashingFile(tmp)
        try:
            async for chunk in _idle_bounded(chunks, IDLE_S):
                if out.size + len(chunk) > size:
                    raise ShardRefused(400, "too_long", f"more than the declared {size} bytes arrived: send exactly "
                                                        f"the shard's bytes")
                await out.write(chunk)
            if out.size != size:
                raise ShardRefused(400, "too_short", f"{out.size} of the declared {size} bytes arrived: send the "
                                                     f"whole shard")
            digest = await out.finish(sync=True)
            if digest != shard_id:
                raise ShardRefused(422, "hash_mismatch", f"the bytes hash to {digest[:16]}…, not to the shard id "
                                                         f"{shard_id[:16]}…: a shard id is the sha256 of its bytes")
            existed = final.exists()
            os.replace(tmp, final)
            fsync_dir(self.dir)
            if not existed:
                self.used_bytes += size
            index.add(shard_id, size)
        except BaseException:
            out.discard()
            raise

    def delete(self, validator: str, shard_id: str) -> None:
        """Forget a shard for this validator; the file goes when no validator holds it."""
        path = self.held_by(validator, shard_id)
        index = self.index(validator)
        assert index is not None
        index.remove(shard_id)
        if not any(i.has(shard_id) for i in self._indexes.values()):
            try:
                size = path.stat().st_size
                path.unlink()
                self.used_bytes = max(0, self.used_bytes - size)
            except FileNotFoundError:
                pass

    # audits -------------------------------------------------------------------------------
    def audit(self, validator: str, items: list[AuditItem]) -> list[AuditAnswer]:
        """Blocking (file reads and hashing): run it in a thread. One answer per item, in order."""
        index = self.index(validator)
        answers = []
        for item in items:
            if index is None or not index.has(item.shard):
                answers.append(AuditAnswer(shard=item.shard, error="not held for this validator"))
                continue
            try:
                fd = os.open(self.dir / item.shard, os.O_RDONLY)
            except OSError:
                answers.append(AuditAnswer(shard=item.shard, error="shard file missing"))
                continue
            try:
                digest = answer_audit(fd, item.offset, item.length, bytes.fromhex(item.nonce))
                answers.append(AuditAnswer(shard=item.shard, digest=digest.hex()))
            except (EOFError, OSError) as exc:
                answers.append(AuditAnswer(shard=item.shard, error=str(exc)[:200]))
            finally:
                os.close(fd)
        return answers

    def scrub(self, limit: int = 8) -> list[str]:
        """Re-hash up to ``limit`` shards; remove (and return) the ones whose bytes no longer match
        their name, so the next audit reports them lost instead of answering from damaged bytes."""
        bad = []
        names = [e.name for e in os.scandir(self.dir) if is_shard_id(e.name)]
        for name in random.sample(names, min(limit, len(names))):
            path = self.dir / name
            h = hashlib.sha256()
            try:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            except OSError:
                continue
            if h.hexdigest() != name:
                bad.append(name)
                size = path.stat().st_size
                path.unlink(missing_ok=True)
                self.used_bytes = max(0, self.used_bytes - size)
                for index in self._indexes.values():
                    index.remove(name)
        return bad

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()
        self._indexes.clear()


async def _idle_bounded(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    it = chunks.__aiter__()
    while True:
        try:
            async with asyncio.timeout(seconds):
                chunk = await it.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ShardRefused(408, "idle", f"nothing arrived for {seconds:.0f}s: send the shard without "
                                            f"pausing") from None
        yield chunk
